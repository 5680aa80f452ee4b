"""CSV import of shopper interactions and products into the plugin's own tables.

Two steps, so callers (the ``ragrec_import`` command, the evaluation runner) can look at rows
before anything is written:

1. ``read_interactions`` / ``read_products`` parse a CSV through a column mapping, validate
   every row and return the good rows, the bad ones (``RowError``: file, line number, what is
   wrong) and the rows a preset deliberately filters out (counted by reason);
2. ``write_rows`` stores products into the ``Item`` mirror and interactions into
   ``Interaction`` in one transaction: item keys and user ids are resolved there, and any
   problem refuses the whole import (``ImportRefused``) unless ``skip_invalid`` drops the bad
   rows explicitly. Nothing is ever half-imported.

Interactions are written with PostgreSQL ``COPY`` (``storage.copy_interactions``), products with
the storage layer's bulk upsert (``storage.sync_items``), so 400,000 lines take seconds. Presets
(a data set's mapping and filters, e.g. ``online_retail``) are looked up in ``presets``.

Products imported here live only in the plugin's mirror: this is for catalogues that have no
host model (offline evaluation) or to seed one. With a host ``ITEM_MODEL``, the adapter's next
sync of an item overwrites what was imported for it.
"""

from __future__ import annotations

import csv
import fnmatch
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from .. import limits, storage
from ..adapters import ItemSnapshot
from ..models import Interaction, Item

#: Interaction fields a CSV column can be mapped to, with what they hold.
INTERACTION_FIELDS: dict[str, str] = {
    "session": "visitor id: an anonymous session or an external customer id (stored as session_key, <= 64 chars)",
    "user": "primary key of an existing Django user (give user or session on every row; ragrec_evaluate reads "
    "a file's user ids as visitor ids and needs no users)",
    "item": "item key (the host primary key, or a product id of --products); not needed for search events",
    "timestamp": "when: ISO 8601 ('2011-12-09 12:50:00', '...T12:50:00+01:00') or Unix seconds; "
    "--time-format for others; naive times are in --timezone (default: settings.TIME_ZONE)",
    "order": "basket or order id (<= %d chars): the lines of one order share it; orders are told apart per "
    "visitor, so two customers' order 1001 are two baskets" % limits.ORDER_ID_MAX_CHARS,
    "quantity": "whole number, 1 to --max-quantity (default 10000); default 1 when not mapped",
    "event": "view, click, add_to_cart, purchase or search; default --event (purchase) when not mapped",
    "query": "search text of a search event",
}

#: Product fields a CSV column can be mapped to.
PRODUCT_FIELDS: dict[str, str] = {
    "id": "item key (<= 64 chars, unique in the file); interactions refer to it",
    "title": "product title (required, <= 500 chars); first part of the product text",
    "description": "longer text; last part of the product text",
    "category": "category name (<= 200 chars); middle part of the product text, as 'Category: NAME.'",
    "price": "price, a decimal number >= 0 (rounded to cents); not part of the text",
    "image": "image path or URL (kept in the item's metadata; not part of the text)",
    "url": "product page URL (optional; not part of the text)",
    "group": "variant group (<= 64 chars): items sharing it are variants of one product (sizes, colours); "
    "an item's variants are never recommended with it. Not part of the text",
}

#: What the product text is: the text the "text" space encodes for an imported product (``ProductRow.text``).
PRODUCT_TEXT = "title + ' Category: CATEGORY.' + ' DESCRIPTION' (the parts the product has)"

EVENTS = tuple(Interaction.Event.values)
MAX_KEY = limits.ITEM_KEY_MAX_CHARS
MAX_ORDER_ID = limits.ORDER_ID_MAX_CHARS
MAX_CLOCK_SKEW = timedelta(minutes=10)
#: Row errors kept in full (the count goes on past it).
MAX_KEPT_ERRORS = 1000


# ---------------------------------------------------------------- rows and errors


@dataclass(slots=True)
class InteractionRow:
    line: int
    event: str
    item: str
    session: str
    user_id: int | None
    order_id: str
    quantity: int
    query: str
    created_at: datetime


