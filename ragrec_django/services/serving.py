"""One serving path for every delivery channel (the REST API and the template tags).

Serving a recommendation list is three steps, the same whoever asks:

1. the serving configuration: an explicit ``config`` wins (no experiment), else the visitor's variant of
   the experiment covering the recommender, else ``"default"`` (``experiments.assign``);
2. the service call with that configuration: ``call(config)``;
3. the impression, recorded when the list is shown (``record_impression``; the API shows it at once,
   the tags when the page renders it), with the experiment and variant it was served under.

``serve`` runs steps 1 and 2 and raises the services' errors (``ragrec_django.exceptions``), for a
caller that answers them (the API turns them into HTTP errors). ``serve_for_page`` never raises: for a
page, a list that cannot be made is logged and served empty, and a database error rolls back to a
savepoint of its own, not the whole request's transaction.
"""

from __future__ import annotations

import gc
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from .. import registry, storage
from ..conf import ragrec_settings
from ..exceptions import RecommendationError, SpaceMismatch, SpaceNotReady
from ..ml.devices import limit_cpu_threads
from . import experiments, search
from .experiments import Assignment
from .results import RecommendationList, Visitor, serving_rules

logger = logging.getLogger(__name__)

#: Errors of a list that cannot be made for a reason worth a warning, not a traceback.
EXPECTED_ERRORS = (RecommendationError, SpaceNotReady, SpaceMismatch)


@dataclass(frozen=True)
class Served:
    """A service's result, the recommender asked for, the visitor it was made for and its experiment assignment.

    ``result`` is a ``RecommendationList``, or the assistant's answer (whose ``products`` are the list shown).
    """

    result: Any
    recommender: str
    visitor: Visitor
    assignment: Assignment

    @classmethod
    def outside_experiments(cls, result: RecommendationList, visitor: Visitor) -> Served:
        """A list made elsewhere (not by ``serve``), to be shown to ``visitor`` in no experiment."""
        return cls(result, result.recommender, visitor, Assignment(config=result.config))


def serve(
    recommender: str, visitor: Visitor, config: str | None, call: Callable[[str], Any], *, check_config: bool = False
) -> Served:
    """``call(config to serve)`` for ``visitor``: the explicit ``config``, else the visitor's variant's.

    ``check_config`` reads the configuration's rules first, so an unknown one raises
    ``UnknownServingConfig`` even when the service would rank nothing.
    """
    assignment = experiments.assign(recommender, visitor, None if config is None else str(config))
    with storage.generation_snapshot():  # the check and the call read the configuration once
        if check_config:
            serving_rules(assignment.config)
        return Served(call(assignment.config), recommender, visitor, assignment)


def serve_for_page(
    recommender: str, visitor: Visitor, config: str | None, call: Callable[[str], Any], *, logger: logging.Logger
) -> Served:
    """``serve`` that never raises: a failure is logged to ``logger`` and served as an empty list."""
    assignment = Assignment(config="default" if config is None else str(config))
    try:
        with transaction.atomic():  # a database error rolls back to here, not the whole request's transaction
            assignment = experiments.assign(recommender, visitor, None if config is None else str(config))
            return Served(call(assignment.config), recommender, visitor, assignment)
    except EXPECTED_ERRORS as exc:
        logger.warning("ragrec: no %s recommendations shown: %s", recommender, exc)
    except Exception:
        logger.exception("ragrec: %s recommendations failed", recommender)
    empty = RecommendationList(recommender=recommender, config=assignment.config)
    return Served(empty, recommender, visitor, assignment)


