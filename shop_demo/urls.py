"""URLs of the demo shop: storefront, admin, and the plugin's API."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # The plugin's REST API, its OpenAPI schema (api/recommend/schema/) and docs page (api/recommend/docs/).
    path("api/recommend/", include("ragrec_django.api.urls")),
    path("", include("shop_demo.catalog.urls")),
] + static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
