"""Celery tasks: encode items into embedding spaces.

Tasks take primary keys, are idempotent (unchanged items are skipped), ack
late and are re-queued if their worker dies. A message redelivered more than
``RAGREC["MAX_REDELIVERIES"]`` times is a poison batch. The first redelivery
re-runs the batch (already written items are skipped); later ones go item by
item; past the cap the items still missing are marked failed, so nothing loops
forever. Transient database errors retry with backoff; a retry is a new message
whose starts are counted afresh (a database outage is not a worker death).

Routing is the host's choice: ``RAGREC["TASK_QUEUES"] = {}`` sends encoding by space modality to the
queues ``gpu-image`` and ``gpu-text`` and the rest to ``cpu`` (``ragrec_django.queues``; with
``CELERY_TASK_ROUTES = ["ragrec_django.queues.route_task"]`` for the tasks a host queues itself), or
``RAGREC["ENCODE_QUEUE"] = "gpu"`` sends all encoding to one queue (docs/scaling.md).
"""

from __future__ import annotations

import logging
import time
import uuid

from celery import shared_task
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F
from kombu.exceptions import OperationalError as KombuOperationalError

from . import queues, registry, storage
from .conf import ragrec_settings
from .models import Item, TaskDelivery
from .services import descriptions, encoding, finetune

logger = logging.getLogger(__name__)


def _delivery_key(task_id: str, retries: int) -> str:
    """The bookkeeping key of one task message: a retry is a new message with the same task id.

    Starts are counted per message, so retries after database errors (``autoretry_for``) are not
    mistaken for redeliveries after worker deaths; the first message keeps the plain task id.
    """
    return task_id if not retries else "%s#retry%d" % (task_id, retries)


def _count_delivery(task_id: str | None, retries: int, name: str) -> int:
    """Record one more start of this task message; return how many starts so far."""
    if not task_id:
        return 1
    delivery, _ = TaskDelivery.objects.get_or_create(task_id=_delivery_key(task_id, retries), defaults={"name": name})
    TaskDelivery.objects.filter(pk=delivery.pk).update(attempts=F("attempts") + 1)
    delivery.refresh_from_db(fields=["attempts"])
    return delivery.attempts


def _forget_deliveries(task_id: str | None, retries: int) -> None:
    """Drop the bookkeeping of every message of this task (the retries' too): it finished."""
    if task_id:
        TaskDelivery.objects.filter(task_id__in=[_delivery_key(task_id, n) for n in range(retries + 1)]).delete()


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
def encode_items_task(self, space: str, pks: list, force: bool = False) -> dict:
    """Encode host items ``pks`` into ``space``; return counts and per-item failures."""
    retries = self.request.retries or 0
    attempts = _count_delivery(self.request.id, retries, self.name)
    limit = ragrec_settings.MAX_REDELIVERIES
    if attempts > limit + 1:
        _fail_unencoded(space, pks, "worker died %d times while encoding this batch" % (attempts - 1))
        report = encoding.EncodeReport(space=space)
    elif attempts > 2:
        # Died on this batch more than once: go item by item so one poison item cannot sink the rest.
        report = encoding.EncodeReport(space=space)
        for pk in pks:
            report.merge(encoding.encode_items(space, [pk], force=force))
    else:
        report = encoding.encode_items(space, pks, force=force)
    _forget_deliveries(self.request.id, retries)
    return {"space": space, "encoded": report.encoded, "skipped": report.skipped, "failed": report.failed}


def _fail_unencoded(space_name: str, pks: list, reason: str) -> None:
    generation = encoding.current_write_generation(space_name)
    if generation is None:
        return
    encoding.sync_host_items(pks)
    missing = Item.objects.filter(key__in=[str(pk) for pk in pks]).exclude(embeddings__generation=generation)
    storage.record_failures(generation, [(item_id, "", reason) for item_id in missing.values_list("id", flat=True)])
    logger.error("Gave up on %d item(s) of space %r: %s", missing.count(), space_name, reason)


#: Seconds that queuing an encode task keeps trying while the broker is unreachable (Celery alone
#: gives up after its broker_connection_timeout, 4 s by default): a broker restart delays the save
#: that queued the task instead of failing it after its transaction committed.
PUBLISH_PATIENCE_SECONDS = 20


def _publish(task, args: tuple, options: dict):
    """``task.apply_async``, tried again for ``PUBLISH_PATIENCE_SECONDS`` while the broker is unreachable."""
    deadline = time.monotonic() + PUBLISH_PATIENCE_SECONDS
    while True:
        try:
            return task.apply_async(args, **options)
        except KombuOperationalError as exc:
            if time.monotonic() >= deadline:
                raise
            logger.warning("Cannot reach the Celery broker to queue %s (%s); trying again.", task.name, exc)
            time.sleep(1)


