"""Encoding service: host items -> adapter -> encoder -> pgvector rows.

Idempotent: an item whose content hash and encoder version are unchanged is
skipped. Safe to run twice or concurrently (rows are upserted on
(generation, item)). A bad image or an item with nothing to encode is
recorded as a failure for that item and never fails the batch. Each batch of
vectors written is announced with ``signals.embeddings_updated`` after commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q

from .. import registry, signals, storage
from ..adapters import content_hash, get_adapter
from ..models import Embedding, EncodingFailure, Item, SpaceGeneration

logger = logging.getLogger(__name__)

#: Items written to the database per statement (a kill loses at most one such write).
WRITE_BATCH = 64


@dataclass
class EncodeReport:
    space: str
    encoded: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    removed: int = 0

    def merge(self, other: EncodeReport) -> None:
        self.encoded += other.encoded
        self.skipped += other.skipped
        self.failed.update(other.failed)
        self.removed += other.removed


def sync_host_items(host_pks: Sequence) -> dict[str, object]:
    """Mirror host items into ``Item`` (deleting mirrors of vanished items); return {key: host item}."""
    adapter = get_adapter()
    host_items = list(adapter.get_queryset().filter(pk__in=valid_host_pks(host_pks)))
    by_key = {adapter.get_key(item): item for item in host_items}
    storage.sync_items(adapter.snapshot(item) for item in host_items)
    requested = {str(pk) for pk in host_pks}
    vanished = requested - set(by_key)
    if vanished:
        Item.objects.filter(key__in=vanished).delete()
    return by_key


def valid_host_pks(host_pks: Sequence) -> list:
    """The values of ``host_pks`` that can be primary keys of the host's item model."""
    pk_field = get_adapter().get_item_model()._meta.pk
    valid = []
    for value in host_pks:
        try:
            pk = pk_field.to_python(value)
        except ValidationError:
            continue
        if isinstance(pk, int) and not -(2**63) <= pk < 2**63:
            continue
        valid.append(pk)
    return valid


def encode_items(
    space_name: str, host_pks: Sequence, *, force: bool = False, batch_size: int | None = None
) -> EncodeReport:
    """Encode the given host items into one space; return what happened per item."""
    space = registry.get_space(space_name)
    encoder = space.encoder
    if current_write_generation(space_name) is None:
        _load(encoder)  # a model that cannot load leaves no empty first generation behind
    generation = storage.write_generation(space, version=encoder.version, dimension=encoder.dimension)
    report = EncodeReport(space=space_name)
    adapter = get_adapter()
    by_key = sync_host_items(host_pks)
    report.removed = len({str(pk) for pk in host_pks}) - len(by_key)
    item_ids = dict(Item.objects.filter(key__in=list(by_key)).values_list("key", "id"))
    item_keys = {item_id: key for key, item_id in item_ids.items()}
    existing = dict(
        Embedding.objects.filter(generation=generation, item_id__in=item_ids.values()).values_list(
            "item_id", "content_hash"
        )
    )

    pending: list[tuple[int, str, object]] = []  # (item id, hash, content)
    failures: list[tuple[int, str, str]] = []
    for key, host_item in by_key.items():
        item_id = item_ids[key]
        try:
            content = adapter.get_text(host_item) if space.modality == "text" else adapter.get_image_bytes(host_item)
        except (OSError, ValueError) as exc:
            failures.append((item_id, "", "could not read %s: %s" % (space.modality, exc)))
            continue
        if not content:
            failures.append((item_id, "", "no %s to encode" % space.modality))
            continue
        digest = content_hash(content)
        if not force and existing.get(item_id) == digest:
            report.skipped += 1
            continue
        pending.append((item_id, digest, content))

    for start in range(0, len(pending), WRITE_BATCH):
        chunk = pending[start : start + WRITE_BATCH]
        ok, failed = _encode_chunk(encoder, space.modality, chunk, batch_size)
        if ok:
            ids, hashes, vectors = ok
            report.encoded += storage.upsert_embeddings(generation, ids, vectors, hashes)
            _announce(space_name, generation, ids, item_keys)
        failures.extend(failed)
    if failures:
        storage.record_failures(generation, failures)
        keys = dict(Item.objects.filter(id__in=[f[0] for f in failures]).values_list("id", "key"))
        report.failed.update({keys[item_id]: reason for item_id, _, reason in failures})
    return report


def _load(encoder) -> None:
    """Load the encoder's model now (its ``load()``, where it has one) so that a failure raises before any write."""
    load = getattr(encoder, "load", None)
    if callable(load):
        load()


def _announce(space_name: str, generation: SpaceGeneration, ids: list[int], item_keys: dict[int, str]) -> None:
    """Send ``signals.embeddings_updated`` for written vectors once their transaction commits."""
    keys = [item_keys[item_id] for item_id in ids]
    transaction.on_commit(
        lambda: signals.embeddings_updated.send(
            sender=Embedding, space=space_name, generation=generation, item_ids=list(ids), item_keys=keys
        )
    )


def _encode_chunk(encoder, modality: str, chunk, batch_size):
    """((item ids, hashes, vectors) of the encoded items or None, [(item id, hash, reason)] of the others)."""
    result = encoder.encode(modality, [content for _, _, content in chunk], batch_size=batch_size)
    ok = result.ok_indices
    failed = [(chunk[i][0], chunk[i][1], "bad %s: %s" % (modality, reason)) for i, reason in result.errors.items()]
    if not ok:
        return None, failed
    return ([chunk[i][0] for i in ok], [chunk[i][1] for i in ok], result.vectors[ok]), failed


def stale_host_pks(space_name: str) -> list:
    """Host primary keys whose items are not encoded in the space's write generation.

    Content changes are found by re-hashing during encoding (cheap next to
    encoding); this lists items never encoded or not yet mirrored.
    """
    adapter = get_adapter()
    generation = current_write_generation(space_name)
    all_pks = [str(pk) for pk in adapter.get_queryset().values_list("pk", flat=True)]
    if generation is None:
        return all_pks
    done = set(
        Item.objects.filter(
            Q(embeddings__generation=generation) | Q(encoding_failures__generation=generation)
        ).values_list("key", flat=True)
    )
    return [pk for pk in all_pks if pk not in done]


def current_write_generation(space_name: str) -> SpaceGeneration | None:
    return storage.building_generation(space_name) or storage.active_generation(space_name)


@dataclass
class SpaceCoverage:
    space: str
    generation: str
    items: int
    encoded: int
    failed: int
    stale: int
    failures: list[tuple[str, str]]


def coverage(space_names: Iterable[str] | None = None, *, max_failures: int = 20) -> list[SpaceCoverage]:
    """Per space: items, encoded, failed (with reasons), stale (not yet encoded in the current generation)."""
    adapter = get_adapter()
    total = adapter.get_queryset().count()
    rows = []
    for name in space_names or registry.get_spaces():
        generation = current_write_generation(name)
        if generation is None:
            rows.append(SpaceCoverage(name, "-", total, 0, 0, total, []))
            continue
        counts = Item.objects.aggregate(
            encoded=Count("embeddings", filter=Q(embeddings__generation=generation), distinct=True),
        )
        failures = EncodingFailure.objects.filter(generation=generation).select_related("item").order_by("item__key")
        failed = failures.count()
        rows.append(
            SpaceCoverage(
                space=name,
                generation=str(generation),
                items=total,
                encoded=counts["encoded"],
                failed=failed,
                stale=max(total - counts["encoded"] - failed, 0),
                failures=[(f.item.key, f.reason) for f in failures[:max_failures]],
            )
        )
    return rows
