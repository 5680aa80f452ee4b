"""The learned ranker's reads and writes: point-in-time signals from the event table, the event log a
training job reads, and the stored model versions (``RankerModel``).

Every signal read takes ``at`` and reads only events strictly before it, as the in-memory
``ranking.learned.EventLog`` does for training, so a model sees the same features when serving.
A basket is one (visitor, order id) pair; a visitor is ``u<user id>`` or ``s<session key>``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

import numpy as np
from django.db import connection, transaction
from django.utils import timezone as django_timezone

from ..models import Interaction, Item, RankerModel
from .interactions import table_name, visitor_condition

Event = Interaction.Event
_VISITOR = "COALESCE('u' || {a}.user_id::text, 's' || {a}.session_key)"
_BASKET = "COALESCE(NULLIF({a}.order_id, ''), 'event:' || {a}.id::text)"


def _when(at: float) -> datetime:
    return datetime.fromtimestamp(at, tz=timezone.utc)


def visitor_lines(*, user_id: int | None, session_key: str, at: float, limit: int = 5000) -> list[tuple]:
    """A visitor's latest item events before ``at`` as ``(item, time, basket, quantity, category, price)``
    (``ranking.learned.VisitorHistory.from_lines``): baskets numbered per order, -1 for events that are
    not purchases; searches left out. Nothing for nobody."""
    visitor = visitor_condition(user_id, session_key)
    if visitor is None:
        return []
    condition, params = visitor
    sql = (
        "SELECT e.item_id, extract(epoch FROM e.created_at), CASE WHEN e.event = %s THEN {basket} END,"
        " e.quantity, i.category, i.price"
        f" FROM {table_name(Interaction)} e JOIN {table_name(Item)} i ON i.id = e.item_id"
        f" WHERE {condition} AND e.item_id IS NOT NULL AND e.event <> %s AND e.created_at < %s"
        " ORDER BY e.created_at DESC, e.id DESC LIMIT %s"
    ).format(basket=_BASKET.format(a="e"))
    with connection.cursor() as cursor:
        cursor.execute(sql, [Event.PURCHASE, *params, Event.SEARCH, _when(at), limit])
        rows = cursor.fetchall()
    numbers: dict[str, int] = {}
    return [
        (
            item,
            float(time),
            -1 if basket is None else numbers.setdefault(basket, len(numbers)),
            float(quantity),
            category or "",
            None if price is None else float(price),
        )
        for item, time, basket, quantity, category, price in rows
    ]


def co_purchases(
    seed_sets: Sequence[Sequence[int]], *, at: float, orders_per_item: int
) -> list[tuple[dict[int, float], float, dict[int, int]]]:
    """Co-purchases of each set of seeds before ``at``, all sets in one query. Per set: {item: orders holding
    it among each seed's latest ``orders_per_item`` orders, summed over the set's seeds} (seeds included),
    the number of orders read, and each item's strongest other seed (the one it shares most orders with;
    its reason). Orders at the same time count in the order they were written, as in ``EventLog``."""
    pairs = [(int(item), number) for number, seeds in enumerate(seed_sets) for item in seeds]
    results: list[tuple[dict[int, float], float, dict[int, int]]] = [({}, 0.0, {}) for _ in seed_sets]
    if not pairs:
        return results
    events = table_name(Interaction)
    visitor_a, visitor_b = _VISITOR.format(a="a"), _VISITOR.format(a="b")
    sql = (
        "WITH sets AS (SELECT * FROM unnest(%s::bigint[], %s::int[]) AS s(item_id, set_no)), "
        "picked AS ("
        " SELECT s.item_id AS seed, r.visitor, r.order_id FROM (SELECT DISTINCT item_id FROM sets) s CROSS JOIN LATERAL ("
        f"  SELECT {visitor_a} AS visitor, a.order_id FROM {events} a"
        "   WHERE a.item_id = s.item_id AND a.event = %s AND a.order_id <> '' AND a.created_at < %s"
        "   GROUP BY 1, 2 ORDER BY MIN(a.created_at) DESC, MIN(a.id) DESC LIMIT %s) r"
        "), lines AS ("
        f" SELECT DISTINCT {visitor_b} AS visitor, b.order_id, b.item_id FROM {events} b"
        " WHERE b.order_id IN (SELECT order_id FROM picked) AND b.order_id <> '' AND b.event = %s"
        " AND b.item_id IS NOT NULL AND b.created_at < %s"
        ") "
        "SELECT s.set_no, l.item_id, COUNT(*), mode() WITHIN GROUP (ORDER BY p.seed) FILTER (WHERE p.seed <> l.item_id)"
        " FROM sets s JOIN picked p ON p.seed = s.item_id JOIN lines l ON l.visitor = p.visitor AND l.order_id = p.order_id"
        " GROUP BY s.set_no, l.item_id "
        # one more row per set: how many orders were read (item NULL)
        "UNION ALL SELECT s.set_no, NULL, COUNT(*), NULL FROM sets s JOIN picked p ON p.seed = s.item_id GROUP BY s.set_no"
    )
    when = _when(at)
    params = [
        [item for item, _ in pairs],
        [number for _, number in pairs],
        Event.PURCHASE,
        when,
        orders_per_item,
        Event.PURCHASE,
        when,
    ]
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


def popular(*, at: float, days: float, limit: int) -> list[tuple[int, float]]:
    """The items in most orders over ``days`` before ``at``, best first, ties by lower id."""
    sql = (
        f"SELECT e.item_id, COUNT(DISTINCT {_VISITOR.format(a='e')} || ':' || {_BASKET.format(a='e')}) AS orders"
        f" FROM {table_name(Interaction)} e WHERE e.event = %s AND e.item_id IS NOT NULL"
        " AND e.created_at >= %s AND e.created_at < %s GROUP BY e.item_id ORDER BY orders DESC, e.item_id LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [Event.PURCHASE, _when(at - days * 86400), _when(at), limit])
        return [(item, float(orders)) for item, orders in cursor.fetchall()]


def item_signals(items: np.ndarray, *, at: float, windows: Sequence[int]):
    """For ``items`` before ``at``: ({window days: orders holding it}, the time of its first order within the
    longest window (NaN: none), price (NaN: none), category), aligned with ``items``; one query that reads
    only the purchases of the longest window, each (item, order) once."""
    ids = [int(i) for i in items]
    counts = ", ".join("COUNT(o.at) FILTER (WHERE o.at >= %s)" for _ in windows)
    sql = (
        f"SELECT i.id, i.price, i.category, extract(epoch FROM MIN(o.at)), {counts}"
        f" FROM {table_name(Item)} i LEFT JOIN ("
        f"  SELECT e.item_id, MIN(e.created_at) AS at FROM {table_name(Interaction)} e"
        "   WHERE e.item_id = ANY(%s) AND e.event = %s AND e.created_at >= %s AND e.created_at < %s"
        f"   GROUP BY e.item_id, e.user_id, e.session_key, {_BASKET.format(a='e')}"
        " ) o ON o.item_id = i.id WHERE i.id = ANY(%s) GROUP BY i.id"
    )
    params = [_when(at - days * 86400) for days in windows]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, ids, Event.PURCHASE, _when(at - max(windows) * 86400), _when(at), ids])
        rows = {row[0]: row for row in cursor.fetchall()}
    n = len(ids)
    popularity = {days: np.zeros(n) for days in windows}
    first_seen, price = np.full(n, np.nan), np.full(n, np.nan)
    category = np.full(n, "", dtype=object)
    for position, item in enumerate(ids):
        row = rows.get(item)
        if row is None:
            continue
        price[position] = np.nan if row[1] is None else float(row[1])
        category[position] = row[2] or ""
        first_seen[position] = np.nan if row[3] is None else float(row[3])
        for offset, days in enumerate(windows):
            popularity[days][position] = float(row[4 + offset])
    return popularity, first_seen, price, category


def event_lines(
    *, until: datetime | None = None, chunk: int = 20000
) -> Iterator[tuple[str, int, str, float, float, bool]]:
    """Every item event (searches left out) before ``until`` as ``(visitor, item, order id, time, quantity,
    is purchase)``, oldest first, streamed: the training job's ``EventLog``. Events of nobody are skipped."""
    sql = (
        f"SELECT {_VISITOR.format(a='e')}, e.item_id, e.order_id, extract(epoch FROM e.created_at), e.quantity, e.event = %s"
        f" FROM {table_name(Interaction)} e WHERE e.item_id IS NOT NULL AND e.event <> %s"
        " AND (e.user_id IS NOT NULL OR e.session_key <> '') AND e.created_at < %s ORDER BY e.created_at, e.id"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [Event.PURCHASE, Event.SEARCH, until or django_timezone.now()])
        while rows := cursor.fetchmany(chunk):
            for visitor, item, order, time, quantity, purchase in rows:
                yield visitor, item, order, float(time), float(quantity), purchase


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
