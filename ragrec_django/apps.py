"""App configuration: registers system checks, the item save hooks (``receivers``) and the serving-process set-up."""

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_started


class RagrecConfig(AppConfig):
    name = "ragrec_django"
    label = "ragrec_django"
    verbose_name = "Recommendations (ragrec)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
        from .receivers import connect_item_hooks
        from .registry import on_request_started

        # Torch threads of a process that serves requests (RAGREC["QUERY_THREADS"]), set on its first request.
        request_started.connect(on_request_started, dispatch_uid="ragrec_django.serving_process")

        try:
            connect_item_hooks()
        except ImproperlyConfigured:
            pass  # reported by the system checks (ragrec.E001-E003)