@dataclass(slots=True)
class ProductRow:
    line: int
    key: str
    title: str
    description: str = ""
    category: str = ""
    price: Decimal | None = None
    image: str = ""
    url: str = ""
    group: str = ""
    stored_text: str = ""  # the item mirror's text, for a product read back from the database

    @property
    def text(self) -> str:
        """The product text (``PRODUCT_TEXT``), built the way the default adapter builds it."""
        if self.stored_text:
            return self.stored_text
        parts = [self.title]
        if self.category:
            parts.append("Category: %s." % self.category)
        if self.description:
            parts.append(self.description)
        return " ".join(parts)

    def snapshot(self) -> ItemSnapshot:
        """The mirror row."""
        return ItemSnapshot(
            key=self.key,
            title=self.title,
            category=self.category,
            price=self.price,
            in_stock=True,
            is_eligible=True,
            url=self.url,
            group_key=self.group,
            text=self.text,
            metadata={"image": self.image} if self.image else {},
        )


@dataclass(frozen=True)
class RowError:
    source: str
    line: int
    messages: tuple[str, ...]

    def __str__(self) -> str:
        return "%s line %d: %s" % (self.source, self.line, "; ".join(self.messages))


@dataclass
class ReadResult:
    """Rows of one CSV: the valid ones, the errors, and what a preset filtered out (by reason)."""

    source: str
    rows: list = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    filtered: Counter = field(default_factory=Counter)
    total: int = 0

    def add_error(self, line: int, messages: Iterable[str]) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(RowError(self.source, line, tuple(messages)))


class MappingError(ValueError):
    """A column mapping names an unknown field or a column missing from the file."""


class ImportRefused(Exception):
    """Rows were invalid and ``skip_invalid`` was not given: nothing was imported."""

    def __init__(self, errors: list[RowError], count: int):
        self.errors, self.count = errors, count
        super().__init__("%d invalid row(s); nothing was imported. First: %s" % (count, errors[0] if errors else "-"))


class DatabaseNotMigrated(Exception):
    """The database lacks migrations the plugin's tables need (``manage.py migrate`` has not run)."""


def require_migrated() -> None:
    """``DatabaseNotMigrated`` naming ``migrate`` when the configured database lacks the plugin's tables."""
    from django.db import connection

    pending = sorted(storage.unapplied_migrations(), key=lambda name: not name.startswith("ragrec_django."))
    if pending:
        shown = ", ".join(pending[:3]) + (" and %d more" % (len(pending) - 3) if len(pending) > 3 else "")
        raise DatabaseNotMigrated(
            "The database %r has not been migrated: %d migration(s) to apply (%s). Run `manage.py migrate` first."
            % (connection.settings_dict["NAME"], len(pending), shown)
        )


