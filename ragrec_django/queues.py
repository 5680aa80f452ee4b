"""Celery queues per workload, and whether an encode batch fits the broker's visibility timeout.

With ``RAGREC["TASK_QUEUES"]`` set (``{}`` takes the standard names), each ragrec task goes to the queue
of its workload (docs/scaling.md, "Celery topology"):

* ``"image"`` (default name ``gpu-image``): encoding into spaces of modality image, CLIP fine-tuning;
* ``"text"`` (``gpu-text``): encoding into spaces of modality text;
* ``"cpu"`` (``cpu``): everything else (training the learned ranker; description generation unless
  ``RAGREC["GENERATION_QUEUE"]`` names a queue).

``enqueue_encoding`` and the save hook name the queue of each message (``encode_queue``); ``route_task``
is a Celery router for the tasks a host queues itself (``CELERY_TASK_ROUTES``). ``None`` (the default)
keeps every task on Celery's default queue, or encoding on ``RAGREC["ENCODE_QUEUE"]`` when that is set.

A broker that redelivers unacknowledged messages after a visibility timeout (Redis, SQS) gives a batch
that runs longer than it to a second worker while the first is still encoding it: ``slow_batches``
compares the timeout with the time a chunk of ``ENCODE_CHUNK_SIZE`` items takes at the conservative rates
of ``RAGREC["ENCODE_ITEMS_PER_SECOND"]`` (system check ``ragrec.W006``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

from . import registry
from .conf import ragrec_settings

#: Workload -> queue name when ``RAGREC["TASK_QUEUES"]`` does not rename it.
STANDARD_QUEUES = {"image": "gpu-image", "text": "gpu-text", "cpu": "cpu"}
#: Seconds a broker waits for an acknowledgement before redelivering, when its transport options do not say
#: (kombu's defaults); brokers missing here (RabbitMQ: its consumer_timeout) do not redeliver on a timer.
DEFAULT_VISIBILITY_TIMEOUTS = {"redis": 3600, "rediss": 3600, "sentinel": 3600, "sqs": 1800}
TASK_PREFIX = "ragrec_django.tasks."


def task_queues() -> dict[str, str] | None:
    """``RAGREC["TASK_QUEUES"]`` with the standard names filled in; None when off. ImproperlyConfigured if invalid."""
    raw = ragrec_settings.TASK_QUEUES
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(
            'RAGREC["TASK_QUEUES"] must be None or a dict of workload -> queue name, e.g. %r.' % STANDARD_QUEUES
        )
    unknown = sorted(set(raw) - set(STANDARD_QUEUES))
    if unknown:
        raise ImproperlyConfigured(
            'Unknown workload(s) %s in RAGREC["TASK_QUEUES"]; the workloads are %s.'
            % (", ".join(map(repr, unknown)), ", ".join(map(repr, STANDARD_QUEUES)))
        )
    for workload, queue in raw.items():
        if not isinstance(queue, str) or not queue.strip():
            raise ImproperlyConfigured(
                'RAGREC["TASK_QUEUES"][%r] must be a queue name (a non-empty string), got %r.' % (workload, queue)
            )
    return {**STANDARD_QUEUES, **raw}


def encode_queue(space_name: str) -> str | None:
    """The queue of encode tasks of a space: its modality's with ``TASK_QUEUES``, else ``ENCODE_QUEUE`` (None: default)."""
    queues = task_queues()
    if queues is None:
        return ragrec_settings.ENCODE_QUEUE or None
    return queues[registry.get_space(space_name).modality]


def generation_queue() -> str | None:
    """The queue of description generation: ``GENERATION_QUEUE``, else the cpu queue with ``TASK_QUEUES`` (None: default)."""
    if ragrec_settings.GENERATION_QUEUE:
        return ragrec_settings.GENERATION_QUEUE
    queues = task_queues()
    return queues["cpu"] if queues is not None else None


