"""Keep embeddings in step with the host's items: re-encode on save, forget on delete; keep category centroids in
step with the embeddings (``centroids_after_write``).

Connected to the configured item model by ``apps.RagrecConfig.ready``. The
signals ragrec sends for a host to receive are in ``ragrec_django.signals``.

A save never fails or waits long because of ragrec: after commit the item is mirrored and its
encoding queued in one short try (``tasks.queue_saved_items``); whatever goes wrong (an adapter
error, no ``celery`` package, no broker configured, the broker down) is logged and the item is
recorded for ``ragrec_reindex --stale`` (``services.pending``).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from .conf import ragrec_settings
from .signals import embeddings_updated

logger = logging.getLogger(__name__)

DISPATCH_UID = "ragrec_django.item_hooks"


def item_saved(sender, instance, raw=False, **kwargs) -> None:
    """After commit, mirror the item (cheap, in-process) and queue its re-encoding."""
    if raw:
        return
    pk = instance.pk
    transaction.on_commit(lambda: after_item_saved(pk))


def after_item_saved(pk) -> None:
    """Mirror a saved item and queue its encoding; log and record what fails instead of raising it."""
    from . import registry
    from .services import pending
    from .services.encoding import sync_host_items

    spaces: list[str] = []
    try:
        spaces = list(registry.get_spaces())
        sync_host_items([pk])
        if not ragrec_settings.AUTO_ENCODE:
            return
        problem = encode_on_save_problem()
        if problem:
            logger.warning(
                "Item %s was saved but not queued for encoding: %s; `manage.py ragrec_reindex --stale` encodes it.",
                pk,
                problem,
            )
            pending.record(spaces, [pk])
            return
        from .tasks import queue_saved_items

        queue_saved_items([pk], spaces)
        pending.clear(spaces, [pk])
    except Exception:  # the host's save must not fail because of ragrec
        logger.exception(
            "ragrec could not mirror or queue saved item %s; `manage.py ragrec_reindex --stale` retries it.", pk
        )
        try:
            pending.record(spaces, [pk])
        except Exception:
            logger.exception("ragrec could not record item %s for `ragrec_reindex --stale` either.", pk)


CELERY_MISSING = "the celery package is not installed"
NO_BROKER = "no Celery broker is configured"


def encode_on_save_problem() -> str | None:
    """Why saved items cannot be queued for encoding (``CELERY_MISSING``, ``NO_BROKER``), or None.

    Without a broker URL Celery would send the tasks to its default ``amqp://localhost``, which may be
    another service's broker; they are recorded for ``ragrec_reindex --stale`` instead.
    """
    try:
        from celery import current_app
    except ImportError:
        return CELERY_MISSING
    if not current_app.conf.broker_url:
        return NO_BROKER
    return None


def centroids_after_write(sender, space, generation, item_ids, **kwargs) -> None:
    """After vectors were written to an active generation (``signals.embeddings_updated``), queue its category
    centroids' computation when a category written has none or an old one (``tasks.schedule_centroid_refresh``),
    while query routing is on (``RAGREC["HNSW"]["QUERY_CATEGORIES"]``). Logs what fails instead of raising it: the
    vectors are written, and the beat schedule's ``refresh_centroids_task`` catches up."""
    from .services import spaces

    if generation.status != generation.Status.ACTIVE:
        return
    try:
        if encode_on_save_problem() is None and spaces.centroids_outdated(generation, list(item_ids)):
            from .tasks import schedule_centroid_refresh

            schedule_centroid_refresh(generation.pk)
    except Exception:
        logger.exception("ragrec could not queue the category centroids of %s to be computed again.", generation)


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
    embeddings_updated.connect(centroids_after_write, dispatch_uid=DISPATCH_UID)
    post_save.connect(item_saved, sender=model, dispatch_uid=DISPATCH_UID)
    post_delete.connect(item_deleted, sender=model, dispatch_uid=DISPATCH_UID)
