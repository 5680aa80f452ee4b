"""URLs of the demo shop: storefront, admin, and the plugin's API."""

from django.conf import settings
from django.contrib import admin
from django.http import Http404
from django.urls import include, path, re_path
from django.views.static import serve


def media(request, path):
    """Uploaded and seeded pictures, served by Django in the demo only (DEBUG or SHOP_DEMO_SERVE_MEDIA).

    Settings are read per request, so a test may point MEDIA_ROOT elsewhere or turn serving on.
    """
    if not (settings.DEBUG or getattr(settings, "SHOP_DEMO_SERVE_MEDIA", False)):
        raise Http404("Media files are served by the web server.")
    return serve(request, path, document_root=settings.MEDIA_ROOT)


urlpatterns = [
    path("admin/", admin.site.urls),
    # The plugin's REST API, its OpenAPI schema (api/recommend/schema/) and docs page (api/recommend/docs/).
    path("api/recommend/", include("ragrec_django.api.urls")),
    re_path(r"^%s(?P<path>.+)$" % settings.MEDIA_URL.lstrip("/"), media, name="media"),
    path("", include("shop_demo.catalog.urls")),
]
