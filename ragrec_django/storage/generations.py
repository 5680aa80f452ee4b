"""Space generations: which one a space serves (active) or fills (building), switching, promoting, rolling back.

Each generation holds the vectors of one encoder version and dimension in a partition of the embeddings
table of its own (``partitions``), with an HNSW (cosine) index on ``vector::halfvec(<dim>)`` (``create_index``).
"""

from __future__ import annotations

import contextvars
import functools
from contextlib import contextmanager

from django.db import connection, transaction
from django.utils import timezone

from ..conf import ragrec_settings
from ..models import SpaceGeneration
from ..registry import SpaceConfig, get_spaces
from . import centroids, partitions, rows

Status = SpaceGeneration.Status


class SpaceMismatch(Exception):
    """The space's stored generation does not match its configured encoder."""


class SpaceNotReady(Exception):
    """A space has no active generation yet (nothing encoded)."""


_snapshot: contextvars.ContextVar[dict[str, SpaceGeneration | None] | None] = contextvars.ContextVar(
    "ragrec_generation_snapshot", default=None
)
_snapshot_memo: contextvars.ContextVar[dict | None] = contextvars.ContextVar("ragrec_snapshot_memo", default=None)


def active_generation(space_name: str) -> SpaceGeneration | None:
    """The space's active generation; inside ``generation_snapshot()`` the one read when it began."""
    snapshot = _snapshot.get()
    if snapshot is None:
        return SpaceGeneration.objects.filter(space=space_name, status=Status.ACTIVE).first()
    if space_name not in snapshot:
        snapshot[space_name] = SpaceGeneration.objects.filter(space=space_name, status=Status.ACTIVE).first()
    return snapshot[space_name]


def snapshot_memo() -> dict | None:
    """Inside ``generation_snapshot()``, a dict for values read once per call (e.g. the ids of the items
    passing a filter, needed by each space searched); None outside one."""
    return _snapshot_memo.get()


@contextmanager
def generation_snapshot():
    """Read every space's active generation once (one query) and use that for the whole block.

    A recommendation call looks up generations many times (per space, per
    vector read, per ANN query); inside a snapshot they cost nothing after the
    first, and a promote or rollback that lands mid-call cannot make one call
    mix vectors of two generations. Nested snapshots reuse the outer one.
    """
    if _snapshot.get() is not None:
        yield
        return

    active = {g.space: g for g in rows.instances(SpaceGeneration, "status = %s", [Status.ACTIVE])}
    token = _snapshot.set({name: active.get(name) for name in {*get_spaces(), *active}})
    memo_token = _snapshot_memo.set({})
    try:
        yield
    finally:
        _snapshot_memo.reset(memo_token)
        _snapshot.reset(token)


def with_generation_snapshot(function):
    """Decorator: run ``function`` inside ``generation_snapshot()``."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with generation_snapshot():
            return function(*args, **kwargs)

    return wrapper


def building_generation(space_name: str) -> SpaceGeneration | None:
    return SpaceGeneration.objects.filter(space=space_name, status=Status.BUILDING).first()


def _matches(generation: SpaceGeneration, version: str, dimension: int) -> bool:
    return generation.encoder_version == version and generation.dimension == dimension


def write_generation(space: SpaceConfig, *, version: str, dimension: int) -> SpaceGeneration:
    """The generation that vectors of this encoder version and dimension are written to.

    The first write to a space creates its first, active generation (once,
    even under concurrent writers). After a switch, writes go to the building
    generation. Writing a model's vectors into a generation of another model is
    refused with ``SpaceMismatch``.
    """
    generation = _existing_write_generation(space, version, dimension)
    if generation is not None:
        return generation
    with transaction.atomic():
        _lock_space(space.name)
        generation = _existing_write_generation(space, version, dimension)
        if generation is not None:
            return generation
        return _create_generation(space, version=version, dimension=dimension, status=Status.ACTIVE)


def _existing_write_generation(space: SpaceConfig, version: str, dimension: int) -> SpaceGeneration | None:
    building = building_generation(space.name)
    if building is not None and _matches(building, version, dimension):
        return building
    active = active_generation(space.name)
    if active is not None and _matches(active, version, dimension):
        return active
    current = building or active
    if current is None:
        return None
    raise SpaceMismatch(
        "Space %r stores %d-dimensional vectors from %r, but encoder %r now produces %d-dimensional vectors "
        "from %r. Run `manage.py ragrec_spaces switch %s` to re-encode it into a new generation "
        "(queries keep using the current one until the new one is complete)."
        % (space.name, current.dimension, current.encoder_version, space.encoder_alias, dimension, version, space.name)
    )


def _lock_space(space_name: str) -> None:
    """Serialise generation changes of one space until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ["ragrec-space:" + space_name])


def start_switch(space: SpaceConfig, *, version: str, dimension: int) -> SpaceGeneration:
    """Begin re-encoding ``space`` with its configured encoder into a new generation."""
    with transaction.atomic():
        _lock_space(space.name)
        active = active_generation(space.name)
        if active is not None and _matches(active, version, dimension):
            raise SpaceMismatch(
                "Space %r is already on %r (%dd); nothing to switch." % (space.name, version, dimension)
            )
        building = building_generation(space.name)
        if building is not None:
            if _matches(building, version, dimension):
                return building
            drop_generation(building)
        status = Status.BUILDING if active is not None else Status.ACTIVE
        return _create_generation(space, version=version, dimension=dimension, status=status)