def cpu_queue() -> str | None:
    """The queue of the CPU-bound tasks with ``TASK_QUEUES`` (None: Celery's default queue)."""
    queues = task_queues()
    return queues["cpu"] if queues is not None else None


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery router for ragrec's tasks (``CELERY_TASK_ROUTES = ["ragrec_django.queues.route_task"]``).

    Returns ``{"queue": ...}`` for a ragrec task when ``TASK_QUEUES`` is set, else None (the next router, or
    Celery's default queue). A queue given to ``apply_async`` still wins, as with any Celery route.
    """
    if not name.startswith(TASK_PREFIX):
        return None
    queues = task_queues()
    if queues is None:
        return None
    task_name = name[len(TASK_PREFIX) :]
    if task_name == "encode_items_task":
        space = args[0] if args else (kwargs or {}).get("space")
        try:
            return {"queue": encode_queue(space)}
        except ImproperlyConfigured:  # an unknown space: the task reports it wherever it runs
            return {"queue": queues["cpu"]}
    if task_name == "finetune_clip_task":
        return {"queue": queues["image"]}
    if task_name == "generate_descriptions_task":
        return {"queue": generation_queue()}
    return {"queue": queues["cpu"]}


# ---------------------------------------------------------------- batch time against the visibility timeout


def visibility_timeout(broker_url: str | None, transport_options: Mapping | None) -> float | None:
    """Seconds the broker waits for a task's acknowledgement before redelivering it; None if it has no such timer."""
    if not broker_url:
        return None
    scheme = str(broker_url).split("://", 1)[0].split("+", 1)[0].lower()
    if scheme not in DEFAULT_VISIBILITY_TIMEOUTS:
        return None
    value = (transport_options or {}).get("visibility_timeout")
    return float(value) if value is not None else float(DEFAULT_VISIBILITY_TIMEOUTS[scheme])


def encode_rates() -> dict[str, float]:
    """``RAGREC["ENCODE_ITEMS_PER_SECOND"]`` checked: modality -> items per second (> 0). ImproperlyConfigured if not."""
    if not isinstance(ragrec_settings.user_settings.get("ENCODE_ITEMS_PER_SECOND", {}), Mapping):
        raise ImproperlyConfigured('RAGREC["ENCODE_ITEMS_PER_SECOND"] must be a dict of modality -> items per second.')
    rates = {}
    for modality, rate in ragrec_settings.ENCODE_ITEMS_PER_SECOND.items():  # merged with the defaults
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise ImproperlyConfigured(
                'RAGREC["ENCODE_ITEMS_PER_SECOND"][%r] must be a number of items per second > 0, got %r.'
                % (modality, rate)
            )
        rates[modality] = float(rate)
    return rates


@dataclass(frozen=True)
class SlowBatch:
    """A modality whose chunks are expected to outlast the broker's visibility timeout."""

    modality: str
    spaces: tuple[str, ...]
    chunk_size: int
    items_per_second: float
    seconds: float
    visibility_timeout: float

    def message(self) -> str:
        return (
            "An encode batch of space(s) %s (%s) is expected to take %.0f s (%d items at %g items/s, "
            'RAGREC["ENCODE_ITEMS_PER_SECOND"]), longer than the broker\'s visibility_timeout of %.0f s: the broker '
            "would hand the batch to a second worker while the first is still encoding it."
            % (
                ", ".join(map(repr, self.spaces)),
                self.modality,
                self.seconds,
                self.chunk_size,
                self.items_per_second,
                self.visibility_timeout,
            )
        )

    def hint(self) -> str:
        fitting = max(int(self.visibility_timeout * self.items_per_second / 2), 1)
        return (
            'Lower RAGREC["ENCODE_CHUNK_SIZE"] (%d items take about half the timeout at this rate) or raise '
            'CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] above the longest batch.' % fitting
        )


def slow_batches(broker_url: str | None, transport_options: Mapping | None) -> list[SlowBatch]:
    """The modalities of the configured spaces whose ``ENCODE_CHUNK_SIZE`` chunks outlast the visibility timeout."""
    timeout = visibility_timeout(broker_url, transport_options)
    if timeout is None:
        return []
    rates = encode_rates()
    chunk = max(int(ragrec_settings.ENCODE_CHUNK_SIZE), 1)
    by_modality: dict[str, list[str]] = {}
    for name, space in registry.get_spaces().items():
        by_modality.setdefault(space.modality, []).append(name)
    slow = []
    for modality, spaces in sorted(by_modality.items()):
        rate = rates.get(modality)
        if rate is None:
            continue
        seconds = chunk / rate
        if seconds > timeout:
            slow.append(SlowBatch(modality, tuple(spaces), chunk, rate, seconds, timeout))
    return slow


def celery_broker() -> tuple[str | None, dict]:
    """The broker URL and transport options of the Celery app of this process (None, {} without celery)."""
    try:
        from celery import current_app
    except ImportError:
        return None, {}
    return current_app.conf.broker_url, dict(current_app.conf.broker_transport_options or {})
