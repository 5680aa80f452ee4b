"""Storage: every SQL statement of the app, by the tables it serves.

* ``generations``: space generations (active, snapshot, write, switch, promote, rollback) and their HNSW indexes;
* ``vectors``: checking, writing and reading item vectors, and encoding failures;
* ``ann``: nearest-neighbour queries under business filters (``ItemFilter``);
* ``centroids``: each category's mean vector per generation, for routing a query to the small categories near it;
* ``items``: the item mirror (sync), product-name lookups and the serving path's item reads;
* ``rows``: reads of whole rows on the serving path without the ORM's query compiler;
* ``configs``: the serving configurations saved in the admin;
* ``keyword``: typo-tolerant full-text search of the item mirror;
* ``interactions``: event tables: popularity, repeat purchases, co-purchases, experiment statistics, imports;
* ``database``: facts about the server (its version, its extensions).

The public names are re-exported here: ``from ragrec_django import storage; storage.nearest(...)``.
"""

from .ann import (
    EXACT_SEARCH_MAX_ROWS,
    NO_FILTER,
    SHARE_ESTIMATE_TTL,
    ItemFilter,
    Neighbour,
    ef_search_for,
    items_without_vectors,
    nearest,
    nearest_to_item,
    warm_vector_cache,
)
from .centroids import nearest_categories
from .centroids import outdated as centroids_outdated
from .centroids import refresh as refresh_centroids
from .configs import NO_ROW as NO_SERVING_CONFIG_ROW
from .configs import serving_config_rules
from .database import (
    SCALE_EXTENSIONS,
    close_all_connections,
    extension_version,
    missing_text_search_configurations,
    scale_extensions,
    server_version,
    unapplied_migrations,
)
from .generations import (
    SpaceMismatch,
    SpaceNotReady,
    Status,
    active_generation,
    building_generation,
    create_index,
    drop_generation,
    generation_snapshot,
    promote,
    rollback,
    snapshot_memo,
    start_switch,
    with_generation_snapshot,
    write_generation,
)
from .interactions import (
    EVENT_COLUMNS,
    co_purchases,
    copy_interactions,
    decayed_popularity,
    experiment_stats,
    insert_events,
    insert_impression,
    repeat_purchases,
)
from .items import UNSHOWN_FIELDS, item_by_key, items_by_ids, local_catalogue_changes, ranking_attributes, sync_items
from .keyword import SpellingCorrector, keyword_search, products_named_in, spelling_corrector
from .partitions import (
    add_months,
    create_event_months,
    drop_event_months_before,
    event_months,
    generation_partition,
    month_start,
)
from .vectors import HALFVEC_MAX, check_vectors, record_failures, upsert_embeddings, vectors_for_items

__all__ = [
    "EVENT_COLUMNS",
    "EXACT_SEARCH_MAX_ROWS",
    "HALFVEC_MAX",
    "NO_FILTER",
    "SHARE_ESTIMATE_TTL",
    "ItemFilter",
    "Neighbour",
    "SpaceMismatch",
    "SpaceNotReady",
    "SpellingCorrector",
    "Status",
    "active_generation",
    "building_generation",
    "centroids_outdated",
    "check_vectors",
    "close_all_connections",
    "co_purchases",
    "copy_interactions",
    "decayed_popularity",
    "experiment_stats",
    "insert_events",
    "insert_impression",
    "repeat_purchases",
    "add_months",
    "create_event_months",
    "drop_event_months_before",
    "event_months",
    "generation_partition",
    "month_start",
    "create_index",
    "drop_generation",
    "ef_search_for",
    "extension_version",
    "missing_text_search_configurations",
    "scale_extensions",
    "SCALE_EXTENSIONS",
    "generation_snapshot",
    "keyword_search",
    "local_catalogue_changes",
    "items_without_vectors",
    "nearest",
    "nearest_categories",
    "nearest_to_item",
    "products_named_in",
    "promote",
    "record_failures",
    "refresh_centroids",
    "rollback",
    "server_version",
    "snapshot_memo",
    "spelling_corrector",
    "start_switch",
    "sync_items",
    "NO_SERVING_CONFIG_ROW",
    "UNSHOWN_FIELDS",
    "item_by_key",
    "items_by_ids",
    "ranking_attributes",
    "serving_config_rules",
    "unapplied_migrations",
    "upsert_embeddings",
    "vectors_for_items",
    "warm_vector_cache",
    "with_generation_snapshot",
    "write_generation",
]