def _create_generation(space: SpaceConfig, *, version: str, dimension: int, status: str) -> SpaceGeneration:
    with transaction.atomic():
        _lock_space(space.name)
        last = SpaceGeneration.objects.filter(space=space.name).order_by("-number").first()
        generation = SpaceGeneration.objects.create(
            space=space.name,
            number=(last.number + 1) if last else 1,
            encoder=space.encoder_alias,
            modality=space.modality,
            encoder_version=version,
            dimension=dimension,
            status=status,
            activated_at=timezone.now() if status == Status.ACTIVE else None,
        )
        if status == Status.ACTIVE:
            create_index(generation, space.index)  # creates the generation's partition first
        else:
            # A generation being built is filled without an index (writes ~14x faster at 1M items) and indexed in
            # one bulk build when it is promoted (``promote``).
            partitions.ensure_generation_partition(generation)
    return generation


def binary_index_name(generation: SpaceGeneration) -> str:
    """The name of a generation's binary-quantized HNSW index (``create_index(..., "binary")``)."""
    return generation.index_name + "_bit"


def create_index(generation: SpaceGeneration, index: str = "halfvec") -> None:
    """Create the generation's HNSW index on its partition if it does not exist (and the partition if it has none).

    ``index="halfvec"``: cosine distance on ``vector::halfvec(<dim>)`` (``generation.index_name``);
    ``"binary"``: Hamming distance on ``binary_quantize(vector)::bit(<dim>)``, 1 bit per dimension
    (``binary_index_name``); ``storage.ann`` re-ranks its candidates exactly.
    """
    hnsw = ragrec_settings.HNSW
    if index == "binary":
        name, expression = binary_index_name(generation), "(binary_quantize(vector)::bit({dim})) bit_hamming_ops"
    elif index == "halfvec":
        name, expression = generation.index_name, "(vector::halfvec({dim})) halfvec_cosine_ops"
    else:
        raise ValueError("Unknown index type %r (halfvec or binary)." % (index,))
    partitions.ensure_generation_partition(generation)
    # The WHERE clause holds for every row of the partition; it is kept so that the planner, seeing the queries'
    # "generation_id = <id>" implied by the index, costs the index scan as it did on the unpartitioned table.
    with connection.cursor() as cursor:
        # Inside a transaction with deferred FK checks pending, PostgreSQL refuses CREATE INDEX.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            (
                "CREATE INDEX IF NOT EXISTS {name} ON {table} USING hnsw (" + expression + ") "
                "WITH (m = {m}, ef_construction = {ef}) WHERE generation_id = {gid}"
            ).format(
                name=connection.ops.quote_name(name),
                table=connection.ops.quote_name(partitions.generation_partition(generation)),
                dim=int(generation.dimension),
                m=int(hnsw["M"]),
                ef=int(hnsw["EF_CONSTRUCTION"]),
                gid=int(generation.pk),
            )
        )
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _has_index(generation: SpaceGeneration) -> bool:
    """Whether the generation has an HNSW index of either type."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regclass(%s) IS NOT NULL OR to_regclass(%s) IS NOT NULL",
            [
                connection.ops.quote_name(generation.index_name),
                connection.ops.quote_name(binary_index_name(generation)),
            ],
        )
        return cursor.fetchone()[0]


def drop_generation(generation: SpaceGeneration) -> None:
    """Delete a generation with its partition: its vectors and its index (either type) go at once."""
    with transaction.atomic():
        partitions.drop_generation_partition(generation)
        generation.delete()


def promote(space_name: str) -> SpaceGeneration:
    """Make the building generation active and retire the old one, atomically, after building the new one's index
    (the space's ``INDEX`` type) if it has none and computing its category centroids; the queries keep using the
    old generation meanwhile."""
    building = building_generation(space_name)
    if building is not None:
        if not _has_index(building):
            space = get_spaces().get(space_name)
            with transaction.atomic():
                create_index(building, space.index if space is not None else "halfvec")
        centroids.refresh(building)
    with transaction.atomic():
        generations = list(
            SpaceGeneration.objects.select_for_update().filter(
                space=space_name, status__in=[Status.ACTIVE, Status.BUILDING]
            )
        )
        building = next((g for g in generations if g.status == Status.BUILDING), None)
        if building is None:
            raise SpaceNotReady("Space %r has no generation being built." % space_name)
        for generation in generations:
            if generation.status == Status.ACTIVE:
                generation.status = Status.RETIRED
                generation.save(update_fields=["status"])
        building.status = Status.ACTIVE
        building.activated_at = timezone.now()
        building.save(update_fields=["status", "activated_at"])
    return building


def rollback(space_name: str) -> SpaceGeneration:
    """Atomically re-activate the most recently retired generation."""
    with transaction.atomic():
        retired = (
            SpaceGeneration.objects.select_for_update()
            .filter(space=space_name, status=Status.RETIRED)
            .order_by("-activated_at", "-number")
            .first()
        )
        if retired is None:
            raise SpaceNotReady("Space %r has no retired generation to roll back to." % space_name)
        SpaceGeneration.objects.filter(space=space_name, status=Status.ACTIVE).update(status=Status.RETIRED)
        retired.status = Status.ACTIVE
        retired.activated_at = timezone.now()
        retired.save(update_fields=["status", "activated_at"])
    return retired
