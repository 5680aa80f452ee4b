"""Item vectors: checking a batch, writing it to a generation, recording encoding failures, reading vectors back.

Vectors are stored as ``halfvec`` without a fixed dimension (each generation fixes its own).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import numpy as np
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.utils import timezone

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
    """Write vectors for items (insert or update); return rows written.

    The batch goes to a session-local staging table by binary COPY (no per-value text formatting or parsing), then
    into the generation's partition in one ``INSERT ... ON CONFLICT`` statement.
    """
    array = check_vectors(vectors, generation.dimension)
    if not (len(item_ids) == len(array) == len(content_hashes)):
        raise ValueError("item_ids, vectors and content_hashes differ in length.")
    if not item_ids:
        return 0
    if len(set(item_ids)) != len(item_ids):
        raise ValueError("item_ids holds an item more than once.")
    table = connection.ops.quote_name(Embedding._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('pg_temp.%s') IS NULL" % _STAGE)
        if cursor.fetchone()[0]:
            cursor.execute(
                "CREATE TEMP TABLE %s (item_id bigint, vector halfvec, content_hash text) ON COMMIT DELETE ROWS"
                % _STAGE
            )
        with cursor.copy("COPY %s (item_id, vector, content_hash) FROM STDIN (FORMAT BINARY)" % _STAGE) as copy:
            copy.write(_binary_copy_rows(item_ids, array, content_hashes))
        cursor.execute(
            f"INSERT INTO {table} (item_id, generation_id, vector, encoder_version, content_hash, updated_at) "
            f"SELECT item_id, %s, vector, %s, content_hash, %s FROM {_STAGE} "
            "ON CONFLICT (generation_id, item_id) DO UPDATE SET vector = EXCLUDED.vector, "
            "encoder_version = EXCLUDED.encoder_version, content_hash = EXCLUDED.content_hash, "
            "updated_at = EXCLUDED.updated_at",
            [generation.pk, generation.encoder_version, timezone.now()],
        )
        # Empty again for a later batch of the same transaction (the table is emptied at commit anyway).
        cursor.execute("DELETE FROM %s" % _STAGE)
        EncodingFailure.objects.filter(generation=generation, item_id__in=item_ids).delete()
    _forget_cached(generation, item_ids)
    return len(item_ids)


#: The session's staging table of ``upsert_embeddings`` (temporary: each database session has its own).
_STAGE = "ragrec_embedding_stage"
_COPY_HEADER = vector_cache.COPY_SIGNATURE + struct.pack(">ii", 0, 0)


def _binary_copy_rows(item_ids: Sequence[int], array: np.ndarray, content_hashes: Sequence[str]) -> bytes:
    """PostgreSQL's binary COPY stream of (item_id bigint, vector halfvec, content_hash text) rows; a halfvec is
    sent as pgvector's ``halfvec_recv`` reads it: uint16 dimension, uint16 0, big-endian float16 values."""
    dimension = array.shape[1]
    halves = np.ascontiguousarray(array.astype(">f2"))
    vector_head = struct.pack(">iHH", 4 + 2 * dimension, dimension, 0)
    parts = [_COPY_HEADER]
    for item_id, vector, content_hash in zip(item_ids, halves, content_hashes, strict=True):
        encoded = str(content_hash).encode()
        parts += [
            struct.pack(">hiq", 3, 8, int(item_id)),
            vector_head,
            vector.tobytes(),
            struct.pack(">i", len(encoded)),
            encoded,
        ]
    parts.append(struct.pack(">h", -1))
    return b"".join(parts)


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
