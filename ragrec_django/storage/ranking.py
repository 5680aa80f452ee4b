"""The learned ranker's reads and writes: point-in-time signals from the event table, the event log a
training job reads, and the stored model versions (``RankerModel``).

Every live signal read takes ``at`` and reads only events strictly before it, as the in-memory
``ranking.learned.EventLog`` does for training, so a model sees the same features when serving.
The signals shared by every visitor (item popularity per window, each item's co-purchase partners,
the popular list) are also materialised as of one instant (``refresh_signals``: ``RankerItemSignals``,
``RankerSignalSnapshot``) and read back by primary key (``materialised_*``), with the same counts.
A basket is one (visitor, order id) pair; a visitor is ``u<user id>`` or ``s<session key>``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone

import numpy as np
from django.db import connection, transaction
from django.utils import timezone as django_timezone

from ..models import Impression, Interaction, Item, RankerItemSignals, RankerModel, RankerSignalSnapshot
from .interactions import table_name, visitor_condition

Event = Interaction.Event
_VISITOR = "COALESCE('u' || {a}.user_id::text, 's' || {a}.session_key)"
_BASKET = "COALESCE(NULLIF({a}.order_id, ''), 'event:' || {a}.id::text)"


def _when(at: float) -> datetime:
    return datetime.fromtimestamp(at, tz=timezone.utc)


def visitor_lines(
    *, user_id: int | None, session_key: str, at: float, limit: int = 5000
) -> tuple[list[tuple], dict[int, str]]:
    """A visitor's latest item events before ``at`` as ``(item, time, basket, quantity, category, price)``
    (``ranking.learned.VisitorHistory.from_lines``): baskets numbered per order, -1 for events that are
    not purchases; searches left out. With them, {item: title} of those items (a result's "bought with X"
    names one of them), read by the same statement. Nothing for nobody."""
    visitor = visitor_condition(user_id, session_key)
    if visitor is None:
        return [], {}
    condition, params = visitor
    sql = (
        "SELECT e.item_id, extract(epoch FROM e.created_at)::float8, CASE WHEN e.event = %s THEN {basket} END,"
        " e.quantity, i.category, i.price::float8, i.title"
        f" FROM {table_name(Interaction)} e JOIN {table_name(Item)} i ON i.id = e.item_id"
        f" WHERE {condition} AND e.item_id IS NOT NULL AND e.event <> %s AND e.created_at < %s"
        " ORDER BY e.created_at DESC, e.id DESC LIMIT %s"
    ).format(basket=_BASKET.format(a="e"))
    with connection.cursor() as cursor:
        cursor.execute(sql, [Event.PURCHASE, *params, Event.SEARCH, _when(at), limit])
        rows = cursor.fetchall()
    numbers: dict[str, int] = {}
    lines = [
        (
            item,
            time,
            -1 if basket is None else numbers.setdefault(basket, len(numbers)),
            float(quantity),
            category or "",
            price,
        )
        for item, time, basket, quantity, category, price, _ in rows
    ]
    return lines, {row[0]: row[6] for row in rows}


# ---------------------------------------------------------------- shared signals, live from the event table
#
# The provenance rules of trending and co-purchases (``storage.interactions``) hold for every signal read over
# everyone's events: only ``verified`` purchases count, and one origin (the client address events came from)
# counts at most ``max_per_source`` orders per item in each count (None: all; purchases of no known origin
# are each their own source). A visitor's own events (``visitor_lines``) are theirs, verified or not.

_NO_CAP = 2**31 - 1


def _capped(count: str, max_per_source: int | None) -> str:
    """``SUM`` of ``count`` over the rows of one item, each origin's rows at most ``max_per_source``."""
    cap = _NO_CAP if max_per_source is None else int(max_per_source)
    return "SUM(CASE WHEN uncapped THEN %s ELSE LEAST(%s, %d) END)" % (count, count, cap)