# ---------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """A data set's column mappings, file names, row filters (a reason, or None to keep), value
    clean-ups by field and time zone of naive times."""

    name: str
    description: str
    interaction_map: dict[str, str]
    product_map: dict[str, str]
    interactions_file: str
    products_file: str
    drop_interaction: Callable[[Mapping[str, str]], str | None] = lambda raw: None
    drop_product: Callable[[Mapping[str, str]], str | None] = lambda raw: None
    clean: Mapping[str, Callable[[str], str]] = field(default_factory=dict)
    timezone: str | None = None


# ---------------------------------------------------------------- mappings


def parse_mapping(pairs: Iterable[str] | None, fields: Mapping[str, str]) -> dict[str, str]:
    """``["user=CustomerID", "item=StockCode"]`` -> ``{"user": "CustomerID", ...}``; refuses unknown fields."""
    mapping: dict[str, str] = {}
    for pair in pairs or ():
        for part in pair.split(",") if pair.count("=") > 1 else [pair]:  # "a=X,b=Y" works too
            name, sep, column = part.partition("=")
            name, column = name.strip(), column.strip()
            if not sep or not name or not column:
                raise MappingError("Mapping %r must look like field=column." % part)
            if name not in fields:
                raise MappingError("Unknown field %r in mapping (fields: %s)." % (name, ", ".join(fields)))
            mapping[name] = column
    return mapping


def _resolve_columns(
    header: list[str] | None, mapping: Mapping[str, str], fields: Mapping[str, str], source: str
) -> dict[str, str]:
    """{field: column} for the mapped fields plus unmapped fields whose name is a column."""
    if not header:
        raise MappingError("%s is empty (no header row)." % source)
    header_set = set(header)
    missing = sorted("%s=%s" % (name, column) for name, column in mapping.items() if column not in header_set)
    if missing:
        raise MappingError(
            "%s has no column(s) for %s. Its columns: %s." % (source, ", ".join(missing), ", ".join(header))
        )
    columns = {name: name for name in fields if name in header_set}
    columns.update(mapping)
    return columns


def item_filter(patterns: Iterable[str]) -> Callable[[str], bool]:
    """A test "is this item key excluded?" for shell-style patterns (``POST``, ``gift_*``; case-sensitive)."""
    patterns = [p for p in patterns if p]
    if not patterns:
        return lambda key: False
    match = re.compile("|".join(fnmatch.translate(p) for p in patterns)).match
    return lambda key: match(key) is not None


#: The reason counted for rows whose item an ``exclude_items`` pattern matches.
EXCLUDED = "item excluded (--exclude-items)"


def describe_text(products: Iterable[ProductRow]) -> str:
    """What the product text of ``products`` is made of, with the first one as an example (progress lines)."""
    products = list(products)
    if not products:
        return "no products"
    if any(p.stored_text for p in products):
        return "the item mirror's text, e.g. %r" % products[0].text[:160]
    parts = ["title"]
    parts += [name for name in ("category", "description") if any(getattr(p, name) for p in products)]
    return "%s, e.g. %r" % (" + ".join(parts), products[0].text[:160])


def _open(source: str | os.PathLike | TextIO, encoding: str) -> tuple[TextIO, str, bool]:
    if isinstance(source, (str, os.PathLike)):
        return open(source, newline="", encoding=encoding), Path(source).name, True
    return source, getattr(source, "name", "<csv>"), False


def _tz(name: str | None):
    if not name:
        from django.conf import settings

        name = settings.TIME_ZONE or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise MappingError("Unknown time zone %r." % name) from exc


# ---------------------------------------------------------------- reading


def read_interactions(
    source: str | os.PathLike | TextIO,
    *,
    mapping: Mapping[str, str] | None = None,
    preset: Preset | None = None,
    default_event: str = "purchase",
    time_format: str | None = None,
    time_zone: str | None = None,
    max_quantity: int = 10_000,
    delimiter: str = ",",
    encoding: str = "utf-8-sig",
    now: datetime | None = None,
    exclude_items: Iterable[str] = (),
) -> ReadResult:
    """Parse and validate interaction rows (see ``INTERACTION_FIELDS``); nothing is written. Rows whose
    item matches an ``exclude_items`` pattern are left out and counted (``EXCLUDED``)."""
    if default_event not in EVENTS:
        raise MappingError("--event must be one of %s, got %r." % (", ".join(EVENTS), default_event))
    mapping = {**(preset.interaction_map if preset else {}), **(mapping or {})}
    zone = _tz(time_zone or (preset.timezone if preset else None))
    latest = (now or datetime.now(dt_timezone.utc)) + MAX_CLOCK_SKEW
    default_time = now or datetime.now(dt_timezone.utc)
    clean = dict(preset.clean) if preset else {}
    handle, name, owned = _open(source, encoding)
    try:
        reader = csv.DictReader(handle, delimiter=delimiter)
        columns = _resolve_columns(reader.fieldnames, mapping, INTERACTION_FIELDS, name)
        if "session" not in columns and "user" not in columns:
            raise MappingError("%s: map a column to user or session (e.g. --map session=CustomerID)." % name)
        if "item" not in columns and "query" not in columns:
            raise MappingError("%s: map a column to item (e.g. --map item=StockCode)." % name)
        result = ReadResult(source=name)
        times: dict[str, datetime | str] = {}
        get = _getter(columns, clean)
        excluded = item_filter(exclude_items)
        for raw in reader:
            result.total += 1
            line = reader.line_num
            if preset is not None:
                reason = preset.drop_interaction(raw)
                if reason:
                    result.filtered[reason] += 1
                    continue
            if excluded(get(raw, "item") or ""):
                result.filtered[EXCLUDED] += 1
                continue
            row, problems = _interaction(
                raw, get, line, default_event, time_format, zone, latest, default_time, max_quantity, times
            )
            if problems:
                result.add_error(line, problems)
            else:
                result.rows.append(row)
        return result
    finally:
        if owned:
            handle.close()


def _getter(columns: Mapping[str, str], clean: Mapping[str, Callable[[str], str]]):
    def get(raw: Mapping[str, str], name: str) -> str | None:
        column = columns.get(name)
        if column is None:
            return None
        value = (raw.get(column) or "").strip()
        return clean[name](value) if name in clean and value else value

    return get


def _interaction(raw, get, line, default_event, time_format, zone, latest, default_time, max_quantity, times):
    problems = []
    event = (get(raw, "event") or default_event).lower()
    if event not in EVENTS:
        problems.append("event must be one of %s (got %r)" % (", ".join(EVENTS), event))
    item = get(raw, "item") or ""
    query = get(raw, "query") or ""
    if event == "search":
        if not query:
            problems.append("a search event needs a query")
    elif not item:
        problems.append("item is empty")
    if len(item) > MAX_KEY:
        problems.append("item key longer than %d characters" % MAX_KEY)
    session = get(raw, "session") or ""
    if len(session) > MAX_KEY:
        problems.append("session longer than %d characters" % MAX_KEY)
    user_value = get(raw, "user") or ""
    user_id = None
    if user_value:
        if re.fullmatch(r"\d+", user_value) and int(user_value) < 2**63:
            user_id = int(user_value)
        else:
            problems.append("user must be a user id (a whole number), got %r" % user_value)
    if not session and not user_value:
        problems.append("no user or session")
    order_id = get(raw, "order") or ""
    if len(order_id) > MAX_ORDER_ID:
        problems.append("order id longer than %d characters" % MAX_ORDER_ID)
    quantity_value = get(raw, "quantity")
    quantity = 1
    if quantity_value is not None:
        if re.fullmatch(r"[+-]?\d+", quantity_value) and 1 <= int(quantity_value) <= max_quantity:
            quantity = int(quantity_value)
        else:
            problems.append("quantity must be a whole number from 1 to %d (got %r)" % (max_quantity, quantity_value))
    stamp = get(raw, "timestamp")
    created_at = default_time
    if stamp is not None:
        parsed = times.get(stamp)
        if parsed is None:
            parsed = times[stamp] = _parse_time(stamp, time_format, zone)
        if isinstance(parsed, str):
            problems.append(parsed)
        elif parsed > latest:
            problems.append("timestamp %r is in the future" % stamp)
        else:
            created_at = parsed
    if problems:
        return None, problems
    return InteractionRow(line, event, item, session, user_id, order_id, quantity, query[:500], created_at), ()


def _parse_time(value: str, time_format: str | None, zone) -> datetime | str:
    """An aware datetime, or the error message."""
    if not value:
        return "timestamp is empty"
    try:
        if time_format:
            parsed = datetime.strptime(value, time_format)
        elif re.fullmatch(r"\d+(\.\d+)?", value):
            return datetime.fromtimestamp(float(value), tz=dt_timezone.utc)
        else:
            parsed = datetime.fromisoformat(value)
    except (ValueError, OverflowError, OSError):
        expected = "format %r" % time_format if time_format else "ISO 8601 or Unix seconds"
        return "timestamp %r is not a date and time (%s)" % (value, expected)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def read_products(
    source: str | os.PathLike | TextIO,
    *,
    mapping: Mapping[str, str] | None = None,
    preset: Preset | None = None,
    delimiter: str = ",",
    encoding: str = "utf-8-sig",
    exclude_items: Iterable[str] = (),
) -> ReadResult:
    """Parse and validate product rows (see ``PRODUCT_FIELDS``); nothing is written. Products whose id
    matches an ``exclude_items`` pattern are left out and counted (``EXCLUDED``)."""
    mapping = {**(preset.product_map if preset else {}), **(mapping or {})}
    handle, name, owned = _open(source, encoding)
    try:
        reader = csv.DictReader(handle, delimiter=delimiter)
        columns = _resolve_columns(reader.fieldnames, mapping, PRODUCT_FIELDS, name)
        for required in ("id", "title"):
            if required not in columns:
                raise MappingError(
                    "%s: map a column to %s (e.g. --product-map %s=COLUMN)." % (name, required, required)
                )
        get = _getter(columns, {})
        result = ReadResult(source=name)
        first_line: dict[str, int] = {}
        excluded = item_filter(exclude_items)
        for raw in reader:
            result.total += 1
            line = reader.line_num
            if preset is not None:
                reason = preset.drop_product(raw)
                if reason:
                    result.filtered[reason] += 1
                    continue
            key = get(raw, "id") or ""
            if excluded(key):
                result.filtered[EXCLUDED] += 1
                continue
            problems = []
            if not key:
                problems.append("id is empty")
            elif len(key) > MAX_KEY:
                problems.append("id longer than %d characters" % MAX_KEY)
            elif key in first_line:
                problems.append("duplicate id %r (first on line %d)" % (key, first_line[key]))
            title = get(raw, "title") or ""
            if not title:
                problems.append("title is empty")
            elif len(title) > 500:
                problems.append("title longer than 500 characters")
            category = get(raw, "category") or ""
            if len(category) > 200:
                problems.append("category longer than 200 characters")
            price = None
            price_value = get(raw, "price")
            if price_value:
                try:
                    price = Decimal(price_value)
                    if not price.is_finite() or price < 0 or price >= Decimal("1e10"):
                        raise InvalidOperation
                    price = price.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
                except InvalidOperation:
                    problems.append("price must be a number from 0 to 9,999,999,999.99 (got %r)" % price_value)
            url = get(raw, "url") or ""
            if len(url) > 500:
                problems.append("url longer than 500 characters")
            group = get(raw, "group") or ""
            if len(group) > MAX_KEY:
                problems.append("group longer than %d characters" % MAX_KEY)
            if problems:
                result.add_error(line, problems)
                continue
            first_line[key] = line
            result.rows.append(
                ProductRow(
                    line,
                    key,
                    title,
                    get(raw, "description") or "",
                    category,
                    price,
                    get(raw, "image") or "",
                    url,
                    group,
                )
            )
        return result
    finally:
        if owned:
            handle.close()


# ---------------------------------------------------------------- writing


@dataclass
class WriteResult:
    products: int = 0
    interactions: int = 0
    skipped: int = 0
    errors: list[RowError] = field(default_factory=list)
    dry_run: bool = False


def write_rows(
    products: list[ProductRow],
    interactions: list[InteractionRow],
    *,
    interactions_source: str = "interactions",
    earlier_errors: Iterable[RowError] = (),
    earlier_error_count: int = 0,
    skip_invalid: bool = False,
    dry_run: bool = False,
    sync_host: bool = True,
    batch_size: int = 2000,
) -> WriteResult:
    """Store products and interactions in one transaction, or nothing.

    Interactions must refer to an item of ``products``, of the item mirror, or (``sync_host``) of
    the host's item model; user ids must exist. ``earlier_errors`` are the read errors: with any
    error and no ``skip_invalid``, ``ImportRefused`` is raised and nothing is written. With
    ``skip_invalid`` the bad rows are left out and counted in ``skipped``. ``dry_run`` checks
    everything, then rolls back.
    """
    result = WriteResult(dry_run=dry_run)
    errors = list(earlier_errors)
    count = earlier_error_count
    with transaction.atomic():
        keys = _write_products(products, batch_size) if products else {}
        result.products = len(keys)
        referenced = {row.item for row in interactions if row.item}
        known = _known_items(referenced - set(keys), sync_host)
        known.update(keys)
        users = _existing_users({row.user_id for row in interactions if row.user_id is not None})
        good = []
        for row in interactions:
            problems = []
            if row.item and row.item not in known:
                problems.append("unknown item %r (not in the products file nor in the item mirror)" % row.item)
            if row.user_id is not None and row.user_id not in users:
                problems.append("unknown user %r" % row.user_id)
            if problems:
                count += 1
                if len(errors) < MAX_KEPT_ERRORS:
                    errors.append(RowError(interactions_source, row.line, tuple(problems)))
            else:
                good.append(row)
        if count and not skip_invalid:
            errors.sort(key=lambda e: (e.source, e.line))
            raise ImportRefused(errors, count)
        result.skipped, result.errors = count, errors
        result.interactions = _copy_interactions(good, known)
        if dry_run:
            transaction.set_rollback(True)
    return result


def _write_products(products: list[ProductRow], batch_size: int) -> dict[str, int]:
    keys: dict[str, int] = {}
    for start in range(0, len(products), batch_size):
        keys.update(storage.sync_items(row.snapshot() for row in products[start : start + batch_size]))
    return keys


def _known_items(keys: set[str], sync_host: bool) -> dict[str, int]:
    found: dict[str, int] = {}
    ordered = sorted(keys)
    for start in range(0, len(ordered), 5000):
        found.update(Item.objects.filter(key__in=ordered[start : start + 5000]).values_list("key", "id"))
    missing = keys - set(found)
    if missing and sync_host:
        from ..services.encoding import sync_host_items

        try:
            sync_host_items(sorted(missing))
        except ImproperlyConfigured:
            return found  # no host item model: the mirror is all there is
        found.update(Item.objects.filter(key__in=sorted(missing)).values_list("key", "id"))
    return found


def _existing_users(ids: set[int]) -> set[int]:
    if not ids:
        return set()
    return set(get_user_model()._default_manager.filter(pk__in=ids).values_list("pk", flat=True))


def _copy_interactions(rows: list[InteractionRow], item_ids: Mapping[str, int]) -> int:
    """Insert the rows (``storage.copy_interactions``); return how many."""
    if not rows:
        return 0
    storage.copy_interactions(
        (
            r.event,
            item_ids[r.item] if r.item else None,
            r.user_id,
            r.session,
            r.order_id,
            r.quantity,
            r.query,
            "",
            r.created_at,
        )
        for r in rows
    )
    return len(rows)


def import_csv(
    *,
    interactions: str | os.PathLike | TextIO | None = None,
    products: str | os.PathLike | TextIO | None = None,
    mapping: Mapping[str, str] | None = None,
    product_mapping: Mapping[str, str] | None = None,
    preset: Preset | None = None,
    skip_invalid: bool = False,
    dry_run: bool = False,
    **read_options,
) -> tuple[WriteResult, ReadResult | None, ReadResult | None]:
    """Read, validate and store; returns (write result, product read, interaction read)."""
    if interactions is None and products is None:
        raise MappingError("Give an interactions file, a products file, or both.")
    csv_options = {k: read_options.pop(k) for k in ("delimiter", "encoding", "exclude_items") if k in read_options}
    product_read = (
        read_products(products, mapping=product_mapping, preset=preset, **csv_options) if products is not None else None
    )
    interaction_read = (
        read_interactions(interactions, mapping=mapping, preset=preset, **csv_options, **read_options)
        if interactions is not None
        else None
    )
    reads = [r for r in (product_read, interaction_read) if r is not None]
    errors = [e for r in reads for e in r.errors]
    count = sum(r.error_count for r in reads)
    # Even with read errors, write_rows runs (and rolls back) so unknown items and users are reported too.
    written = write_rows(
        product_read.rows if product_read else [],
        interaction_read.rows if interaction_read else [],
        interactions_source=interaction_read.source if interaction_read else "interactions",
        earlier_errors=errors,
        earlier_error_count=count,
        skip_invalid=skip_invalid,
        dry_run=dry_run,
    )
    return written, product_read, interaction_read


__all__ = [
    "INTERACTION_FIELDS",
    "PRODUCT_FIELDS",
    "EXCLUDED",
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
    "import_csv",
    "item_filter",
    "parse_mapping",
    "read_interactions",
    "read_products",
    "require_migrated",
    "write_rows",
]
