"""URLs of ragrec_django's plain Django views, for hosts that do not mount the REST API::

    path("ragrec/", include("ragrec_django.urls")),

Names live in the ``ragrec`` namespace (``ragrec:click``). The REST API's URLs
(``ragrec_django.api.urls``) include the same click view as ``ragrec_api:click``; the template
tags use whichever is mounted.
"""

from django.urls import path

from . import views

app_name = "ragrec"

urlpatterns = [
    path("click/<uuid:impression>/<str:key>/", views.click, name="click"),
]
