"""REST API of ragrec_django (needs the ``api`` extra: djangorestframework and drf-spectacular).

A host project mounts every endpoint with one line::

    path("api/recommend/", include("ragrec_django.api.urls")),

Endpoints, URL names (namespace ``ragrec_api``) and error codes are described in
``ragrec_django.api.views``; the OpenAPI schema is served at ``schema/`` and a
plain HTML reference (no CDN) at ``docs/``.

Nothing outside this package imports it (but URL confs): the template tags, the click view and
the services work without DRF installed.
"""