def _held_sql(*, items: bool) -> str:
    """Verified purchases held per (item, basket) in ``[%(since)s, %(at)s)``: first time and origin (NULL: none)."""
    return (
        "SELECT e.item_id, MIN(e.created_at) AS at, MIN(NULLIF(e.origin, '')) AS origin"
        f" FROM {table_name(Interaction)} e WHERE e.event = %(purchase)s AND e.verified AND e.item_id IS NOT NULL"
        + (" AND e.item_id = ANY(%(items)s)" if items else "")
        + " AND e.created_at >= %(since)s AND e.created_at < %(at)s"
        f" GROUP BY e.item_id, {_VISITOR.format(a='e')}, {_BASKET.format(a='e')}"
    )


def _popularity_sql(windows: Sequence[float], max_per_source: int | None, *, items: bool) -> tuple[str, dict]:
    """``(item, first order time, orders per window...)`` of the items with verified orders in the longest window."""
    counts = ", ".join("COUNT(*) FILTER (WHERE at >= %%(w%d)s) AS n%d" % (i, i) for i in range(len(windows)))
    totals = ", ".join(_capped("n%d" % i, max_per_source) for i in range(len(windows)))
    sql = (
        f"WITH held AS ({_held_sql(items=items)}), per_source AS ("
        f" SELECT item_id, origin IS NULL AS uncapped, MIN(at) AS first, {counts} FROM held GROUP BY item_id, origin"
        f") SELECT item_id, MIN(first), {totals} FROM per_source GROUP BY item_id"
    )
    return sql, {"w%d" % i: days for i, days in enumerate(windows)}


def _window_params(at: float, windows: Sequence[float], names: dict) -> dict:
    return {
        "purchase": Event.PURCHASE,
        "since": _when(at - max(windows) * 86400),
        "at": _when(at),
        **{name: _when(at - days * 86400) for name, days in names.items()},
    }


def _co_purchase_sql(max_per_source: int | None, *, seeds: bool) -> str:
    """Per (seed, item): orders holding the item among the seed's latest ``%(orders)s`` verified orders before
    ``%(at)s`` (origins capped), as ``per_seed``; the orders read per seed as ``picked``. ``seeds``: only the
    items of ``%(seeds)s`` (a lateral index read per seed), else every item (the materialisation)."""
    events = table_name(Interaction)
    if seeds:
        picked = (
            "picked AS ("
            " SELECT s.item_id AS seed, r.visitor, r.order_id FROM (SELECT DISTINCT unnest(%(seeds)s::bigint[]) AS item_id) s"
            f" CROSS JOIN LATERAL (SELECT {_VISITOR.format(a='a')} AS visitor, a.order_id FROM {events} a"
            "  WHERE a.item_id = s.item_id AND a.event = %(purchase)s AND a.verified AND a.order_id <> ''"
            "  AND a.created_at < %(at)s GROUP BY 1, 2 ORDER BY MIN(a.created_at) DESC, MIN(a.id) DESC LIMIT %(orders)s) r"
            "), lines AS ("
            f" SELECT {_VISITOR.format(a='b')} AS visitor, b.order_id, b.item_id, MIN(NULLIF(b.origin, '')) AS origin"
            f" FROM {events} b WHERE b.order_id IN (SELECT order_id FROM picked) AND b.order_id <> ''"
            " AND b.event = %(purchase)s AND b.verified AND b.item_id IS NOT NULL AND b.created_at < %(at)s"
            " GROUP BY 1, 2, 3)"
        )
    else:
        picked = (
            "lines AS ("
            f" SELECT {_VISITOR.format(a='b')} AS visitor, b.order_id, b.item_id, MIN(NULLIF(b.origin, '')) AS origin,"
            f" MIN(b.created_at) AS at, MIN(b.id) AS first_id FROM {events} b"
            " WHERE b.order_id <> '' AND b.event = %(purchase)s AND b.verified AND b.item_id IS NOT NULL"
            " AND b.created_at < %(at)s GROUP BY 1, 2, 3"
            "), picked AS ("
            " SELECT item_id AS seed, visitor, order_id FROM ("
            "  SELECT item_id, visitor, order_id, row_number() OVER ("
            "   PARTITION BY item_id ORDER BY at DESC, first_id DESC) AS nth FROM lines) r WHERE nth <= %(orders)s)"
        )
    return (
        f"{picked}, per_source AS ("
        " SELECT p.seed, l.item_id, l.origin IS NULL AS uncapped, COUNT(*) AS n FROM picked p"
        " JOIN lines l ON l.visitor = p.visitor AND l.order_id = p.order_id GROUP BY p.seed, l.item_id, l.origin"
        f"), per_seed AS (SELECT seed, item_id, {_capped('n', max_per_source)} AS n FROM per_source GROUP BY seed, item_id)"
    )


