"""URLs of the REST API. A host mounts them with one line::

    path("api/recommend/", include("ragrec_django.api.urls")),

URL names live in the ``ragrec_api`` namespace, e.g. ``reverse("ragrec_api:similar", args=[key])``.
``schema/`` serves the OpenAPI 3 schema of the host's DRF API (drf-spectacular; set
``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "drf_spectacular.openapi.AutoSchema"``) and
``docs/`` a plain HTML page describing these endpoints (no Swagger UI: it needs a CDN).
``click/<impression>/<key>/`` is the click-tracking redirect of recommendation links
(``ragrec_django.views.click``; the template tags link through it).
"""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from .. import views as plain_views
from . import search, views

app_name = "ragrec_api"

urlpatterns = [
    path("items/<str:key>/similar/", views.SimilarItemsView.as_view(), name="similar"),
    path("items/<str:key>/bought-together/", views.BoughtTogetherView.as_view(), name="bought-together"),
    path("basket/bought-together/", views.BasketBoughtTogetherView.as_view(), name="basket-bought-together"),
    path("search/", search.SearchView.as_view(), name="search"),
    path("search/suggest/", search.SuggestView.as_view(), name="search-suggest"),
    path("search/photo/", views.PhotoSearchView.as_view(), name="search-photo"),
    path("for-you/", views.ForYouView.as_view(), name="for-you"),
    path("recently-viewed/", views.RecentlyViewedView.as_view(), name="recently-viewed"),
    path("buy-again/", views.BuyAgainView.as_view(), name="buy-again"),
    path("trending/", views.TrendingView.as_view(), name="trending"),
    path("assistant/", views.AssistantView.as_view(), name="assistant"),
    path("assistant/conversations/", views.ConversationStartView.as_view(), name="conversations"),
    path("assistant/conversations/<str:conversation_id>/", views.ConversationView.as_view(), name="conversation"),
    path(
        "assistant/conversations/<str:conversation_id>/turns/",
        views.ConversationTurnView.as_view(),
        name="conversation-turns",
    ),
    path("events/", views.EventsView.as_view(), name="events"),
    path("click/<uuid:impression>/<str:key>/", plain_views.click, name="click"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", views.api_docs, name="docs"),
]
