"""Importing shopper interactions and products from CSV into the plugin's tables (``manage.py ragrec_import``).

* ``importer``: CSV -> validated interaction and product rows -> the plugin's tables (all or nothing);
* ``presets``: presets by name; ``online_retail``: the UCI Online Retail preset.

The public names are re-exported here: ``from ragrec_django import ingest; ingest.import_csv(...)``.
"""

from .importer import (
    EXCLUDED,
    INTERACTION_FIELDS,
    PRODUCT_FIELDS,
    PRODUCT_TEXT,
    DatabaseNotMigrated,
    ImportRefused,
    InteractionRow,
    MappingError,
    Preset,
    ProductRow,
    ReadResult,
    RowError,
    WriteResult,
    describe_text,
    import_csv,
    item_filter,
    parse_mapping,
    read_interactions,
    read_products,
    require_migrated,
    write_rows,
)
from .presets import PRESETS, get_preset

__all__ = [
    "EXCLUDED",
    "INTERACTION_FIELDS",
    "PRESETS",
    "PRODUCT_FIELDS",
    "PRODUCT_TEXT",
    "DatabaseNotMigrated",
    "ImportRefused",
    "InteractionRow",
    "MappingError",
    "Preset",
    "ProductRow",
    "ReadResult",
    "RowError",
    "WriteResult",
    "describe_text",
    "get_preset",
    "import_csv",
    "item_filter",
    "parse_mapping",
    "read_interactions",
    "read_products",
    "require_migrated",
    "write_rows",
]