def co_purchases(
    seed_sets: Sequence[Sequence[int]], *, at: float, orders_per_item: int, max_per_source: int | None = None
) -> list[tuple[dict[int, float], float, dict[int, int]]]:
    """Co-purchases of each set of seeds before ``at``, all sets in one query. Per set: {item: orders holding
    it among each seed's latest ``orders_per_item`` orders, summed over the set's seeds} (seeds included),
    the number of orders read (that count: origins capped, as the seed's own count), and each item's strongest other seed (the one it shares most orders with,
    ties to the lower id; its reason). Orders at the same time count in the order they were written, as in
    ``EventLog``. Provenance as above."""
    pairs = [(int(item), number) for number, seeds in enumerate(seed_sets) for item in seeds]
    results: list[tuple[dict[int, float], float, dict[int, int]]] = [({}, 0.0, {}) for _ in seed_sets]
    if not pairs:
        return results
    sql = (
        "WITH sets AS (SELECT * FROM unnest(%(set_items)s::bigint[], %(set_numbers)s::int[]) AS s(item_id, set_no)), "
        + _co_purchase_sql(max_per_source, seeds=True)
        + " SELECT s.set_no, x.item_id, SUM(x.n),"
        " (array_agg(x.seed ORDER BY x.n DESC, x.seed) FILTER (WHERE x.seed <> x.item_id))[1]"
        " FROM sets s JOIN per_seed x ON x.seed = s.item_id GROUP BY s.set_no, x.item_id "
        # one more row per set: how many orders were read, each seed's count of itself (item NULL)
        "UNION ALL SELECT s.set_no, NULL, SUM(x.n), NULL FROM sets s"
        " JOIN per_seed x ON x.seed = s.item_id AND x.item_id = x.seed GROUP BY s.set_no"
    )
    params = {
        "set_items": [item for item, _ in pairs],
        "set_numbers": [number for _, number in pairs],
        "seeds": sorted({item for item, _ in pairs}),
        "purchase": Event.PURCHASE,
        "at": _when(at),
        "orders": orders_per_item,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    for number, item, count, seed in rows:
        scores, orders, strongest = results[number]
        if item is None:
            results[number] = (scores, float(count), strongest)
            continue
        scores[item] = float(count)
        if seed is not None:
            strongest[item] = seed
    return results


def popular(*, at: float, days: float, limit: int, max_per_source: int | None = None) -> list[tuple[int, float]]:
    """The items in most orders over ``days`` before ``at``, best first, ties by lower id (provenance as above)."""
    sql, names = _popularity_sql([days], max_per_source, items=False)
    sql = "SELECT * FROM (%s) counted ORDER BY 3 DESC, 1 LIMIT %%(limit)s" % sql
    with connection.cursor() as cursor:
        cursor.execute(sql, {**_window_params(at, [days], names), "limit": limit})
        return [(item, float(orders)) for item, _, orders in cursor.fetchall()]


def category_popular(
    categories: Sequence[str] | None, *, at: float, days: float, limit: int, max_per_source: int | None = None
) -> dict[str, list[tuple[int, float]]]:
    """Per category of ``categories`` (None: every category with an order): its items in most orders over ``days``
    before ``at``, best first, ties by lower id, at most ``limit`` (provenance as above); one query, which counts
    every item's orders whatever the categories asked."""
    if categories is not None and not categories:
        return {}
    sql, names = _popularity_sql([days], max_per_source, items=False)
    sql = (
        "SELECT category, item_id, orders FROM ("
        " SELECT i.category, c.item_id, c.orders, row_number() OVER ("
        "  PARTITION BY i.category ORDER BY c.orders DESC, c.item_id) AS nth"
        f" FROM ({sql}) c(item_id, first, orders) JOIN {table_name(Item)} i ON i.id = c.item_id"
        " WHERE (%(all)s OR i.category = ANY(%(categories)s)) AND c.orders > 0"
        ") ranked WHERE nth <= %(limit)s ORDER BY category, nth"
    )
    found: dict[str, list[tuple[int, float]]] = {category: [] for category in categories or ()}
    params = {"all": categories is None, "categories": list(categories or ()), "limit": limit}
    with connection.cursor() as cursor:
        cursor.execute(sql, {**_window_params(at, [days], names), **params})
        for category, item, orders in cursor.fetchall():
            found.setdefault(category, []).append((item, float(orders)))
    return found


def new_items(
    *, at: float, days: float, windows: Sequence[float], limit: int, max_per_source: int | None = None
) -> list[tuple[int, float]]:
    """The items whose first order within the longest of ``windows`` (days) is less than ``days`` before ``at``,
    by their orders over ``days`` (one of ``windows``), best first, ties by lower id, at most ``limit`` (as
    ``item_signals`` counts them: the same first order and counts)."""
    windows = list(windows)
    counted, names = _popularity_sql(windows, max_per_source, items=False)
    width = ", ".join("n%d" % i for i in range(len(windows)))
    n = "n%d" % windows.index(days)
    sql = (
        f"SELECT item_id, {n} FROM ({counted}) c(item_id, first, {width})"
        f" WHERE first >= %(new_since)s AND {n} > 0 ORDER BY {n} DESC, item_id LIMIT %(limit)s"
    )
    params = {**_window_params(at, windows, names), "new_since": _when(at - days * 86400), "limit": limit}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(item, float(orders)) for item, orders in cursor.fetchall()]


