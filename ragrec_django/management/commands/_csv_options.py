"""The CSV options ``ragrec_import`` and ``ragrec_evaluate`` share: the same names, defaults, help and checks.

Not a command (the leading underscore keeps Django from listing it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from django.core.management.base import CommandError, DjangoHelpFormatter

from ragrec_django.ingest import INTERACTION_FIELDS, PRESETS, PRODUCT_FIELDS, PRODUCT_TEXT, parse_mapping

#: Row errors printed before "... and N more".
SHOWN_ERRORS = 20

#: Defaults of the shared options (by ``dest``); an option whose value differs from its default was given.
DEFAULTS = {
    "interactions": None,
    "products": None,
    "map": [],
    "product_map": [],
    "event": "purchase",
    "time_format": None,
    "timezone": None,
    "max_quantity": 10_000,
    "delimiter": ",",
    "encoding": "utf-8-sig",
    "skip_invalid": False,
    "exclude_items": [],
}


class Formatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _fields(fields: dict[str, str]) -> str:
    return "\n".join("  %-12s %s" % (name, text) for name, text in fields.items())


COLUMNS_HELP = """\
interaction columns (--map FIELD=COLUMN; a column named like the field needs no mapping):
{interactions}

product columns (--product-map FIELD=COLUMN):
{products}

product text: the text space encodes, for each product, {text},
  e.g. 'Red mug Category: Mugs. A red ceramic mug.'; nothing else of the product (price, image, url,
  group) is encoded.

presets (--map/--product-map entries override the preset's):
{presets}
""".format(
    interactions=_fields(INTERACTION_FIELDS),
    products=_fields(PRODUCT_FIELDS),
    text=PRODUCT_TEXT,
    presets="\n".join("  %s: %s" % (p.name, p.description) for p in PRESETS.values()),
)


def add_arguments(parser) -> None:
    """The file, mapping and validation options."""
    parser.add_argument("--interactions", help="CSV of interactions (one event per row).")
    parser.add_argument("--products", help="CSV of products (one item per row).")
    parser.add_argument(
        "--map", nargs="+", action="extend", default=[], metavar="FIELD=COLUMN", help="Interaction column mapping."
    )
    parser.add_argument(
        "--product-map",
        nargs="+",
        action="extend",
        default=[],
        metavar="FIELD=COLUMN",
        help="Product column mapping (text: title, category, description; also price, image, url, group).",
    )
    parser.add_argument("--event", default="purchase", help="Event of rows without an event column (default purchase).")
    parser.add_argument(
        "--time-format", help="strptime format of the timestamp column (default: ISO 8601 or Unix seconds)."
    )
    parser.add_argument(
        "--timezone", help="Time zone of naive timestamps (default: the preset's, else settings.TIME_ZONE)."
    )
    parser.add_argument(
        "--max-quantity", type=int, default=10_000, help="Largest valid quantity (default 10000, as the events API)."
    )
    parser.add_argument("--delimiter", default=",", help="CSV field delimiter (default ',').")
    parser.add_argument("--encoding", default="utf-8-sig", help="File encoding (default utf-8, BOM tolerated).")
    parser.add_argument(
        "--exclude-items",
        nargs="+",
        action="extend",
        default=[],
        metavar="PATTERN",
        help="Item keys to leave out, in events and products (shell patterns, case-sensitive: POST 'gift_*'); "
        "counted, like a preset's filters. For shipping, fees and other lines that are not products.",
    )
    parser.add_argument(
        "--skip-invalid", action="store_true", help="Leave out invalid rows (counted) instead of refusing."
    )


def given(options: dict) -> list[str]:
    """The shared options given on the command line (as ``--flags``), in a stable order."""
    return [
        "--" + dest.replace("_", "-") for dest, default in DEFAULTS.items() if options.get(dest, default) != default
    ]


def mappings(options: dict) -> tuple[dict[str, str], dict[str, str]]:
    """(interaction mapping, product mapping) from ``--map`` / ``--product-map``; ``MappingError`` if malformed."""
    return parse_mapping(options["map"], INTERACTION_FIELDS), parse_mapping(options["product_map"], PRODUCT_FIELDS)


def read_options(options: dict) -> dict:
    """Keyword arguments of the importer's readers; ``CommandError`` for values no reader could use."""
    if options["max_quantity"] < 1:
        raise CommandError("--max-quantity must be at least 1 (got %d)." % options["max_quantity"])
    if len(options["delimiter"]) != 1:
        raise CommandError("--delimiter must be one character (got %r)." % options["delimiter"])
    try:
        "".encode(options["encoding"])
    except LookupError as exc:
        raise CommandError("Unknown --encoding %r." % options["encoding"]) from exc
    return {
        "default_event": options["event"],
        "time_format": options["time_format"],
        "time_zone": options["timezone"],
        "max_quantity": options["max_quantity"],
        "delimiter": options["delimiter"],
        "encoding": options["encoding"],
        "exclude_items": options["exclude_items"],
    }


def existing_file(path: str | Path, what: str) -> Path:
    """``path`` when it is a readable file, else a ``CommandError`` naming it and ``what`` it should hold."""
    path = Path(path)
    if path.is_dir():
        raise CommandError("%s is a folder, not a file (%s)." % (path, what))
    if not path.is_file():
        raise CommandError("No such file: %s (%s)." % (path, what))
    return path


def read_error(exc: Exception, options: dict) -> CommandError:
    """A file that cannot be read as CSV text, as a ``CommandError``."""
    if isinstance(exc, UnicodeDecodeError):
        return CommandError(
            "A file is not %s text (%s); give its --encoding (e.g. latin-1, cp1252)." % (options["encoding"], exc)
        )
    return CommandError("A file could not be read as CSV: %s" % exc)


def write_refused(command, exc, *, nothing: str) -> CommandError:
    """Print an ``ImportRefused``'s row errors (file and line) to stderr; the ``CommandError`` that ends the run
    ("nothing was ``nothing``")."""
    for error in exc.errors[:SHOWN_ERRORS]:
        command.stderr.write(str(error))
    if exc.count > SHOWN_ERRORS:
        command.stderr.write("... and %d more invalid row(s)." % (exc.count - SHOWN_ERRORS))
    return CommandError(
        "%d invalid row(s): nothing was %s. Fix them, or pass --skip-invalid to leave them out." % (exc.count, nothing)
    )
