"""Importing shopper interactions and products from CSV into the plugin's tables (``manage.py ragrec_import``).

* ``importer``: CSV -> validated interaction and product rows -> the plugin's tables (all or nothing);
* ``presets``: presets by name; ``online_retail``: the UCI Online Retail preset.

The public names are re-exported here: ``from ragrec_django import ingest; ingest.import_csv(...)``.
"""

from .importer import (
    INTERACTION_FIELDS,
    PRODUCT_FIELDS,
    ImportRefused,
    InteractionRow,
    MappingError,
    Preset,
    ProductRow,
    ReadResult,
    RowError,
    WriteResult,
    import_csv,
    parse_mapping,
    read_interactions,
    read_products,
    write_rows,
)
from .presets import PRESETS, get_preset

__all__ = [
    "INTERACTION_FIELDS",
    "PRESETS",
    "PRODUCT_FIELDS",
    "ImportRefused",
    "InteractionRow",
    "MappingError",
    "Preset",
    "ProductRow",
    "ReadResult",
    "RowError",
    "WriteResult",
    "get_preset",
    "import_csv",
    "parse_mapping",
    "read_interactions",
    "read_products",
    "write_rows",
]