def item_signals(items: np.ndarray, *, at: float, windows: Sequence[int], max_per_source: int | None = None):
    """For ``items`` before ``at``: ({window days: orders holding it}, the time of its first order within the
    longest window (NaN: none), price (NaN: none), category), aligned with ``items``; one query that reads
    only the verified purchases of the longest window, each (item, order) once, origins capped."""
    ids = [int(i) for i in items]
    counted, names = _popularity_sql(windows, max_per_source, items=True)
    with connection.cursor() as cursor:
        cursor.execute(counted, {**_window_params(at, windows, names), "items": ids})
        counts = {row[0]: row[1:] for row in cursor.fetchall()}
    rows = {item: (price, category) for item, price, category in _item_attributes(ids)}
    n = len(ids)
    popularity = {days: np.zeros(n) for days in windows}
    first_seen, price = np.full(n, np.nan), np.full(n, np.nan)
    category = np.full(n, "", dtype=object)
    for position, item in enumerate(ids):
        if item in rows:
            price[position] = np.nan if rows[item][0] is None else float(rows[item][0])
            category[position] = rows[item][1] or ""
        if item in counts:
            first_seen[position] = counts[item][0].timestamp()
            for offset, days in enumerate(windows):
                popularity[days][position] = float(counts[item][1 + offset])
    return popularity, first_seen, price, category


def item_stock(items: np.ndarray) -> np.ndarray:
    """The items' ``in_stock`` now, aligned with ``items``: 1.0 / 0.0, NaN for an id not in the catalogue; one
    read by primary key."""
    ids = [int(i) for i in items]
    states = dict(Item.objects.filter(id__in=ids).values_list("id", "in_stock")) if ids else {}
    return np.asarray([np.nan if states.get(i) is None else float(states[i]) for i in ids], dtype=np.float64)


def item_stock_states() -> dict[int, bool]:
    """{item id: in stock} of every item now (an in-memory log's ``stock``, e.g. to check serving against it)."""
    return dict(Item.objects.values_list("id", "in_stock"))


def _item_attributes(ids: list[int]) -> list[tuple]:
    return list(Item.objects.filter(id__in=ids).values_list("id", "price", "category"))


# ---------------------------------------------------------------- shared signals, materialised


