"""Event tables (``Interaction``, ``Impression``): popularity, repeat purchases, co-purchases, experiment
statistics, and bulk writes (impressions without waiting for the WAL flush, imported interactions by COPY).

Every read here is one statement whatever the length of a visitor's history or the size of a basket:
counts are summed inside PostgreSQL, never item by item. The reads over everyone's events (popularity,
co-purchases, experiment statistics) run on ``RAGREC["READ_DATABASE"]``; a visitor's own (repeat
purchases) on the primary, so their just-posted events count at once (read-your-writes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from django.db import connection

from ..models import EventClaim, Impression, Interaction, Item
from .database import insert_analytics_row, rows_from_read_database

Event = Interaction.Event
#: Columns of the rows ``copy_interactions`` writes, in order.
COPY_COLUMNS = ("event", "item_id", "user_id", "session_key", "order_id", "quantity", "query", "source", "created_at")


#: A purchase's visitor as SQL (``{a}`` the table alias): ``u<user id>``, else ``s<session key>``. Orders are
#: told apart per visitor: a basket is one (visitor, order id) pair, so two customers' order "1001" never merge.
VISITOR_KEY = "COALESCE('u' || {a}.user_id::text, 's' || {a}.session_key)"
#: A purchase's basket as one SQL value: its visitor and its order id (one column, so the planner estimates its
#: joins as it does the order id's).
BASKET_KEY = "(" + VISITOR_KEY + " || '/' || {a}.order_id)"


def table_name(model) -> str:
    """The quoted table name of ``model``, for SQL written here."""
    return connection.ops.quote_name(model._meta.db_table)


def visitor_condition(user_id: int | None, session_key: str, alias: str = "e") -> tuple[str, list] | None:
    """``(condition, params)`` selecting one visitor's events (by user, else by session); None for nobody."""
    if user_id is not None:
        return "%s.user_id = %%s" % alias, [user_id]
    if session_key:
        return "%s.session_key = %%s" % alias, [session_key]
    return None


def decayed_popularity(
    *,
    event_weights: Mapping[str, float],
    half_life_seconds: float,
    category: str | None,
    limit: int,
    max_per_source: int | None = None,
    at: datetime | None = None,
) -> list[tuple[int, float]]:
    """``(item id, score)`` of eligible items, best first: each visitor counts once per item, with the
    weight of their strongest event on it decayed by its age (``half_life_seconds``); events older than
    eight half-lives are not read. Events of nobody (no user, no session) count one each. ``at``: as of
    that time, from the events before it only (default: now).

    Only ``verified`` events count, and one source (an ``origin``, the client address events came from;
    a visitor of its own when unknown) counts at most its ``max_per_source`` strongest visitors per item
    (None: all), so a burst of invented visitors from one client moves an item little."""
    cases = " ".join("WHEN %s THEN %s" for _ in event_weights)
    params: list = [value for pair in event_weights.items() for value in pair]
    sql = (
        "SELECT item_id, SUM(best) AS score FROM ("
        " SELECT item_id, best, row_number() OVER ("
        "  PARTITION BY item_id, COALESCE(origin, visitor) ORDER BY best DESC, visitor) AS nth FROM ("
        "  SELECT e.item_id, COALESCE('u' || e.user_id::text, NULLIF('s' || e.session_key, 's'), 'e' || e.id::text)"
        "   AS visitor, MIN(NULLIF(e.origin, '')) AS origin, MAX((CASE e.event {cases} ELSE 0 END)"
        "   * exp(-ln(2) * extract(epoch FROM ({when} - e.created_at)) / %s)) AS best"
        "  FROM {events} e JOIN {items} i ON i.id = e.item_id"
        "  WHERE e.item_id IS NOT NULL AND e.verified AND e.created_at > {when} - make_interval(secs => %s)"
        "  {before}"
        "  AND i.is_eligible {category}"
        "  GROUP BY e.item_id, 2"
        " ) per_visitor"
        ") per_source WHERE nth <= %s GROUP BY item_id ORDER BY score DESC, item_id LIMIT %s"
    ).format(
        cases=cases,
        events=table_name(Interaction),
        items=table_name(Item),
        category="AND i.category = %s" if category else "",
        when="%s::timestamptz" if at else "now()",
        before="AND e.created_at < %s" if at else "",
    )
    when = [at] if at else []
    params += [*when, half_life_seconds, *when, half_life_seconds * 8, *when]
    if category:
        params.append(category)
    params += [max_per_source if max_per_source is not None else 2**31 - 1, limit]
    return [(item_id, float(score)) for item_id, score in rows_from_read_database(sql, params) if score > 0]


