"""Offline evaluation: hold out each shopper's last basket, ask every recommender, score the lists.

Data: a shop's CSV export read through the importer's column mapping and validation (``load_files``;
the ``online-retail`` preset is one such mapping), or the events and items already in the database
(``load_database``). The catalogue is the products that occur in the events.

Protocol (temporal leave-last-basket-out):

* a basket is one (visitor, order id) group of purchase events (two visitors' order "1001" are two
  baskets); its time is its first line's;
* every visitor with at least two baskets is *eligible*: their last basket (latest time, ties by
  order id) is held out as the test set, and any of their events at or after its time too;
* everything else is training: only training events are loaded into the database the services
  read, so the services see exactly what a shop would have seen before those baskets;
* training timestamps are shifted by one constant so the last training event is "now" (the
  services' time decays are relative to now; "trending" only counts recent weeks). The shift
  changes no order and, for exponential decays, no relative weight;
* each recommender returns ``depth`` (= 2 x k_max) items per visitor; they are scored at
  k = 1..k_max in three variants:

  ``all``  targets: every distinct item of the held-out basket; lists as returned;
  ``new``  targets: held-out items the visitor had not bought in training (visitors without any
           are left out); lists with the visitor's training purchases removed first;
  ``cart`` the cart protocol of the basket recommenders: the first half of the held-out basket's
           lines (``cart_of``) is the cart, the rest are the targets (visitors whose held-out basket
           has one item are left out). The basket recommenders are asked again with the cart as their
           basket; every list is scored with the cart removed first (a shop never recommends what is
           already in the cart).

Recommenders (``kind``): the services ``for_you``, ``bought_together`` (the basket service on the
visitor's last training basket, or on the cart in ``cart``, one call per visitor),
``bought_together_visitor`` (the same with the visitor's repeat purchases fused in), ``buy_again`` and
``trending``; the baselines ``popularity`` (training baskets containing the item) and item-to-item
co-occurrence counted from the training baskets, seeded with the last training basket (the cart in
``cart``: ``cooc_last``) or every training purchase (``cooc_all``); and, on request only, ``ablation`` runs of ``for_you`` with one or two of
its lists (``FOR_YOU_WEIGHTS`` replaced), to show what each list contributes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from ..ingest import (
    ImportRefused,
    InteractionRow,
    Preset,
    ProductRow,
    RowError,
    describe_text,
    get_preset,
    read_interactions,
    read_products,
    write_rows,
)
from ..ml.ranker import RankerUnavailable
from . import learned_ranker, metrics

Progress = Callable[[str], None]


# ---------------------------------------------------------------- data set


@dataclass
class Dataset:
    name: str
    products: list[ProductRow]
    interactions: list[InteractionRow]
    info: dict = field(default_factory=dict)


class EvaluationError(ValueError):
    """The data cannot be evaluated as asked (nothing eligible, a recommender that cannot be prepared...)."""


#: Rows kept with their line numbers when ``skip_invalid`` leaves invalid rows out (the count goes on).
SHOWN_SKIPPED = 20


def load_files(
    interactions: str | os.PathLike,
    products: str | os.PathLike,
    *,
    mapping: Mapping[str, str] | None = None,
    product_mapping: Mapping[str, str] | None = None,
    preset: Preset | None = None,
    skip_invalid: bool = False,
    name: str | None = None,
    **read_options,
) -> Dataset:
    """A shop's export read as ``ragrec_import`` reads it (column mappings, a preset's filters, validation).

    Any invalid row, or an event whose item is not in the products file, raises ``ImportRefused``
    (every error with its file and line) unless ``skip_invalid`` leaves those rows out; they are counted
    in ``info``. User ids become visitor ids (``user-<id>``): the evaluation needs no Django users.
    """
    csv_options = {k: read_options[k] for k in ("delimiter", "encoding", "exclude_items") if k in read_options}
    product_read = read_products(products, mapping=product_mapping, preset=preset, **csv_options)
    interaction_read = read_interactions(interactions, mapping=mapping, preset=preset, **read_options)
    errors = [*product_read.errors, *interaction_read.errors]
    count = product_read.error_count + interaction_read.error_count
    known = {row.key for row in product_read.rows}
    rows = []
    for row in interaction_read.rows:
        if row.item and row.item not in known:
            count += 1
            problem = "unknown item %r (not in %s)" % (row.item, product_read.source)
            errors.append(RowError(interaction_read.source, row.line, (problem,)))
            continue
        rows.append(row)
    errors.sort(key=lambda e: (e.source, e.line))
    if count and not skip_invalid:
        raise ImportRefused(errors[:1000], count)
    occurring = {row.item for row in rows if row.item}
    info = {
        "path": str(Path(interactions).resolve().parent),
        "files": [str(interactions), str(products)],
        "rows_read": interaction_read.total,
        "filtered": dict(interaction_read.filtered),
        "products_read": product_read.total,
        "products_filtered": dict(product_read.filtered),
        "invalid_rows_skipped": count,
        "invalid_rows_shown": [str(e) for e in errors[:SHOWN_SKIPPED]],
        "product_text": describe_text(product_read.rows),
    }
    catalogue = [row for row in product_read.rows if row.key in occurring]
    return as_sessions(Dataset(name or Path(interactions).stem, catalogue, rows, info))


def load_online_retail(path: str | os.PathLike) -> Dataset:
    """The UCI Online Retail files through the importer's ``online-retail`` preset (``load_files``)."""
    folder = Path(path)
    preset = get_preset("online-retail")
    return load_files(
        folder / preset.interactions_file, folder / preset.products_file, preset=preset, name="online-retail"
    )