def refresh_signals(
    *,
    at: float,
    windows: Sequence[float],
    orders_per_item: int,
    max_per_source: int | None,
    popular_days: float,
    popular_limit: int,
    partners_per_item: int,
) -> RankerSignalSnapshot:
    """Recompute every item's shared signals as of ``at`` (the same counts as the live reads above) and the
    popular list, replacing the previous snapshot in one transaction: readers see the old one until it commits.
    An item keeps its ``partners_per_item`` strongest partners (ties: lower id)."""
    started = time.perf_counter()
    signals = table_name(RankerItemSignals)
    popularity, names = _popularity_sql(windows, max_per_source, items=False)
    width = len(windows)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {signals}")
        cursor.execute(
            f"INSERT INTO {signals} (item_id, popularity, first_seen, orders_read, partners, partner_counts)"
            f" SELECT p.item_id, ARRAY[{', '.join('p.n%d' % i for i in range(width))}]::int[], p.first, 0, ''::bytea, ''::bytea"
            f" FROM ({popularity}) p(item_id, first, {', '.join('n%d' % i for i in range(width))})",
            _window_params(at, windows, names),
        )
        cursor.execute(
            "WITH "
            + _co_purchase_sql(max_per_source, seeds=False)
            + ", kept AS (SELECT * FROM (SELECT seed, item_id, n, row_number() OVER ("
            "  PARTITION BY seed ORDER BY n DESC, item_id) AS nth FROM per_seed) r WHERE nth <= %(partners)s"
            "), partners AS (SELECT seed, string_agg(int8send(item_id), ''::bytea ORDER BY item_id) AS ids,"
            "  string_agg(int4send(n::int), ''::bytea ORDER BY item_id) AS counts FROM kept GROUP BY seed"
            "), read AS (SELECT seed, n AS orders FROM per_seed WHERE item_id = seed) "
            f"INSERT INTO {signals} AS s (item_id, popularity, first_seen, orders_read, partners, partner_counts)"
            " SELECT p.seed, array_fill(0, ARRAY[%(width)s]), NULL, r.orders, p.ids, p.counts"
            " FROM partners p JOIN read r ON r.seed = p.seed"
            " ON CONFLICT (item_id) DO UPDATE SET orders_read = EXCLUDED.orders_read, partners = EXCLUDED.partners,"
            " partner_counts = EXCLUDED.partner_counts",
            {
                "purchase": Event.PURCHASE,
                "at": _when(at),
                "orders": orders_per_item,
                "partners": partners_per_item,
                "width": width,
            },
        )
        cursor.execute(f"SELECT COUNT(*) FROM {signals}")
        (count,) = cursor.fetchone()
        listed = popular(at=at, days=popular_days, limit=popular_limit, max_per_source=max_per_source)
        RankerSignalSnapshot.objects.all().delete()
        return RankerSignalSnapshot.objects.create(
            as_of=_when(at),
            seconds=time.perf_counter() - started,
            windows=list(windows),
            orders_per_item=orders_per_item,
            max_per_source=max_per_source,
            popular_days=popular_days,
            popular=[[item, orders] for item, orders in listed],
            items=count,
        )


def signal_snapshot() -> RankerSignalSnapshot | None:
    """The current snapshot of the materialised signals, or None."""
    return RankerSignalSnapshot.objects.order_by("-as_of").first()


def materialised_partners(items: Sequence[int]) -> dict[int, tuple[float, np.ndarray, np.ndarray]]:
    """{item: (orders read, partner ids ascending, their counts)} of the materialised signals, by primary key."""
    sql = f"SELECT item_id, orders_read, partners, partner_counts FROM {table_name(RankerItemSignals)} WHERE item_id = ANY(%s)"
    with connection.cursor() as cursor:
        cursor.execute(sql, [[int(i) for i in items]])
        rows = cursor.fetchall()
    return {
        item: (
            float(read),
            np.frombuffer(bytes(ids), dtype=">i8").astype(np.int64),
            np.frombuffer(bytes(counts), dtype=">i4").astype(np.float64),
        )
        for item, read, ids, counts in rows
    }


