"""Item vectors: checking a batch, writing it to a generation, recording encoding failures, reading vectors back.

Vectors are stored as ``halfvec`` without a fixed dimension (each generation fixes its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from django.db import DEFAULT_DB_ALIAS, transaction
from pgvector import HalfVector

from ..ml.base import DimensionMismatch
from ..models import Embedding, EncodingFailure, SpaceGeneration
from . import vector_cache
from .generations import active_generation

#: The largest magnitude a float16 (pgvector halfvec) holds.
HALFVEC_MAX = 65504.0


def check_vectors(vectors: np.ndarray, dimension: int) -> np.ndarray:
    """Validate a batch of vectors: 2-D, the generation's dimension, finite, not zero."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise DimensionMismatch("Expected a 2-D array of vectors, got shape %s." % (array.shape,))
    if array.shape[1] != dimension:
        raise DimensionMismatch("Vectors have dimension %d but the space stores %d." % (array.shape[1], dimension))
    if not np.isfinite(array).all():
        raise ValueError("Vectors contain NaN or infinite values.")
    if np.abs(array).max(initial=0) > HALFVEC_MAX:
        raise ValueError("Vectors have values beyond halfvec's range (+-%g); normalise them." % HALFVEC_MAX)
    if array.size and (np.linalg.norm(array, axis=1) == 0).any():
        raise ValueError("Vectors contain an all-zero row (cosine distance undefined).")
    return array


def upsert_embeddings(
    generation: SpaceGeneration, item_ids: Sequence[int], vectors: np.ndarray, content_hashes: Sequence[str]
) -> int:
    """Write vectors for items in one statement (insert or update); return rows written."""
    array = check_vectors(vectors, generation.dimension)
    if not (len(item_ids) == len(array) == len(content_hashes)):
        raise ValueError("item_ids, vectors and content_hashes differ in length.")
    if not item_ids:
        return 0
    rows = [
        Embedding(
            item_id=item_id,
            generation=generation,
            vector=HalfVector(vector),
            encoder_version=generation.encoder_version,
            content_hash=content_hash,
        )
        for item_id, vector, content_hash in zip(item_ids, array, content_hashes, strict=True)
    ]
    with transaction.atomic():
        Embedding.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["generation", "item"],
            update_fields=["vector", "encoder_version", "content_hash", "updated_at"],
        )
        EncodingFailure.objects.filter(generation=generation, item_id__in=item_ids).delete()
    _forget_cached(generation, item_ids)
    return len(rows)


def record_failures(generation: SpaceGeneration, failures: Iterable[tuple[int, str, str]]) -> int:
    """Record (item_id, content_hash, reason) failures; repeated failures count attempts."""
    failures = list(failures)
    if not failures:
        return 0
    with transaction.atomic():
        existing = {
            f.item_id: f
            for f in EncodingFailure.objects.select_for_update().filter(
                generation=generation, item_id__in=[item_id for item_id, _, _ in failures]
            )
        }
        new = []
        for item_id, content_hash, reason in failures:
            failure = existing.get(item_id)
            if failure is None:
                new.append(
                    EncodingFailure(item_id=item_id, generation=generation, content_hash=content_hash, reason=reason)
                )
            else:
                failure.attempts += 1
                failure.reason, failure.content_hash = reason, content_hash
                failure.save(update_fields=["attempts", "reason", "content_hash", "updated_at"])
        EncodingFailure.objects.bulk_create(new, ignore_conflicts=True)
        failed = [item_id for item_id, _, _ in failures]
        Embedding.objects.filter(generation=generation, item_id__in=failed).delete()
    _forget_cached(generation, failed)
    return len(failures)


def _forget_cached(generation: SpaceGeneration, item_ids) -> None:
    """This process's cached copies of the rows just written (now, and again once the transaction commits, so a
    search between the two cannot keep the old vector)."""
    item_ids = list(item_ids)
    vector_cache.forget(generation.pk, item_ids)
    transaction.on_commit(lambda: vector_cache.forget(generation.pk, item_ids))


def vectors_for_items(space_name: str, item_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """Stored vectors of the active generation, by item id (float32; read in pgvector's binary format)."""
    generation = active_generation(space_name)
    if generation is None or not item_ids:
        return {}
    ids, vectors = vector_cache.read_vectors(generation, list(item_ids), DEFAULT_DB_ALIAS)
    return {int(item_id): vector.astype(np.float32) for item_id, vector in zip(ids, vectors, strict=True)}