def load_database() -> Dataset:
    """The events and items already in the configured database (e.g. what ``ragrec_import`` wrote).

    Events of nobody (no user, no session) and unverified events (an API client's session the server
    never issued: the services do not count them) are left out, counted in ``info``.
    """
    from ..models import Interaction, Item

    events = Interaction.objects.order_by("created_at", "id").values_list(
        "event", "item__key", "user_id", "session_key", "order_id", "quantity", "query", "created_at", "verified"
    )
    rows, nobody, unverified = [], 0, 0
    for line, (event, key, user_id, session, order_id, quantity, query, at, verified) in enumerate(
        events.iterator(chunk_size=20000), start=1
    ):
        if user_id is None and not session:
            nobody += 1
        elif not verified:
            unverified += 1
        else:
            rows.append(InteractionRow(line, event, key or "", session, user_id, order_id, quantity, query, at))
    occurring = {row.item for row in rows if row.item}
    items = Item.objects.filter(key__in=occurring).order_by("id")
    fields = ("key", "title", "category", "price", "url", "group_key", "text", "metadata")
    catalogue = [
        ProductRow(
            0,
            key,
            title,
            category=category,
            price=price,
            url=url,
            group=group,
            image=(metadata or {}).get("image", "") if isinstance(metadata, dict) else "",
            stored_text=text,
        )
        for key, title, category, price, url, group, text, metadata in items.values_list(*fields)
    ]
    info = {
        "database": connection.settings_dict["NAME"],
        "rows_read": nobody + unverified + len(rows),
        "filtered": {
            reason: n
            for reason, n in (("no user or session", nobody), ("unverified (session never issued)", unverified))
            if n
        },
        "product_text": describe_text(catalogue),
    }
    return Dataset("database:%s" % connection.settings_dict["NAME"], catalogue, rows, info)


def as_sessions(dataset: Dataset) -> Dataset:
    """The data set with user ids turned into visitor ids (``user-<id>``), for a database that has no such users."""
    rows = [
        row if row.user_id is None else dataclasses.replace(row, session="user-%d" % row.user_id, user_id=None)
        for row in dataset.interactions
    ]
    return dataclasses.replace(dataset, interactions=rows)


# ---------------------------------------------------------------- split


def visitor_of(row: InteractionRow) -> str:
    """A user's events are theirs whatever the session, as the services read them (``visitor_condition``)."""
    return "user:%d" % row.user_id if row.user_id is not None else row.session


@dataclass
class Basket:
    order_id: str
    at: datetime
    items: list[str]


@dataclass
class Split:
    train: list[InteractionRow]
    test: dict[str, Basket]  # eligible visitor -> held-out basket
    history: dict[str, list[Basket]]  # visitor -> training baskets, oldest first
    held_out_lines: int = 0

    def bought(self, visitor: str) -> set[str]:
        return {item for basket in self.history.get(visitor, ()) for item in basket.items}


def baskets_of(rows: Iterable[InteractionRow]) -> dict[str, list[Basket]]:
    """Purchase baskets per visitor, oldest first (ties by order id); events without an order id are skipped."""
    grouped: dict[tuple[str, str], Basket] = {}
    for row in rows:
        if row.event != "purchase" or not row.order_id or not row.item:
            continue
        key = (visitor_of(row), row.order_id)
        basket = grouped.get(key)
        if basket is None:
            grouped[key] = Basket(row.order_id, row.created_at, [row.item])
        else:
            basket.at = min(basket.at, row.created_at)
            if row.item not in basket.items:
                basket.items.append(row.item)
    by_visitor: dict[str, list[Basket]] = defaultdict(list)
    for (visitor, _), basket in grouped.items():
        by_visitor[visitor].append(basket)
    for baskets in by_visitor.values():
        baskets.sort(key=lambda b: (b.at, b.order_id))
    return dict(by_visitor)


def temporal_split(rows: Sequence[InteractionRow]) -> Split:
    """Hold out the last basket of every visitor with two or more (see the module docstring)."""
    all_baskets = baskets_of(rows)
    test = {visitor: baskets[-1] for visitor, baskets in all_baskets.items() if len(baskets) >= 2}
    train, held_out = [], 0
    for row in rows:
        basket = test.get(visitor_of(row))
        if basket is not None and (row.order_id == basket.order_id or row.created_at >= basket.at):
            held_out += 1
            continue
        train.append(row)
    return Split(train=train, test=test, history=baskets_of(train), held_out_lines=held_out)