def materialised_item_signals(items: np.ndarray, *, width: int):
    """``item_signals``' answer from the materialised rows, aligned with ``items`` (distinct ids): popularity as
    an items x ``width`` array (the snapshot's windows; 0 without a row), the first order within the longest
    window (NaN: none), and the items' live price (NaN: none) and category ("": none), by primary key."""
    ids = np.asarray(items, dtype=np.int64)
    # floats and one column per window: psycopg reads those faster than numerics and arrays
    columns = ["i.id", "i.price::float8", "i.category", "extract(epoch FROM s.first_seen)::float8"]
    columns += ["COALESCE(s.popularity[%d], 0)" % (offset + 1) for offset in range(width)]
    sql = (
        f"SELECT {', '.join(columns)} FROM {table_name(Item)} i"
        f" LEFT JOIN {table_name(RankerItemSignals)} s ON s.item_id = i.id WHERE i.id = ANY(%s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [ids.tolist()])
        rows = cursor.fetchall()
    n = len(ids)
    popularity, first_seen = np.zeros((n, width)), np.full(n, np.nan)
    price, category = np.full(n, np.nan), np.full(n, "", dtype=object)
    if rows:
        read = list(zip(*rows, strict=True))
        order = np.argsort(ids)
        at = order[np.searchsorted(ids, np.asarray(read[0], dtype=np.int64), sorter=order)]
        price[at] = np.asarray(read[1], dtype=np.float64)  # None -> NaN
        category[at] = [c or "" for c in read[2]]
        first_seen[at] = np.asarray(read[3], dtype=np.float64)
        if width:
            popularity[at] = np.asarray(read[4:], dtype=np.float64).T
    return popularity, first_seen, price, category


def event_lines(
    *, until: datetime | None = None, chunk: int = 20000
) -> Iterator[tuple[str, int, str, float, float, bool]]:
    """Every verified item event (searches left out) before ``until`` as ``(visitor, item, order id, time,
    quantity, is purchase)``, oldest first, streamed: the training job's ``EventLog``. Events of nobody are
    skipped, and so are unverified ones (an API client's session key the server never issued): the model
    learns from the events that count toward the shared signals."""
    sql = (
        f"SELECT {_VISITOR.format(a='e')}, e.item_id, e.order_id, extract(epoch FROM e.created_at), e.quantity, e.event = %s"
        f" FROM {table_name(Interaction)} e WHERE e.item_id IS NOT NULL AND e.event <> %s"
        " AND e.verified AND (e.user_id IS NOT NULL OR e.session_key <> '') AND e.created_at < %s"
        " ORDER BY e.created_at, e.id"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [Event.PURCHASE, Event.SEARCH, until or django_timezone.now()])
        while rows := cursor.fetchmany(chunk):
            for visitor, item, order, time, quantity, purchase in rows:
                yield visitor, item, order, float(time), float(quantity), purchase


_IMPRESSION_LABELS_SQL = """
WITH imp AS (  -- the lists of this recommender shown to a known visitor in [since, until)
    SELECT i.id, COALESCE('u' || i.user_id::text, 's' || i.session_key) AS visitor, i.created_at, i.item_keys
    FROM {impression} i
    WHERE i.recommender = %(recommender)s AND i.created_at >= %(since)s AND i.created_at < %(until)s
        AND (i.user_id IS NOT NULL OR i.session_key <> '')
),
shown AS (  -- each shown item once, at its first position (0-based)
    SELECT imp.id AS impression_id, it.id AS item_id, MIN(k.nth) - 1 AS position
    FROM imp CROSS JOIN LATERAL unnest(imp.item_keys) WITH ORDINALITY AS k(key, nth)
    JOIN {item} it ON it.key = k.key
    GROUP BY imp.id, it.id
),
clk AS (  -- each clicked (impression, item) once, at its first click: clicks on any recommender's list count,
          -- so a conversion is credited as experiment_stats credits it (to the latest qualifying click)
    SELECT DISTINCT ON (c.impression_id, c.item_id) c.impression_id, c.item_id, c.user_id, c.session_key, c.created_at
    FROM {interaction} c
    WHERE c.event = %(click)s AND c.item_id IS NOT NULL AND c.impression_id IS NOT NULL AND c.verified
        AND c.created_at >= %(since)s AND c.created_at < %(until)s
    ORDER BY c.impression_id, c.item_id, c.created_at
),
att AS (  -- each conversion credited to the latest click of the same visitor and item at most the window before it
    SELECT DISTINCT ON (o.id) o.id, clk.impression_id, o.item_id, o.event
    FROM {interaction} o JOIN clk ON o.item_id = clk.item_id
        AND o.created_at >= clk.created_at AND o.created_at <= clk.created_at + %(window)s
        AND ((clk.user_id IS NOT NULL AND o.user_id = clk.user_id)
             OR (clk.user_id IS NULL AND clk.session_key <> '' AND o.session_key = clk.session_key))
    WHERE o.event = ANY(%(conversions)s) AND o.verified AND o.created_at < %(until)s
    ORDER BY o.id, clk.created_at DESC, clk.impression_id
)
SELECT imp.id, imp.visitor, extract(epoch FROM imp.created_at)::float8, s.position, s.item_id,
    EXISTS (SELECT 1 FROM clk WHERE clk.impression_id = imp.id AND clk.item_id = s.item_id),
    EXISTS (SELECT 1 FROM att WHERE att.impression_id = imp.id AND att.item_id = s.item_id
            AND att.event = %(add_to_cart)s),
    EXISTS (SELECT 1 FROM att WHERE att.impression_id = imp.id AND att.item_id = s.item_id
            AND att.event = %(purchase)s)
FROM imp JOIN shown s ON s.impression_id = imp.id
ORDER BY imp.created_at, imp.id, s.position
"""


def impression_labels(
    recommender: str, *, since: datetime, until: datetime, window, conversion_events: Sequence[str]
) -> list[tuple]:
    """Every item of the ``recommender`` lists shown to a known visitor in ``[since, until)``, as ``(impression
    id, visitor, time, 0-based position, item id, clicked, added to cart, purchased)``, by impression time then
    position. A click is on that item in that list; an add to cart or a purchase (``conversion_events``) is
    credited to the latest click of the same visitor on the same item at most ``window`` before it, as
    ``interactions.experiment_stats`` credits conversions. Only verified events before ``until`` count (the
    labels of a training window never read past it); shown keys no longer in the catalogue are left out. The
    visitor is ``u<user id>`` or ``s<session key>``, as in ``event_lines``."""
    sql = _IMPRESSION_LABELS_SQL.format(
        impression=table_name(Impression), item=table_name(Item), interaction=table_name(Interaction)
    )
    conversions = [str(event) for event in conversion_events]
    params = {
        "recommender": recommender,
        "since": since,
        "until": until,
        "click": Event.CLICK,
        "window": window,
        "conversions": conversions,
        "add_to_cart": Event.ADD_TO_CART if Event.ADD_TO_CART in conversions else None,
        "purchase": Event.PURCHASE if Event.PURCHASE in conversions else None,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


#: The co-view query's conditions on a viewer's event ``e`` near their view ``v`` of the item.
_CO_VIEWED = (
    "e.event = ANY(%(views)s) AND e.verified AND e.item_id IS NOT NULL AND e.item_id <> %(item)s"
    " AND e.created_at < %(at)s AND e.created_at >= v.seen - %(window)s AND e.created_at <= v.seen + %(window)s"
)


def co_views(
    item: int, *, at: float, viewers: int, window_seconds: float, limit: int, views: Sequence[str] = ("view", "click")
) -> list[tuple[int, float]]:
    """Items viewed with ``item`` before ``at``: its latest ``viewers`` distinct visitors to view it (``views``
    events, their latest view of it), and per other item how many of them viewed it within ``window_seconds`` of
    that view (either side, before ``at``), best first, ties by lower id; at most ``limit``. Verified events of
    known visitors only (``u<user id>``, else ``s<session key>``, as ``event_lines``)."""
    events = table_name(Interaction)
    sql = (
        "WITH viewers AS ("
        f" SELECT {_VISITOR.format(a='e')} AS visitor, MIN(e.user_id) AS user_id,"
        "  MIN(e.session_key) FILTER (WHERE e.user_id IS NULL) AS session_key, MAX(e.created_at) AS seen"
        f" FROM {events} e WHERE e.item_id = %(item)s AND e.event = ANY(%(views)s) AND e.verified"
        "  AND (e.user_id IS NOT NULL OR e.session_key <> '') AND e.created_at < %(at)s"
        " GROUP BY 1 ORDER BY seen DESC, visitor LIMIT %(viewers)s"
        ") SELECT item_id, COUNT(DISTINCT visitor) AS n FROM ("
        # a signed-in viewer's events by user, an anonymous one's by session: two joins each served by its index
        # (one join with an OR of the two read the whole event table per seed)
        f" SELECT v.visitor, e.item_id FROM viewers v JOIN {events} e ON e.user_id = v.user_id"
        f" WHERE v.user_id IS NOT NULL AND {_CO_VIEWED}"
        f" UNION ALL SELECT v.visitor, e.item_id FROM viewers v JOIN {events} e ON e.session_key = v.session_key"
        f" WHERE v.user_id IS NULL AND e.user_id IS NULL AND {_CO_VIEWED}"
        ") seen GROUP BY item_id ORDER BY n DESC, item_id LIMIT %(limit)s"
    )
    params = {
        "item": int(item),
        "views": [str(view) for view in views],
        "at": _when(at),
        "viewers": int(viewers),
        "window": timedelta(seconds=window_seconds),
        "limit": int(limit),
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(item_id, float(n)) for item_id, n in cursor.fetchall()]


def item_catalogue() -> tuple[dict[int, float], dict[int, str]]:
    """Prices and categories of every item (the training log's item attributes)."""
    prices, categories = {}, {}
    for item, price, category in Item.objects.values_list("id", "price", "category"):
        if price is not None:
            prices[item] = float(price)
        if category:
            categories[item] = category
    return prices, categories


# ---------------------------------------------------------------- model versions


def active_ranker(recommender: str) -> RankerModel | None:
    return RankerModel.objects.filter(recommender=recommender, status=RankerModel.Status.ACTIVE).first()


def active_ranker_hash(recommender: str) -> str | None:
    """The active version's content hash only (a cheap check before reloading a cached model)."""
    return (
        RankerModel.objects.filter(recommender=recommender, status=RankerModel.Status.ACTIVE)
        .values_list("content_hash", flat=True)
        .first()
    )


@transaction.atomic
def store_ranker(
    recommender: str, *, model_text: str, factors: bytes, metadata: dict, content_hash: str
) -> RankerModel:
    """Store a trained version as a candidate (numbered after the last one)."""
    last = RankerModel.objects.select_for_update().filter(recommender=recommender).order_by("-number").first()
    return RankerModel.objects.create(
        recommender=recommender,
        number=(last.number + 1) if last else 1,
        content_hash=content_hash,
        model_text=model_text,
        factors=factors,
        metadata=metadata,
    )


@transaction.atomic
def promote_ranker(version: RankerModel) -> RankerModel:
    """Make ``version`` the active one; the one active before is retired."""
    RankerModel.objects.select_for_update().filter(
        recommender=version.recommender, status=RankerModel.Status.ACTIVE
    ).exclude(pk=version.pk).update(status=RankerModel.Status.RETIRED)
    version.status, version.activated_at = RankerModel.Status.ACTIVE, django_timezone.now()
    version.save(update_fields=["status", "activated_at"])
    return version


@transaction.atomic
def rollback_ranker(recommender: str) -> RankerModel | None:
    """Retire the active version and re-activate the one activated before it; None when there is none
    (the recommender then serves fusion)."""
    current = active_ranker(recommender)
    previous = (
        RankerModel.objects.filter(recommender=recommender, activated_at__isnull=False)
        .exclude(pk=getattr(current, "pk", None))
        .order_by("-activated_at")
        .first()
    )
    if current is not None:
        current.status = RankerModel.Status.RETIRED
        current.save(update_fields=["status"])
    return promote_ranker(previous) if previous is not None else None