def record_impression(served: Served, *, channel: str, logger: logging.Logger = logger) -> uuid.UUID | None:
    """Store one showing of a served list (one row); its id, or None when the list is empty or the database failed.

    A list keeps its own recommender and configuration; the assistant's answer is recorded under the
    recommender asked for and the configuration served. ``logger`` reports a list whose entries are not
    recommendations (nothing is recorded for it).
    """
    result = served.result
    if isinstance(result, RecommendationList):
        recommender, config, entries = result.recommender, result.config, result.items
    else:
        recommender, config, entries = served.recommender, served.assignment.config, result.products
    try:
        keys = [entry.item.key for entry in entries]
    except Exception:  # a list of something else
        logger.exception("ragrec: cannot record an impression of %r", type(result).__name__)
        keys = []
    return experiments.record_impression(
        recommender,
        config,
        keys,
        served.visitor,
        experiment=served.assignment.experiment,
        variant=served.assignment.variant,
        channel=channel,
    )


# ---------------------------------------------------------------- a web process's start


def prepare_web_process() -> None:
    """Make a web process ready before its first request (a pre-fork server's post-fork hook: the demo's gunicorn
    ``post_worker_init``): torch threads and the query encoders, loaded and run once
    (``registry.prepare_serving_process(warm=True)``); then what the first searches would otherwise fill while
    their shoppers wait (``warm_caches``); then, with ``RAGREC["FREEZE_HEAP_AFTER_WARM_UP"]``, the heap frozen
    out of the garbage collector (``freeze_startup_heap``)."""
    registry.prepare_serving_process(warm=True)
    warm_caches()
    if ragrec_settings.FREEZE_HEAP_AFTER_WARM_UP:
        freeze_startup_heap()


def prepare_master_process() -> None:
    """Fill the vector cache in a pre-fork server's master before it forks its workers (the demo's gunicorn
    ``when_ready`` with ``preload_app``): each worker then starts with every vector its category searches rank,
    sharing those pages with the master and its siblings (copy-on-write: they only read them; the rows another
    process re-encodes are read again into spare rows) instead of reading a copy of its own, which at 1M items is
    1.8 GB per worker (docs/scaling.md, "One copy of the vector cache per server"). Then the master's database
    connections are closed (a worker must not inherit them) and, with ``FREEZE_HEAP_AFTER_WARM_UP``, its heap is
    frozen out of the garbage collector, whose walks would otherwise touch, and so copy, the shared pages. Errors
    are logged: the workers then warm their own caches as without it. torch runs on one thread here: a thread pool
    started before the fork would be missing in the workers, and their first parallel torch call would hang."""
    limit_cpu_threads(1)
    try:
        read = storage.warm_vector_cache()
        logger.info("Server %d: vectors cached per space before forking the workers: %s.", os.getpid(), read)
    except Exception:  # noqa: BLE001
        logger.exception("Could not warm up the vector cache before forking the workers.")
    finally:
        storage.close_all_connections()
    if ragrec_settings.FREEZE_HEAP_AFTER_WARM_UP:
        freeze_startup_heap()


def warm_caches() -> None:
    """Every space's vectors for exact ranking under filters, where they fit (``storage.warm_vector_cache``: the
    first search of a category read ~35-50 ms a space), and the catalogue's vocabulary, spelling correctors and
    completion index (``search.warm_caches``: ~2.7 s at 100k items, on the first search). Errors (a database
    not reachable yet) are logged: those caches then fill on first use, as without warming."""
    try:
        read = storage.warm_vector_cache()
        logger.debug("Web process %d: vectors cached per space %s.", os.getpid(), read)
    except Exception:  # noqa: BLE001
        logger.exception("Could not warm up the vector cache.")
    try:
        search.warm_caches()
    except Exception:  # noqa: BLE001
        logger.exception("Could not warm up the search caches.")


def freeze_startup_heap() -> int:
    """Collect, then exclude every object alive now from later garbage collections; returns how many.

    What a warmed web process holds at this point (modules, models, settings, caches) lives as long as the
    process, yet every full collection would walk it again with the GIL held, stalling all of the process's
    requests for as long as the walk takes (100-400 ms for ~600k objects). Objects made later are collected as usual.
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.debug("Web process %d: %d objects frozen out of the garbage collector.", os.getpid(), frozen)
    return frozen