# ---------------------------------------------------------------- database


class DatabaseNotEmpty(Exception):
    pass


def load_training_data(
    dataset: Dataset, split: Split, *, now: datetime | None = None, in_place: bool = False
) -> timedelta:
    """Products and the training events (timestamps shifted so the last one is ``now``) -> the database.

    The database must hold no items nor events, unless ``in_place``: the data set is the database's own
    (``load_database``), so its events are deleted first and its items kept, only the catalogue's
    eligible. Only for a transaction that is rolled back (``evaluate_and_roll_back``).
    """
    from ..models import Interaction, Item
    from ..storage import evaluation as store

    if in_place:
        if not connection.in_atomic_block:
            raise EvaluationError("An in-place evaluation must run inside a transaction that is rolled back.")
        store.set_aside_events(keep_eligible=[p.key for p in dataset.products])
    elif Item.objects.exists() or Interaction.objects.exists():
        raise DatabaseNotEmpty(
            "The database %r already holds %d item(s) and %d event(s); loading a data set into it needs empty "
            "ragrec tables. To evaluate the data it holds (e.g. what ragrec_import wrote), run ragrec_evaluate "
            "--database-live (in place, rolled back) or --imported (on a scratch copy) without a data set."
            % (connection.settings_dict["NAME"], Item.objects.count(), Interaction.objects.count())
        )
    if not split.train:
        raise EvaluationError("No training events: every event belongs to a held-out basket.")
    latest = max(row.created_at for row in split.train)
    shift = (now or timezone.now()) - latest
    shift = timedelta(seconds=math.floor(shift.total_seconds()))
    # In UTC: adding days to a time zone's wall clock would move events across a DST change by an hour.
    train = [
        dataclasses.replace(row, created_at=row.created_at.astimezone(dt_timezone.utc) + shift) for row in split.train
    ]
    write_rows([] if in_place else dataset.products, train, sync_host=False)
    return shift


def encode_catalogue(
    products: Sequence[ProductRow], encoder, *, space: str = "text", batch: int = 512, progress: Progress | None = None
) -> dict[str, np.ndarray]:
    """Encode the products' texts with ``encoder`` and store them as the space's active generation.

    Written straight through the storage layer (there is no host item model to read). Returns
    {item key: unit vector}.
    """
    from .. import registry, storage
    from ..adapters import content_hash
    from ..models import Item

    ids = dict(Item.objects.filter(key__in=[p.key for p in products]).values_list("key", "id"))
    texts = [p.text for p in products]
    generation = storage.write_generation(
        registry.get_space(space), version=encoder.version, dimension=encoder.dimension
    )
    vectors: dict[str, np.ndarray] = {}
    for start in range(0, len(products), batch):
        chunk = products[start : start + batch]
        encoded = np.asarray(encoder.encode_texts(texts[start : start + batch]), dtype=np.float32)
        storage.upsert_embeddings(
            generation, [ids[p.key] for p in chunk], encoded, [content_hash(t) for t in texts[start : start + batch]]
        )
        for product, vector in zip(chunk, encoded):
            vectors[product.key] = vector / (np.linalg.norm(vector) or 1.0)
        if progress:
            progress("encoded %d/%d product texts" % (min(start + batch, len(products)), len(products)))
    return vectors


# ---------------------------------------------------------------- recommenders


@dataclass
class Context:
    """What the recommenders share: the split, the catalogue, training statistics, caches."""

    split: Split
    keys: list[str]  # catalogue keys, index = column of the matrices
    index: dict[str, int]
    popularity: np.ndarray  # training baskets containing each item
    cooccurrence: np.ndarray  # training baskets containing both items (diagonal 0)
    depth: int
    caches: dict = field(default_factory=dict)
    carts: dict[str, list[str]] | None = None  # set while the basket recommenders are asked for the cart variant

    def basket(self, visitor: str) -> list[str]:
        """The basket a basket recommender is given: the cart while ``carts`` is set, else the visitor's last
        training basket."""
        if self.carts is not None:
            return list(self.carts.get(visitor, ()))
        history = self.split.history.get(visitor)
        return list(history[-1].items) if history else []

    def ranked(self, scores: np.ndarray, limit: int) -> list[str]:
        """Top ``limit`` keys by score, ties by training popularity, then catalogue order."""
        order = np.lexsort((np.arange(len(scores)), -self.popularity, -scores))
        return [self.keys[column] for column in order[:limit]]