def repeat_purchases(
    *, user_id: int | None, session_key: str, half_life_orders: float, limit: int
) -> list[tuple[int, float, int]]:
    """A visitor's purchases as ``(item id, score, orders)``, best first; nothing for nobody.

    ``score`` sums ``0.5 ** (orders since / half_life_orders)`` over the visitor's orders holding the
    item (their latest order is 0 orders ago); ties go to the more recently bought, then the lower id.
    A purchase without an order id is an order of its own.
    """
    where = visitor_condition(user_id, session_key)
    if where is None:
        return []
    condition, params = where
    events = table_name(Interaction)
    sql = (
        "WITH lines AS ("
        " SELECT e.item_id, COALESCE(NULLIF(e.order_id, ''), 'event:' || e.id::text) AS basket, e.created_at"
        f" FROM {events} e WHERE {condition} AND e.event = %s AND e.item_id IS NOT NULL"
        "), baskets AS ("
        " SELECT basket, row_number() OVER (ORDER BY MIN(created_at) DESC, basket DESC) - 1 AS age"
        " FROM lines GROUP BY basket"
        "), held AS (SELECT DISTINCT l.item_id, b.age FROM lines l JOIN baskets b ON b.basket = l.basket) "
        "SELECT item_id, SUM(power(0.5, age / %s)) AS score, COUNT(*) AS orders FROM held "
        "GROUP BY item_id ORDER BY score DESC, MIN(age), item_id LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params + [Event.PURCHASE, half_life_orders, limit])
        return [(item_id, float(score), int(orders)) for item_id, score, orders in cursor.fetchall()]


def co_purchases(
    seeds: Mapping[int, float],
    *,
    exclude: Iterable[int],
    limit: int,
    orders_per_item: int | None,
    max_per_source: int | None = None,
) -> list[tuple[int, float, int]]:
    """Items bought in the same orders as the seed items, as ``(item id, score, strongest seed)``, best first.

    ``score`` is the sum over seeds of ``weight * (orders holding both)``, counted in each seed's
    latest ``orders_per_item`` orders (None: all); an order is one visitor's order id (``BASKET_KEY``),
    so two customers' order "1001" are two orders. The strongest seed is the one that contributes
    most. Seeds themselves and ``exclude`` are never returned. Only ``verified`` purchases count, and
    one ``origin`` (client address) counts at most ``max_per_source`` orders per item (None: all;
    purchases of unknown origin are each their order's own source).
    """
    if not seeds:
        return []
    ids = list(seeds)
    events = table_name(Interaction)
    basket_a, basket_b = BASKET_KEY.format(a="a"), BASKET_KEY.format(a="b")
    # Each order (a visitor's order id: ``basket``) holding a seed weighs the sum of its seeds' weights; every
    # other item of the order gets that weight. "order_id <> ''" on both sides lets PostgreSQL use the partial
    # index on order_id; the basket then tells apart orders of different visitors sharing an id. The
    # strongest seed is found for the returned items only.
    sql = (
        "WITH seeds AS (SELECT * FROM unnest(%s::bigint[], %s::float8[]) AS s(item_id, weight)), "
        "anchored AS ("
        " SELECT DISTINCT r.basket, r.order_id, s.item_id FROM seeds s CROSS JOIN LATERAL ("
        f"  SELECT {basket_a} AS basket, a.order_id FROM {events} a WHERE a.item_id = s.item_id AND a.event = %s"
        "  AND a.order_id <> '' AND a.verified ORDER BY a.created_at DESC, a.order_id DESC LIMIT %s) r"
        "), orders AS ("
        " SELECT a.basket, MIN(a.order_id) AS order_id, SUM(s.weight) AS weight"
        " FROM anchored a JOIN seeds s ON s.item_id = a.item_id GROUP BY a.basket"
        "), other AS ("
        f" SELECT {basket_b} AS basket, b.item_id, COALESCE(MIN(NULLIF(b.origin, '')), 'order:' || {basket_b}) AS source"
        f" FROM {events} b"
        " WHERE b.order_id IN (SELECT order_id FROM orders) AND b.order_id <> '' AND b.event = %s AND b.verified"
        " AND b.item_id IS NOT NULL AND NOT (b.item_id = ANY(%s)) GROUP BY 1, b.item_id"
        "), counted AS ("
        " SELECT o.basket, o.item_id, w.weight, row_number() OVER ("
        "  PARTITION BY o.item_id, o.source ORDER BY w.weight DESC, o.basket) AS nth"
        " FROM other o JOIN orders w ON w.basket = o.basket"
        "), top AS ("
        " SELECT item_id, SUM(weight) AS score FROM counted WHERE nth <= %s"
        " GROUP BY item_id ORDER BY score DESC, item_id LIMIT %s"
        "), strongest AS ("
        " SELECT DISTINCT ON (o.item_id) o.item_id, a.item_id AS seed"
        " FROM top t JOIN counted o ON o.item_id = t.item_id AND o.nth <= %s JOIN anchored a ON a.basket = o.basket"
        " JOIN seeds s ON s.item_id = a.item_id"
        " GROUP BY o.item_id, a.item_id, s.weight ORDER BY o.item_id, COUNT(*) * s.weight DESC, a.item_id"
        ") "
        "SELECT t.item_id, t.score, s.seed FROM top t JOIN strongest s ON s.item_id = t.item_id "
        "ORDER BY t.score DESC, t.item_id"
    )
    excluded = sorted(set(exclude) | set(ids))
    cap = max_per_source if max_per_source is not None else 2**31 - 1
    params = [
        ids,
        [float(seeds[i]) for i in ids],
        Event.PURCHASE,
        orders_per_item,
        Event.PURCHASE,
        excluded,
        cap,
        limit,
        cap,
    ]
    return [(item_id, float(score), seed) for item_id, score, seed in rows_from_read_database(sql, params) if score > 0]


# ---------------------------------------------------------------- experiments


def insert_impression(row: Impression) -> None:
    """Insert one impression (``database.insert_analytics_row``: its own transaction, no wait for the WAL flush)."""
    insert_analytics_row(row)


#: Columns of the rows ``insert_events`` writes, in order.
EVENT_COLUMNS = (
    "event",
    "item_id",
    "user_id",
    "session_key",
    "order_id",
    "quantity",
    "query",
    "source",
    "idempotency_key",
    "idempotency_scope",
    "payload_hash",
    "impression_id",
    "origin",
    "verified",
    "created_at",
)


def insert_events(rows: list[tuple]) -> list[tuple[int, str, str | None]]:
    """Insert event rows (tuples in ``EVENT_COLUMNS`` order, times aware) in one statement, leaving out each row whose
    claim is taken (``EventClaim``: its idempotency key or its impression's click stored before, or earlier in
    ``rows``); return ``(id, idempotency_scope, idempotency_key)`` of the rows inserted, by id.

    One statement: the rows (one JSON parameter, one ``json.dumps`` instead of adapting every value: psycopg's
    pure-Python array adaptation cost more than the insert itself) get their ids from the table's sequence, the rows
    holding a key or a click claim them (``INSERT ... ON CONFLICT DO NOTHING`` into the claim table, whose unique
    indexes hold across the event table's monthly partitions), and the rows without a claim to make or with their
    claim made are inserted. A row whose key another transaction is claiming waits for it to end, then is left out
    if that one committed. Rows go in in their order (ids follow the batch); two batches holding the same keys in
    opposite orders can deadlock, and PostgreSQL then fails one of them (an ``OperationalError``: the API answers
    503, and the client retries with the same keys). Columns of the model not in ``EVENT_COLUMNS`` get their
    field's default, as ``Model.save`` would give them. Run it inside the caller's transaction.
    """
    if not rows:
        return []
    fields = [Interaction._meta.get_field(name) for name in EVENT_COLUMNS]
    defaults = []
    for field in Interaction._meta.concrete_fields:
        if not field.primary_key and field not in fields:
            fields.append(field)
            defaults.append(field.get_db_prep_value(field.get_default(), connection))
    if defaults:
        rows = [(*row, *defaults) for row in rows]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    # Cast to the column's type without a length: a too-long text then fails the insert instead of being cut.
    value = {
        field.name: "(r->>%d)::%s" % (index, re.sub(r"\(\d+\)", "", field.db_type(connection)))
        for index, field in enumerate(fields)
    }
    is_click = "%s = '%s' AND %s IS NOT NULL" % (value["event"], Event.CLICK, value["impression"])
    needs_claim = "(%s IS NOT NULL OR (%s))" % (value["idempotency_key"], is_click)
    sequence = connection.ops.quote_name(Interaction._meta.db_table + "_id_seq")
    sql = (
        f"WITH batch AS MATERIALIZED (SELECT nextval('{sequence}'::regclass) AS id, r, nth"
        "  FROM json_array_elements(%s::json) WITH ORDINALITY AS batch(r, nth)),"
        f" claimed AS (INSERT INTO {table_name(EventClaim)} (event_id, created_at, idempotency_scope, idempotency_key,"
        "  payload_hash, click_impression, click_item)"
        f"  SELECT id, {value['created_at']}, {value['idempotency_scope']}, {value['idempotency_key']},"
        f"  {value['payload_hash']}, CASE WHEN {is_click} THEN {value['impression']} END,"
        f"  CASE WHEN {is_click} THEN {value['item']} END"
        f"  FROM batch WHERE {needs_claim} ORDER BY nth ON CONFLICT DO NOTHING RETURNING event_id)"
        f" INSERT INTO {table_name(Interaction)} (id, {columns}) SELECT id, {', '.join(value.values())}"
        f" FROM batch WHERE NOT {needs_claim} OR id IN (SELECT event_id FROM claimed) ORDER BY nth"
        " RETURNING id, idempotency_scope, idempotency_key"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(rows, default=str, separators=(",", ":"))])
        return sorted(cursor.fetchall())