def enqueue_encoding(
    pks: list, spaces: list[str] | None = None, *, force: bool = False, tracked: list[str] | None = None
) -> list:
    """Queue encoding of host items after the current transaction commits; return the chunks queued.

    While the broker is unreachable, queuing keeps trying for ``PUBLISH_PATIENCE_SECONDS``; past
    that the broker's error is raised. For commands and hosts' own jobs; a saved item is queued by
    ``queue_saved_items``, which does not wait. With ``tracked`` (a list), each message gets its id
    up front, recorded as a delivery not yet started (a ``TaskDelivery`` row, 0 attempts, which the
    task deletes when it finishes) and appended to ``tracked``: ``unfinished_tasks(tracked)`` counts
    the work still queued or running.
    """
    pks = [pk if isinstance(pk, (int, str)) else str(pk) for pk in pks]
    size = max(int(ragrec_settings.ENCODE_CHUNK_SIZE), 1)
    chunks = [pks[i : i + size] for i in range(0, len(pks), size)]
    for space in spaces or list(registry.get_spaces()):
        options = _encode_options(space)
        for chunk in chunks:
            message_options = options
            if tracked is not None:
                task_id = str(uuid.uuid4())
                TaskDelivery.objects.create(task_id=task_id, name=encode_items_task.name)
                tracked.append(task_id)
                message_options = {**options, "task_id": task_id}
            transaction.on_commit(
                lambda space=space, chunk=chunk, message_options=message_options: _publish(
                    encode_items_task, (space, chunk, force), message_options
                )
            )
    return chunks


def _encode_options(space: str) -> dict:
    """``apply_async`` options of a space's encode tasks: the queue of its modality (``queues.encode_queue``)."""
    queue = queues.encode_queue(space)
    return {"queue": queue} if queue else {}


def unfinished_tasks(task_ids: list[str]) -> int:
    """How many of the tasks queued with ``enqueue_encoding(..., tracked=task_ids)`` have not finished."""
    return TaskDelivery.objects.filter(task_id__in=task_ids).count()


#: Seconds the save hook gives the broker to take a saved item's encode task. It does not wait out a broker
#: restart as ``enqueue_encoding`` does: a host's save must not hang, and what it cannot queue is recorded for
#: ``ragrec_reindex --stale`` (``receivers.after_item_saved``).
ON_SAVE_BROKER_TIMEOUT_SECONDS = 1


def queue_saved_items(pks: list, spaces: list[str]) -> None:
    """Queue encoding of just-saved items into ``spaces`` now, in one short try; raise the broker's error."""
    timeout = ON_SAVE_BROKER_TIMEOUT_SECONDS
    transport_options = {"max_retries": 0, "socket_connect_timeout": timeout, "socket_timeout": timeout}
    with encode_items_task.app.connection_for_write(
        connect_timeout=timeout, transport_options=transport_options
    ) as connection:
        for space in spaces:
            encode_items_task.apply_async(
                (space, list(pks), False), connection=connection, retry=False, **_encode_options(space)
            )


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=300,
    max_retries=5,
)
def generate_descriptions_task(self, job_id: int, keys: list) -> dict:
    """Generate review drafts for items ``keys`` of a GenerationJob (``descriptions.generate_job_chunk``).

    Items that already have a draft from this job are skipped, so a redelivered
    task does not duplicate drafts.
    """
    return descriptions.generate_job_chunk(job_id, keys)


def enqueue_generation(job, keys: list, *, chunk_size: int = 20) -> None:
    """Queue generation chunks of a job after commit, on RAGREC["GENERATION_QUEUE"] when set (``queues.generation_queue``)."""
    queue = queues.generation_queue()
    options = {"queue": queue} if queue else {}
    for start in range(0, len(keys), chunk_size):
        chunk = keys[start : start + chunk_size]
        transaction.on_commit(lambda chunk=chunk: generate_descriptions_task.apply_async((job.pk, chunk), **options))


@shared_task(bind=True, acks_late=False)
def finetune_clip_task(self, out: str, **options) -> dict:
    """Fine-tune CLIP on the catalogue (``ragrec_finetune_clip`` in a worker); return the checkpoint and figures.

    ``options`` are ``services.finetune.finetune_from_adapter``'s (the command's): ``text_field``, ``limit`` and the
    ``ragrec_django.ml.finetune.FinetuneConfig`` fields (``epochs``,
    ``batch_size``, ``lr``, ``lock_text``, ``pretrained``, ``device``...).
    Acknowledged on receipt, not late: a training run can outlast the broker's
    visibility timeout and must not be started twice. Route it to GPU workers::

        CELERY_TASK_ROUTES = {"ragrec_django.tasks.finetune_clip_task": {"queue": "gpu"}}
    """
    options.setdefault("progress", False)
    result = finetune.finetune_from_adapter(out, **options)
    report = result.report
    return {
        "checkpoint": result.checkpoint,
        "encoder": result.encoder,
        "before": report["before"],
        "after": report["after"],
        "best_epoch": report["best_epoch"],
        "stopped": report["stopped"],
        "train_pairs_per_second": report["train_pairs_per_second"],
        "files": result.files,
    }