def build_context(split: Split, catalogue: Sequence[str], depth: int) -> Context:
    """Popularity and co-occurrence counts from the training baskets."""
    keys = list(catalogue)
    index = {key: i for i, key in enumerate(keys)}
    co = np.zeros((len(keys), len(keys)), dtype=np.float32)
    for baskets in split.history.values():
        for basket in baskets:
            columns = np.array(sorted({index[item] for item in basket.items if item in index}), dtype=np.intp)
            co[np.ix_(columns, columns)] += 1.0
    popularity = co.diagonal().copy()
    np.fill_diagonal(co, 0.0)
    return Context(split=split, keys=keys, index=index, popularity=popularity, cooccurrence=co, depth=depth)


def _columns(ctx: Context, items: Iterable[str]) -> list[int]:
    return sorted({ctx.index[item] for item in items if item in ctx.index})


def _baseline_length(ctx: Context, visitor: str) -> int:
    """Baseline lists are long enough to keep ``depth`` items after the visitor's purchases (and cart) are removed."""
    return ctx.depth + len(ctx.split.bought(visitor)) + (len(ctx.carts.get(visitor, ())) if ctx.carts else 0)


def rec_popularity(ctx: Context, visitor: str) -> list[str]:
    top = ctx.caches.get("popularity")
    if top is None:
        top = ctx.caches["popularity"] = ctx.ranked(ctx.popularity, len(ctx.keys))
    return top[: _baseline_length(ctx, visitor)]


def _cooc(ctx: Context, visitor: str, seeds: list[int]) -> list[str]:
    scores = ctx.cooccurrence[seeds].sum(axis=0) if seeds else np.zeros(len(ctx.keys), dtype=np.float32)
    return ctx.ranked(scores, _baseline_length(ctx, visitor))


def rec_cooc_last(ctx: Context, visitor: str) -> list[str]:
    return _cooc(ctx, visitor, _columns(ctx, ctx.basket(visitor)))


def rec_cooc_all(ctx: Context, visitor: str) -> list[str]:
    return _cooc(ctx, visitor, _columns(ctx, ctx.split.bought(visitor)))


def _service_visitor(visitor: str):
    from ..services.recommend import Visitor

    if visitor.startswith("user:"):
        return Visitor(user_id=int(visitor[5:]))
    return Visitor(session_key=visitor)


def _keys(result) -> list[str]:
    return [r.item.key for r in result]


def rec_for_you(ctx: Context, visitor: str) -> list[str]:
    """``for_you`` with fusion ranking whatever the host's ``RANKER`` (``for_you_learned`` is the learned one)."""
    from django.conf import settings
    from django.test.utils import override_settings

    from ..services import recommend
    from ..services.ranker import ranker_for

    if ranker_for("for_you") == "fusion":
        return _keys(recommend.for_you(_service_visitor(visitor), k=ctx.depth))
    with override_settings(RAGREC={**getattr(settings, "RAGREC", {}), "RANKER": "fusion"}):
        return _keys(recommend.for_you(_service_visitor(visitor), k=ctx.depth))


def rec_buy_again(ctx: Context, visitor: str) -> list[str]:
    from ..services import recommend

    return _keys(recommend.buy_again(_service_visitor(visitor), k=ctx.depth))


def rec_trending(ctx: Context, visitor: str) -> list[str]:
    from ..services import recommend

    top = ctx.caches.get("trending")
    if top is None:
        top = ctx.caches["trending"] = _keys(recommend.trending(k=ctx.depth))
    return top


def rec_bought_together(ctx: Context, visitor: str) -> list[str]:
    """The basket service on the visitor's basket (``Context.basket``): one call per visitor, with the co-purchase
    counts whatever the host's ``RANKER`` (``bought_together_learned`` is the learned model's basket table)."""
    from django.conf import settings
    from django.test.utils import override_settings

    from ..services import history
    from ..services.ranker import ranker_for

    basket = ctx.basket(visitor)
    if not basket:
        return []
    if ranker_for("bought_together") == "fusion":
        return _keys(history.bought_together_for_basket(basket, k=ctx.depth))
    with override_settings(RAGREC={**getattr(settings, "RAGREC", {}), "RANKER": "fusion"}):
        return _keys(history.bought_together_for_basket(basket, k=ctx.depth))


def rec_bought_together_visitor(ctx: Context, visitor: str) -> list[str]:
    """The same, with the visitor's own repeat purchases fused in (``visitor=``)."""
    from ..services import history

    basket = ctx.basket(visitor)
    if not basket:
        return []
    return _keys(history.bought_together_for_basket(basket, k=ctx.depth, visitor=_service_visitor(visitor)))


def _for_you_with(weights: dict[str, float]) -> Callable[[Context, str], list[str]]:
    """``for_you`` with ``RAGREC["FOR_YOU_WEIGHTS"]`` replaced (an ablation: which list does what)."""

    def recommend_with(ctx: Context, visitor: str) -> list[str]:
        from django.conf import settings
        from django.test.utils import override_settings

        with override_settings(RAGREC={**getattr(settings, "RAGREC", {}), "FOR_YOU_WEIGHTS": weights}):
            return rec_for_you(ctx, visitor)

    return recommend_with