_STATS_SQL = """
WITH imp AS (
    SELECT id, recommender, experiment, variant, (created_at AT TIME ZONE %(tz)s)::date AS day
    FROM {impression}
    WHERE created_at >= %(start)s AND created_at < %(end)s
),
clk AS (  -- each clicked (impression, item) once, at its first click
    SELECT DISTINCT ON (c.impression_id, c.item_id) c.impression_id, c.item_id, c.user_id, c.session_key, c.created_at
    FROM {interaction} c JOIN imp ON imp.id = c.impression_id
    WHERE c.event = %(click)s AND c.item_id IS NOT NULL
    ORDER BY c.impression_id, c.item_id, c.created_at
),
att AS (  -- each conversion event credited to the latest qualifying click of the same visitor and item
    SELECT DISTINCT ON (o.id) o.id, clk.impression_id, o.item_id, o.event, o.order_id
    FROM {interaction} o JOIN clk ON o.item_id = clk.item_id
        AND o.created_at >= clk.created_at AND o.created_at <= clk.created_at + %(window)s
        AND ((clk.user_id IS NOT NULL AND o.user_id = clk.user_id)
             OR (clk.user_id IS NULL AND clk.session_key <> '' AND o.session_key = clk.session_key))
    WHERE o.event = ANY(%(conversions)s)
    ORDER BY o.id, clk.created_at DESC, clk.impression_id
)
SELECT imp.day, imp.recommender, imp.experiment, imp.variant,
       COUNT(*), COUNT(c.n), COALESCE(SUM(c.n), 0), COUNT(a.n), COALESCE(SUM(a.n), 0)
FROM imp
LEFT JOIN (SELECT impression_id, COUNT(*) AS n FROM clk GROUP BY impression_id) c ON c.impression_id = imp.id
LEFT JOIN (  -- a replayed conversion (same item, event and order) counts once
    SELECT impression_id, COUNT(DISTINCT (item_id, event, order_id)) AS n FROM att GROUP BY impression_id
) a ON a.impression_id = imp.id
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4
"""


