"""The item mirror: syncing host items into ``Item``."""

from __future__ import annotations

from dataclasses import asdict

from django.contrib.postgres.search import SearchVector
from django.db import connection, transaction
from django.db.models.functions import Left

from ..conf import ragrec_settings, text_search_of
from ..limits import INDEXED_TEXT_MAX_CHARS
from ..models import Item
from ..ranking.tokenise import Tokeniser, tokeniser
from . import rows

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
        if ragrec_settings.SEARCH_LANGUAGES:
            _write_vectors_per_language(snapshots)
        elif words.active:
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
    _write_vectors(snapshots, [(language, words)] * len(snapshots))


def _write_vectors_per_language(snapshots) -> None:
    """``search_vector`` of each snapshot's item with the configuration and tokeniser of its language
    (``metadata["language"]``, ``conf.text_search_of``). One statement."""
    searches = []
    for snapshot in snapshots:
        config, name = text_search_of(str((snapshot.metadata or {}).get("language") or ""))
        searches.append((config, tokeniser(name)))
    _write_vectors(snapshots, searches)


def _write_vectors(snapshots, searches: list[tuple[str, Tokeniser]]) -> None:
    """``search_vector`` of each snapshot's item from its text as its tokeniser splits it, with its configuration
    (``searches``: one ``(configuration, tokeniser)`` per snapshot)."""
    table = connection.ops.quote_name(Item._meta.db_table)
    columns = [
        [s.key for s in snapshots],
        [config for config, _ in searches],
        [words.index_text(s.title) for s, (_, words) in zip(snapshots, searches, strict=True)],
        [words.index_text(s.category) for s, (_, words) in zip(snapshots, searches, strict=True)],
        [words.index_text(s.text[:INDEXED_TEXT_MAX_CHARS]) for s, (_, words) in zip(snapshots, searches, strict=True)],
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} i SET search_vector = "
            "setweight(to_tsvector(v.config::regconfig, v.title), 'A') || "
            "setweight(to_tsvector(v.config::regconfig, v.category), 'B') || "
            "setweight(to_tsvector(v.config::regconfig, v.text), 'C') "
            "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
            "AS v(key, config, title, category, text) WHERE i.key = v.key",
            columns,
        )


# ---------------------------------------------------------------- the serving path's reads (storage.rows)

#: Item columns a recommendation never shows, left deferred when items are read for a list.
UNSHOWN_FIELDS = ("search_vector", "text")


def item_by_key(key: str) -> Item | None:
    """The item with host key ``key`` (its search text deferred), or None."""
    found = rows.instances(Item, "key = %s", [key], omit=UNSHOWN_FIELDS)
    return found[0] if found else None


def items_by_ids(ids: list[int]) -> dict[int, Item]:
    """{id: item} of the items among ``ids`` that exist, their search text deferred."""
    return {item.id: item for item in rows.instances(Item, "id = ANY(%s)", [list(ids)], omit=UNSHOWN_FIELDS)}


def ranking_attributes(ids: list[int], new_since) -> list[tuple]:
    """(id, category, group_key, price, in_stock, is new, is_promoted, is_eligible) of the items among ``ids``;
    an item is new when created at or after ``new_since`` (compared in SQL: no timestamp to parse per row)."""
    return rows.select(
        Item,
        "id, category, group_key, price, in_stock, created_at >= %s, is_promoted, is_eligible",
        "id = ANY(%s)",
        [new_since, list(ids)],
    )