@dataclass(frozen=True)
class Recommender:
    name: str
    kind: str  # service, baseline, ablation
    function: Callable[[Context, str], list[str]]
    description: str
    default: bool = True  # run when no --recommenders is given
    prepare: Callable[..., dict] | None = None  # run once before the first visitor (e.g. train a model); its report
    basket: bool = False  # recommends for a basket (``Context.basket``): asked again with the cart for ``cart``


RECOMMENDERS: dict[str, Recommender] = {
    r.name: r
    for r in [
        Recommender(
            "for_you",
            "service",
            rec_for_you,
            "services.recommend.for_you: similar, repeat and co-purchase lists fused by reciprocal rank (FOR_YOU_WEIGHTS)",
        ),
        Recommender(
            "bought_together",
            "service",
            rec_bought_together,
            "history.bought_together_for_basket on the last training basket, or the cart (co-purchase counts summed over it; the basket itself excluded)",
            basket=True,
        ),
        Recommender(
            "bought_together_visitor",
            "service",
            rec_bought_together_visitor,
            "the same with visitor=: the visitor's repeat purchases fused in",
            basket=True,
        ),
        Recommender(
            "buy_again",
            "service",
            rec_buy_again,
            "services.recommend.buy_again (own purchases, order frequency with recency decay)",
        ),
        Recommender(
            "trending",
            "service",
            rec_trending,
            "services.recommend.trending (decayed popularity by distinct visitors, same for everyone)",
        ),
        Recommender(
            "popularity", "baseline", rec_popularity, "training baskets containing the item (same for everyone)"
        ),
        Recommender(
            "cooc_last",
            "baseline",
            rec_cooc_last,
            "co-occurrence counts with the last training basket's items (the cart's in the cart variant)",
            basket=True,
        ),
        Recommender("cooc_all", "baseline", rec_cooc_all, "co-occurrence counts with every item bought in training"),
        Recommender(
            "for_you_learned",
            "service",
            learned_ranker.recommend,
            "for_you with RANKER 'learned': a LightGBM LambdaRank model trained inside the run on the training events only (services.ranker.train_ranker); run only when named (needs the rank extra)",
            default=False,
            prepare=learned_ranker.prepare,
        ),
        Recommender(
            "bought_together_learned",
            "service",
            learned_ranker.recommend_basket,
            "bought_together with RANKER 'learned': the basket service on the last training basket, its partners from the basket table of the model trained inside the run (the for_you_learned model: trained once for both); run only when named",
            default=False,
            prepare=learned_ranker.prepare,
            basket=True,
        ),
        Recommender(
            "bought_together_learned_visitor",
            "service",
            learned_ranker.recommend_basket_with_repeats,
            "bought_together_learned with visitor=: the visitor's repeat purchases fused in (the API's repeats=true); run only when named",
            default=False,
            prepare=learned_ranker.prepare,
            basket=True,
        ),
        Recommender(
            "for_you_similar",
            "ablation",
            _for_you_with({"similar": 1.0}),
            "for_you with the similar list only (the service before the fusion)",
            default=False,
        ),
        Recommender(
            "for_you_repeat",
            "ablation",
            _for_you_with({"repeat": 1.0}),
            "for_you with the repeat list only",
            default=False,
        ),
        Recommender(
            "for_you_co_purchase",
            "ablation",
            _for_you_with({"co_purchase": 1.0}),
            "for_you with the co-purchase list only",
            default=False,
        ),
        Recommender(
            "for_you_no_similar",
            "ablation",
            _for_you_with({"repeat": 1.0, "co_purchase": 1.0}),
            "for_you with the repeat and co-purchase lists, equal weights",
            default=False,
        ),
    ]
}
DEFAULT_RECOMMENDERS = tuple(name for name, r in RECOMMENDERS.items() if r.default)


# ---------------------------------------------------------------- scoring


VARIANTS = {
    "all": "every item of the held-out basket; lists as returned",
    "new": "held-out items not bought in training; training purchases removed from the lists first",
    "cart": "the first half of the held-out basket's lines is the cart, the basket recommenders are given it and the "
    "rest is the target; the cart removed from the lists first",
}

#: Pairs compared shopper by shopper in every variant (when both ran): (ours, theirs).
PAIRS = (
    ("for_you_learned", "for_you"),
    ("bought_together_learned", "bought_together"),
    ("bought_together_learned", "cooc_last"),
    ("bought_together", "cooc_last"),
    ("bought_together_learned_visitor", "cooc_last"),
    ("bought_together_visitor", "cooc_last"),
)


