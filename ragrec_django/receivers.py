"""Keep embeddings in step with the host's items: re-encode on save, forget on delete.

Connected to the configured item model by ``apps.RagrecConfig.ready``. The
signals ragrec sends for a host to receive are in ``ragrec_django.signals``.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from .conf import ragrec_settings

DISPATCH_UID = "ragrec_django.item_hooks"


def item_saved(sender, instance, raw=False, **kwargs) -> None:
    """Mirror the item after commit (cheap, in-process) and queue its re-encoding."""
    if raw:
        return
    from .services.encoding import sync_host_items

    pk = instance.pk
    transaction.on_commit(lambda: sync_host_items([pk]))
    if ragrec_settings.AUTO_ENCODE:
        from .tasks import enqueue_encoding

        enqueue_encoding([pk])


def item_deleted(sender, instance, **kwargs) -> None:
    from .adapters import get_adapter
    from .models import Item

    Item.objects.filter(key=get_adapter().get_key(instance)).delete()


def connect_item_hooks() -> None:
    """Connect the hooks to the configured item model (no-op when none is configured)."""
    from .adapters import get_adapter

    if not ragrec_settings.ITEM_MODEL:
        return
    model = get_adapter().get_item_model()
    post_save.connect(item_saved, sender=model, dispatch_uid=DISPATCH_UID)
    post_delete.connect(item_deleted, sender=model, dispatch_uid=DISPATCH_UID)
