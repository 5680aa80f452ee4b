"""Items whose re-encoding could not be queued when they were saved.

The save hook never fails or holds up the host's save: when it cannot mirror an item or queue its
encoding (no Celery, no broker, an adapter error) it logs why and records the item here, one
``TaskDelivery`` row per space and item, named ``UNSENT``. ``ragrec_reindex --stale`` encodes or
queues these items with the stale ones and clears their records.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..models import TaskDelivery

#: ``TaskDelivery.name`` of an encode task the save hook could not queue.
UNSENT = "ragrec_django.unsent_encoding"


def _task_id(space_name: str, pk) -> str:
    return "unsent:%s:%s" % (space_name, pk)


def record(space_names: Iterable[str], pks: Iterable) -> None:
    """Remember that ``pks`` still need encoding into ``space_names``."""
    for space_name in space_names:
        for pk in pks:
            TaskDelivery.objects.get_or_create(task_id=_task_id(space_name, pk), defaults={"name": UNSENT})


def pending_pks(space_name: str) -> list[str]:
    """Host primary keys (as text) recorded for ``space_name``, oldest first."""
    prefix = _task_id(space_name, "")
    task_ids = TaskDelivery.objects.filter(name=UNSENT, task_id__startswith=prefix).order_by("first_seen", "pk")
    return [task_id[len(prefix) :] for task_id in task_ids.values_list("task_id", flat=True)]


def clear(space_names: Iterable[str], pks: Iterable) -> None:
    """Forget the records of ``pks`` in ``space_names``: they were encoded or queued."""
    pks = list(pks)
    task_ids = [_task_id(space_name, pk) for space_name in space_names for pk in pks]
    TaskDelivery.objects.filter(name=UNSENT, task_id__in=task_ids).delete()