def experiment_stats(
    *, start: datetime, end: datetime, time_zone: str, window: timedelta, conversion_events: Iterable[str]
) -> list[tuple]:
    """Per day (in ``time_zone``) and (recommender, experiment, variant), the impressions shown in
    ``[start, end)``: ``(day, recommender, experiment, variant, impressions, clicked impressions,
    clicks, converted impressions, conversions)``.

    A click counts once per (impression, item); a ``conversion_events`` event is credited to the
    latest click of the same visitor on the same item at most ``window`` before it (last click), and
    counts once per (impression, item, event, order): replays of one conversion do not add up.
    """
    sql = _STATS_SQL.format(impression=table_name(Impression), interaction=table_name(Interaction))
    params = {
        "tz": time_zone,
        "start": start,
        "end": end,
        "click": Event.CLICK,
        "window": window,
        "conversions": [str(e) for e in conversion_events],
    }
    return rows_from_read_database(sql, params)


# ---------------------------------------------------------------- imports


def copy_interactions(rows: Iterable[tuple]) -> None:
    """Insert interaction rows (tuples in ``COPY_COLUMNS`` order) with COPY (psycopg 3), else with
    bulk_create, then refresh the table's planner statistics."""
    table = table_name(Interaction)
    with connection.cursor() as cursor:
        raw = getattr(cursor, "cursor", None)
        if raw is not None and hasattr(raw, "copy"):
            with raw.copy("COPY %s (%s) FROM STDIN" % (table, ", ".join(COPY_COLUMNS))) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            Interaction.objects.bulk_create(
                [Interaction(**dict(zip(COPY_COLUMNS, row, strict=True))) for row in rows], batch_size=5000
            )
        cursor.execute("ANALYZE %s" % table)
