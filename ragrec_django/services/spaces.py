"""Embedding-space lifecycle: switch a space to another model, promote, roll back, drop retired generations.

What the ``ragrec_spaces`` command and hosts (the demo's ``prepare_demo``) call instead of storage.
A switch starts a new generation that ``ragrec_reindex`` fills while queries keep using the active
one; ``coverage`` tells whether it is complete; ``promote`` makes it active in one transaction and
``rollback`` returns to the generation it replaced.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .. import storage
from ..models import SpaceGeneration
from ..registry import SpaceConfig, get_spaces
from ..storage.ann import query_categories, small_category_rows
from ..storage.ann import rebuild_index as rebuild_generation_index
from .encoding import SpaceCoverage
from .encoding import coverage as encoding_coverage


def active_generation(space_name: str) -> SpaceGeneration | None:
    """The generation the space's queries use, if any."""
    return storage.active_generation(space_name)


def building_generation(space_name: str) -> SpaceGeneration | None:
    """The generation a switch is filling, if any."""
    return storage.building_generation(space_name)


def switch(space: SpaceConfig, *, encoder=None) -> SpaceGeneration:
    """Start re-encoding ``space`` into a new generation for ``encoder`` (default: its configured one).

    ``SpaceMismatch`` when the space already serves that encoder's vectors.
    """
    encoder = encoder if encoder is not None else space.encoder
    return storage.start_switch(space, version=encoder.version, dimension=encoder.dimension)


def coverage(space_names: Iterable[str] | None = None, *, max_failures: int = 20) -> list[SpaceCoverage]:
    """Per space: items, encoded, failed and stale (not yet encoded) in its current generation."""
    return encoding_coverage(space_names, max_failures=max_failures)


def promote(space_name: str) -> SpaceGeneration:
    """Make the space's building generation active and retire the old one (``SpaceNotReady`` when none is building)."""
    return storage.promote(space_name)


def rollback(space_name: str) -> SpaceGeneration:
    """Re-activate the space's most recently retired generation (``SpaceNotReady`` when there is none)."""
    return storage.rollback(space_name)


def rebuild_index(space: SpaceConfig) -> list[SpaceGeneration]:
    """Give the space's active and building generations the index type its ``INDEX`` names now
    (a new generation gets it anyway); the generations whose index was rebuilt."""
    generations = [storage.active_generation(space.name), storage.building_generation(space.name)]
    return [g for g in generations if g is not None and rebuild_generation_index(g, space.index)]


def drop_retired(space_name: str) -> Iterator[SpaceGeneration]:
    """Delete the space's retired generations with their vectors and indexes, yielding each once it is dropped."""
    for generation in SpaceGeneration.objects.filter(space=space_name, status=SpaceGeneration.Status.RETIRED):
        storage.drop_generation(generation)
        yield generation


def refresh_centroids(space_names: Iterable[str] | None = None) -> dict[str, int]:
    """Compute the category centroids of each space's active generation again (every space when None): the
    categories per space. ``nearest`` routes a query to the small categories nearest it by them
    (``RAGREC["HNSW"]["QUERY_CATEGORIES"]``); a promotion computes them, and so does ``refresh_centroids_task``."""
    counts = {}
    for name in sorted(space_names or get_spaces()):
        generation = storage.active_generation(name)
        if generation is not None:
            counts[name] = storage.refresh_centroids(generation)
    return counts


def refresh_generation_centroids(generation_id: int) -> int | None:
    """Compute one generation's category centroids again; None when it no longer exists."""
    generation = SpaceGeneration.objects.filter(pk=generation_id).first()
    return None if generation is None else storage.refresh_centroids(generation)


def centroids_outdated(generation: SpaceGeneration, item_ids: list[int]) -> bool:
    """Whether vectors just written for ``item_ids`` call for the generation's centroids to be computed again:
    query routing is on (``HNSW["QUERY_CATEGORIES"]`` and ``HNSW["SMALL_CATEGORY_ROWS"]``) and a category of
    theirs has no centroid, or an old one (``storage.centroids.CENTROID_MAX_AGE_SECONDS``)."""
    if not (query_categories() and small_category_rows()):
        return False
    return storage.centroids_outdated(generation, item_ids)
