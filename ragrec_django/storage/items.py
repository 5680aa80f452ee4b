"""The item mirror: syncing host items into ``Item``."""

from __future__ import annotations

from dataclasses import asdict

from django.contrib.postgres.search import SearchVector
from django.db import connection, transaction
from django.db.models.functions import Left

from ..conf import ragrec_settings
from ..limits import INDEXED_TEXT_MAX_CHARS
from ..models import Item
from ..ranking.tokenise import Tokeniser, tokeniser

_local_catalogue_changes = 0


def local_catalogue_changes() -> int:
    """How many times this process changed the item mirror (caches built from it compare this)."""
    return _local_catalogue_changes


def sync_items(snapshots) -> dict[str, int]:
    """Upsert item snapshots into ``Item``; return {key: item id}."""
    global _local_catalogue_changes
    snapshots = list(snapshots)
    if not snapshots:
        return {}
    _local_catalogue_changes += 1
    keys = [s.key for s in snapshots]
    with transaction.atomic():
        Item.objects.bulk_create(
            [Item(**asdict(snapshot)) for snapshot in snapshots],
            update_conflicts=True,
            unique_fields=["key"],
            update_fields=[
                "title",
                "category",
                "price",
                "in_stock",
                "is_eligible",
                "url",
                "group_key",
                "text",
                "is_promoted",
                "metadata",
                "updated_at",
            ],
        )
        language = ragrec_settings.SEARCH_LANGUAGE
        words = tokeniser(ragrec_settings.SEARCH_TOKENISER)
        if words.active:
            _write_tokenised_vectors(snapshots, words, language)
        else:
            Item.objects.filter(key__in=keys).update(
                search_vector=SearchVector("title", weight="A", config=language)
                + SearchVector("category", weight="B", config=language)
                + SearchVector(Left("text", INDEXED_TEXT_MAX_CHARS), weight="C", config=language)
            )
    return dict(Item.objects.filter(key__in=keys).values_list("key", "id"))


def _write_tokenised_vectors(snapshots, words: Tokeniser, language: str) -> None:
    """``search_vector`` of the snapshots' items from their text as ``words`` splits it (CJK words stand
    alone), weighted as the plain path weights it: title A, category B, text C (its first
    ``INDEXED_TEXT_MAX_CHARS``). One statement."""
    table = connection.ops.quote_name(Item._meta.db_table)
    columns = [
        [s.key for s in snapshots],
        [words.index_text(s.title) for s in snapshots],
        [words.index_text(s.category) for s in snapshots],
        [words.index_text(s.text[:INDEXED_TEXT_MAX_CHARS]) for s in snapshots],
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} i SET search_vector = "
            "setweight(to_tsvector(%s::regconfig, v.title), 'A') || "
            "setweight(to_tsvector(%s::regconfig, v.category), 'B') || "
            "setweight(to_tsvector(%s::regconfig, v.text), 'C') "
            "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS v(key, title, category, text) "
            "WHERE i.key = v.key",
            [language, language, language, *columns],
        )