def cart_of(basket: Basket) -> tuple[list[str], set[str]]:
    """(cart, targets) of a held-out basket: its first half of distinct items in line order (at least one) as the
    cart, the rest as the targets; targets are empty for a basket of one item."""
    cut = max(len(basket.items) // 2, 1)
    return list(basket.items[:cut]), set(basket.items[cut:])


def score_lists(
    lists: Mapping[str, Sequence[str]],
    targets: Mapping[str, set[str]],
    *,
    k_max: int,
    catalogue_size: int,
    vectors: Mapping[str, np.ndarray] | None = None,
    exclude: Mapping[str, set[str]] | None = None,
    keep: int | None = None,
) -> dict:
    """Mean curves over the visitors of ``targets`` (each needs a non-empty target set). With ``keep`` (a k), also
    each visitor's recall@k and nDCG@k, in the order of ``targets``, as ``per_visitor`` (paired comparisons)."""
    sums = {name: np.zeros(k_max) for name in ("recall", "ndcg", "hit_rate", "precision")}
    squares = {name: np.zeros(k_max) for name in sums}
    mrr = mrr_squares = 0.0
    diversity_sum, diversity_n = np.zeros(k_max), np.zeros(k_max)
    shown: list[list[str]] = []
    empty = 0
    kept: dict[str, list[float]] = {"recall@%d" % keep: [], "ndcg@%d" % keep: []} if keep else {}
    for visitor, relevant in targets.items():
        ranked = list(lists.get(visitor, ()))
        if exclude is not None:
            drop = exclude.get(visitor, set())
            ranked = [item for item in ranked if item not in drop]
        ranked = metrics._top(ranked, k_max) if ranked else []
        empty += not ranked
        shown.append(ranked)
        curves = metrics.ranking_curves(ranked, relevant, k_max)
        for name in sums:
            values = np.asarray(curves[name])
            sums[name] += values
            squares[name] += values * values
        mrr += curves["mrr"][0]
        mrr_squares += curves["mrr"][0] ** 2
        if keep:
            kept["recall@%d" % keep].append(round(float(curves["recall"][keep - 1]), 6))
            kept["ndcg@%d" % keep].append(round(float(curves["ndcg"][keep - 1]), 6))
        if vectors is not None:
            for i, value in enumerate(metrics.diversity_curve(ranked, k_max, vectors)):
                if value is not None:
                    diversity_sum[i] += value
                    diversity_n[i] += 1
    n = max(len(targets), 1)
    result = {name: [round(float(v) / n, 6) for v in values] for name, values in sums.items()}
    result["mrr"] = round(mrr / n, 6)
    # Standard errors of the means over visitors (sample standard deviation / sqrt(n)).
    result["se"] = {
        name: [round(_standard_error(s, q, n), 6) for s, q in zip(sums[name], squares[name])] for name in sums
    }
    result["se"]["mrr"] = round(_standard_error(mrr, mrr_squares, n), 6)
    result["coverage"] = [round(metrics.catalogue_coverage(shown, catalogue_size, k), 6) for k in range(1, k_max + 1)]
    result["diversity"] = (
        [round(float(s / c), 6) if c else None for s, c in zip(diversity_sum, diversity_n)]
        if vectors is not None
        else None
    )
    result["users"] = len(targets)
    result["empty_lists"] = empty
    if keep:
        result["per_visitor"] = kept
    return result


#: Per-shopper values and the paired comparison are at this k (or ``k_max`` when smaller).
PAIRED_K = 10
#: What every recommender is compared against, shopper by shopper.
PAIRED_BASE = "for_you"


def paired_against(values: Mapping[str, Mapping[str, Sequence[float]]], base: str = PAIRED_BASE) -> dict:
    """Per recommender other than ``base``, per metric: the mean per-shopper difference (recommender - ``base``),
    its standard error, and how many shoppers it is better and worse for. ``values``: {recommender: {metric:
    per-shopper values, every list in the same shopper order}}; {} without ``base``."""
    if base not in values:
        return {}
    result = {}
    for name, metrics_of in values.items():
        if name == base:
            continue
        result[name] = {}
        for metric, mine in metrics_of.items():
            differences = np.asarray(mine, dtype=np.float64) - np.asarray(values[base][metric], dtype=np.float64)
            n = len(differences)
            result[name][metric] = {
                "mean_difference": round(float(differences.mean()), 6) if n else 0.0,
                "se": round(float(differences.std(ddof=1) / math.sqrt(n)), 6) if n > 1 else 0.0,
                "better": int((differences > 0).sum()),
                "worse": int((differences < 0).sum()),
                "users": n,
            }
    return result


def _standard_error(total: float, squares: float, n: int) -> float:
    if n < 2:
        return 0.0
    variance = max(squares - total * total / n, 0.0) / (n - 1)
    return math.sqrt(variance / n)


# ---------------------------------------------------------------- the run


@dataclass
class Options:
    k_max: int = 20
    users: int | None = None  # sample size (None: every eligible visitor)
    seed: int = 0
    recommenders: Sequence[str] = DEFAULT_RECOMMENDERS
    space: str = "text"


def evaluate(
    dataset: Dataset, options: Options, *, encoder=None, progress: Progress | None = None, in_place: bool = False
) -> dict:
    """Split, load the training data into the current database, encode, recommend, score: the report.

    ``in_place``: the data set is the database's own (``load_database``; see ``load_training_data``)."""
    say = progress or (lambda message: None)
    timings: dict[str, float] = {}
    loads = [_load_average()]
    started = time.perf_counter()
    unknown = sorted(set(options.recommenders) - set(RECOMMENDERS))
    if unknown:
        raise ValueError("Unknown recommender(s) %s (known: %s)." % (unknown, ", ".join(RECOMMENDERS)))
    if not dataset.products:
        raise EvaluationError("No product occurs in the events of %s: nothing to evaluate." % dataset.name)

    split = temporal_split(dataset.interactions)
    eligible = sorted(split.test)
    if not eligible:
        raise EvaluationError(
            "No visitor of %s has two or more baskets (purchases with an order id): nothing to hold out. "
            "Map the order column (--map order=COLUMN) and check the event column." % dataset.name
        )
    visitors = eligible
    if options.users is not None and options.users < len(eligible):
        visitors = sorted(random.Random(options.seed).sample(eligible, options.users))
    say(
        "split: %d training lines, %d held-out lines, %d eligible visitors, evaluating %d"
        % (len(split.train), split.held_out_lines, len(eligible), len(visitors))
    )

    t = time.perf_counter()
    shift = load_training_data(dataset, split, in_place=in_place)
    timings["load"] = time.perf_counter() - t
    say(
        "loaded %d products and %d training events in %.1f s"
        % (len(dataset.products), len(split.train), timings["load"])
    )

    if encoder is None:
        from .. import registry

        encoder = registry.get_space(options.space).encoder
    t = time.perf_counter()
    say(
        "encoding %d product texts into space %r with %s; the text is %s"
        % (len(dataset.products), options.space, encoder.version, describe_text(dataset.products))
    )
    vectors = encode_catalogue(dataset.products, encoder, space=options.space, progress=say)
    timings["encode"] = time.perf_counter() - t
    say("encoded %d product texts in %.1f s" % (len(vectors), timings["encode"]))

    depth = 2 * options.k_max
    ctx = build_context(split, [p.key for p in dataset.products], depth)
    lists: dict[str, dict[str, list[str]]] = {}
    latency: dict[str, dict[str, float]] = {}
    prepared: dict[str, dict] = {}
    for name in options.recommenders:
        recommender = RECOMMENDERS[name]
        if recommender.prepare is not None:
            say("%s: preparing" % name)
            try:
                prepared[name] = recommender.prepare(
                    ctx, progress=lambda message, name=name: say("%s: %s" % (name, message))
                )
            except (RankerUnavailable, ValueError) as exc:  # no lightgbm, or too few orders (NotEnoughData)
                raise EvaluationError("%s could not be prepared: %s" % (name, exc)) from exc
        t = time.perf_counter()
        lists[name] = {}
        calls = []
        for i, visitor in enumerate(visitors, start=1):
            call = time.perf_counter()
            lists[name][visitor] = recommender.function(ctx, visitor)
            calls.append(time.perf_counter() - call)
            if i % 500 == 0:
                say("%s: %d/%d visitors (%.0f s)" % (name, i, len(visitors), time.perf_counter() - t))
        timings["recommend:" + name] = time.perf_counter() - t
        latency[name] = _latency(calls)
        loads.append(_load_average())
        say(
            "%s: %d visitors in %.1f s (%.1f ms per visitor, p95 %.1f ms)"
            % (name, len(visitors), timings["recommend:" + name], latency[name]["mean_ms"], latency[name]["p95_ms"])
        )

    carts = {v: cart_of(split.test[v]) for v in visitors if len(split.test[v].items) > 1}
    cart_lists = _ask_for_carts(ctx, options.recommenders, lists, {v: cart for v, (cart, _) in carts.items()}, say)

    targets_all = {v: set(split.test[v].items) for v in visitors}
    bought = {v: split.bought(v) for v in visitors}
    targets_new = {v: items - bought[v] for v, items in targets_all.items() if items - bought[v]}
    catalogue_size = len(dataset.products)
    variants = {}
    paired_k = min(PAIRED_K, options.k_max)
    for variant, variant_lists, targets, exclude in (
        ("all", lists, targets_all, None),
        ("new", lists, targets_new, bought),
        ("cart", cart_lists, {v: rest for v, (_, rest) in carts.items()}, {v: set(c) for v, (c, _) in carts.items()}),
    ):
        results = {
            name: score_lists(
                variant_lists[name],
                targets,
                k_max=options.k_max,
                catalogue_size=catalogue_size,
                vectors=vectors,
                exclude=exclude,
                keep=paired_k,
            )
            for name in options.recommenders
        }
        per_shopper = {name: results[name].pop("per_visitor") for name in results}
        variants[variant] = {
            "description": VARIANTS[variant],
            "users": len(targets),
            "results": results,
            # every shopper's recall@k and nDCG@k per recommender (``report.write`` puts them in per_shopper.csv.gz)
            "per_shopper": {"k": paired_k, "visitors": list(targets), "values": per_shopper},
            "paired_vs_%s" % PAIRED_BASE: paired_against(per_shopper),
        }
        for ours, theirs in PAIRS:
            if ours in variant_lists and theirs in variant_lists:
                variants[variant]["paired_%s_vs_%s" % (ours, theirs)] = learned_ranker.paired(
                    variant_lists[ours], variant_lists[theirs], targets, exclude=exclude
                )
    if "for_you_learned" in prepared:
        prepared["for_you_learned"]["candidate_recall_all"] = learned_ranker.candidate_recall(targets_all)
    timings["total"] = time.perf_counter() - started

    test_items = [len(split.test[v].items) for v in visitors]
    repeat_share = [len(targets_all[v] & bought[v]) / len(targets_all[v]) for v in visitors]
    return {
        "created_at": timezone.now().isoformat(timespec="seconds"),
        "dataset": {
            "name": dataset.name,
            **dataset.info,
            "lines": len(dataset.interactions),
            "visitors": len({visitor_of(r) for r in dataset.interactions}),
            "items": catalogue_size,
            "baskets": len({(visitor_of(r), r.order_id) for r in dataset.interactions if r.order_id}),
            "eligible_visitors": len(eligible),
            "evaluated_visitors": len(visitors),
            "sample": options.users is not None and options.users < len(eligible),
            "seed": options.seed,
            "training_lines": len(split.train),
            "held_out_lines": split.held_out_lines,
            "mean_test_basket_items": round(float(np.mean(test_items)), 2),
            "mean_repeat_share_of_test_basket": round(float(np.mean(repeat_share)), 4),
            "time_shift_days": round(shift.total_seconds() / 86400, 2),
        },
        "protocol": __doc__.split("Protocol (temporal leave-last-basket-out):")[1].split("Recommenders (")[0].strip(),
        "k_max": options.k_max,
        "depth": depth,
        "encoder": getattr(encoder, "version", str(encoder)),
        "machine": machine(),
        "load_average_1min": {"start": loads[0], "min": min(loads), "max": max(loads), "end": loads[-1]},
        "timings_s": {name: round(value, 1) for name, value in timings.items()},
        "latency_per_visitor": latency,
        "recommenders": {
            name: {"kind": RECOMMENDERS[name].kind, "description": RECOMMENDERS[name].description}
            for name in options.recommenders
        },
        "variants": variants,
        "prepared": prepared,
    }


def _ask_for_carts(
    ctx: Context,
    names: Sequence[str],
    lists: Mapping[str, Mapping[str, list[str]]],
    carts: Mapping[str, list[str]],
    say: Progress,
) -> dict[str, dict[str, list[str]]]:
    """The lists of the ``cart`` variant: the basket recommenders asked again with each visitor's cart as the
    basket, every other recommender's lists as they were (they do not read a basket)."""
    result = {name: lists[name] for name in names}
    ctx.carts = dict(carts)
    try:
        for name in names:
            if RECOMMENDERS[name].basket:
                started = time.perf_counter()
                result[name] = {visitor: RECOMMENDERS[name].function(ctx, visitor) for visitor in carts}
                say("%s: %d carts in %.1f s" % (name, len(carts), time.perf_counter() - started))
    finally:
        ctx.carts = None
    return result


def _load_average() -> float:
    """The 1-minute load average (other jobs on the machine slow every timing here); 0 where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0


def _latency(seconds: Sequence[float]) -> dict[str, float]:
    """Mean, median and 95th percentile of per-visitor call times, in milliseconds (cached lists count as ~0)."""
    values = np.asarray(seconds, dtype=float) * 1000 if len(seconds) else np.zeros(1)
    return {
        "mean_ms": round(float(values.mean()), 1),
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p95_ms": round(float(np.percentile(values, 95)), 1),
    }


def machine() -> str:
    try:
        import torch

        device = "cuda: %s" % torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001 - torch missing or broken: the report still says the CPU
        device = "cpu"
    from .. import storage

    server = storage.server_version()
    return "%s, %s, %d cores, %s; PostgreSQL %s" % (
        platform.platform(terse=True),
        platform.processor() or platform.machine(),
        os.cpu_count() or 0,
        device,
        server,
    )


@transaction.atomic
def evaluate_and_roll_back(dataset: Dataset, options: Options, **kwargs) -> dict:
    """``evaluate`` inside a transaction that is rolled back (for a live database: it keeps nothing).

    With ``in_place=True`` the data set is the database's own: its events are set aside and the training
    part written back for the run, all undone at the end. The rows stay locked meanwhile."""
    try:
        return evaluate(dataset, options, **kwargs)
    finally:
        transaction.set_rollback(True)
