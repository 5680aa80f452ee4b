"""App configuration: registers system checks and the item save hooks."""

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class RagrecConfig(AppConfig):
    name = "ragrec_django"
    label = "ragrec_django"
    verbose_name = "Recommendations (ragrec)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
        from .signals import connect_item_hooks

        try:
            connect_item_hooks()
        except ImproperlyConfigured:
            pass  # reported by the system checks (ragrec.E001-E003)