@shared_task(bind=True, acks_late=False)
def train_ranker_task(self, **options) -> dict:
    """Train, gate and maybe promote the learned ranker (``ragrec_train_ranker`` in a worker), e.g. nightly::

        CELERY_BEAT_SCHEDULE = {"ragrec-ranker": {"task": "ragrec_django.tasks.train_ranker_task",
                                                  "schedule": crontab(hour=3, minute=0)}}

    ``options`` are ``services.ranker.train_ranker``'s; ``recommender="similar"`` trains the "similar items"
    ranker instead (``services.item_candidates.train_similar_ranker``). A shop with too few orders keeps its
    ranking: the result says so instead of failing. Acknowledged on receipt: a training run must not start twice.
    """
    from .ml.ranker import NotEnoughData
    from .services import item_candidates, ranker

    similar = options.pop("recommender", "for_you") == "similar"
    try:
        outcome = item_candidates.train_similar_ranker(**options) if similar else ranker.train_ranker(**options)
    except NotEnoughData as exc:
        logger.info("Learned ranker not trained: %s", exc)
        return {"trained": False, "promoted": False, "message": str(exc)}
    return {
        "trained": True,
        "promoted": outcome.promoted,
        "version": outcome.version.number,
        "message": outcome.message,
    }


@shared_task(acks_late=True)
def refresh_ranker_signals_task() -> dict:
    """Materialise the signals the learned ranker serves from (``ragrec_train_ranker --signals``), e.g. every
    15 minutes from the host's beat schedule. Idempotent: each run replaces the previous snapshot."""
    from .services import ranker

    snapshot = ranker.refresh_signals()
    return {"as_of": snapshot.as_of.isoformat(), "items": snapshot.items, "seconds": snapshot.seconds}


@shared_task(acks_late=True)
def maintain_event_partitions_task() -> dict:
    """Create the coming months' event partitions and drop those past ``RAGREC["EVENT_RETENTION_MONTHS"]``
    (``manage.py ragrec_event_partitions``), e.g. daily from the host's beat schedule. Idempotent."""
    from .services.partitions import maintain_event_partitions

    upkeep = maintain_event_partitions()
    return {
        "created": [month.isoformat() for month in upkeep.created],
        "dropped": [month.isoformat() for month in upkeep.dropped],
    }


#: Seconds between vectors of a category without a centroid being written and the centroids being computed
#: again: the writes of those seconds (a chunk's neighbours in a bulk import) share one computation.
CENTROID_REFRESH_DELAY_SECONDS = 60


@shared_task(acks_late=True)
def refresh_centroids_task(generation_id: int | None = None) -> dict:
    """Compute category centroids again (``services.spaces.refresh_centroids``): one generation's, as queued by
    ``schedule_centroid_refresh``, or every active generation's, e.g. hourly from the host's beat schedule::

        CELERY_BEAT_SCHEDULE = {"ragrec-centroids": {"task": "ragrec_django.tasks.refresh_centroids_task",
                                                     "schedule": crontab(minute=15)}}

    Idempotent: each run replaces the rows it computes."""
    from django.core.cache import cache

    from .services import spaces

    if generation_id is None:
        return {"categories": spaces.refresh_centroids()}
    cache.delete(_centroid_refresh_key(generation_id))
    return {"categories": spaces.refresh_generation_centroids(generation_id)}


def _centroid_refresh_key(generation_id: int) -> str:
    return "ragrec:centroid-refresh:%d" % int(generation_id)


def schedule_centroid_refresh(generation_id: int) -> bool:
    """Queue ``refresh_centroids_task`` for a generation ``CENTROID_REFRESH_DELAY_SECONDS`` from now, unless one is
    queued already (a key in the host's cache); whether one was queued. Raises the broker's error."""
    from django.core.cache import cache

    key = _centroid_refresh_key(generation_id)
    if not cache.add(key, 1, timeout=CENTROID_REFRESH_DELAY_SECONDS * 10):
        return False
    try:
        queue = queues.cpu_queue()
        options = {"countdown": CENTROID_REFRESH_DELAY_SECONDS, **({"queue": queue} if queue else {})}
        _publish(refresh_centroids_task, (int(generation_id),), options)
    except Exception:
        cache.delete(key)
        raise
    return True
