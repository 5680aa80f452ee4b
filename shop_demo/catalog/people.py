"""Demo people and their shopping histories, deterministic for a catalogue and a seed.

``SHOPPERS`` are thirty demo customers, each with favourite categories;
``STAFF`` are a description reviewer and a shop manager. ``plan_history``
turns a catalogue into a list of ``PlannedEvent`` (no database): sessions of
views, clicks on recommendations, searches and adds to cart spread over the
last ``days`` days (more of them recently), and orders whose baskets share an
order id. Baskets have co-purchase structure: a product is often bought with
its *partner*, the most popular product of the same colour in a complementary
category (a red mug with a red water bottle, a t-shirt with sneakers), so
"frequently bought together" has real signal. Popularity inside a category
follows a Zipf law, and a few "hits" sell mostly in the last week, so
"trending" differs from all-time best sellers.

Every planned event has a stable idempotency key (``demo:<who>:<n>``): seeding
twice stores nothing twice.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

DEMO_PASSWORD = "demo"
EMAIL_DOMAIN = "demo.invalid"
KEY_PREFIX = "demo:"


@dataclass(frozen=True)
class Shopper:
    username: str
    first_name: str
    likes: tuple[str, ...]  # category slugs, most liked first


@dataclass(frozen=True)
class StaffMember:
    username: str
    first_name: str
    last_name: str
    role: str
    group: str


SHOPPERS: tuple[Shopper, ...] = (
    Shopper("alice", "Alice", ("mugs", "plants", "lamps")),
    Shopper("bob", "Bob", ("sneakers", "t-shirts", "hats")),
    Shopper("carol", "Carol", ("lamps", "chairs")),
    Shopper("dave", "Dave", ("headphones", "watches", "backpacks")),
    Shopper("erin", "Erin", ("bottles", "backpacks", "umbrellas")),
    Shopper("frank", "Frank", ("watches", "sneakers")),
    Shopper("grace", "Grace", ("plants", "mugs")),
    Shopper("heidi", "Heidi", ("t-shirts", "hats", "umbrellas")),
    Shopper("ivan", "Ivan", ("chairs", "lamps", "plants")),
    Shopper("judy", "Judy", ("hats", "t-shirts")),
    Shopper("karl", "Karl", ("backpacks", "bottles", "headphones")),
    Shopper("lena", "Lena", ("mugs", "bottles")),
    Shopper("mike", "Mike", ("sneakers", "backpacks")),
    Shopper("nina", "Nina", ("umbrellas", "hats", "backpacks")),
    Shopper("oscar", "Oscar", ("headphones", "t-shirts")),
    Shopper("peggy", "Peggy", ("plants", "lamps", "mugs")),
    Shopper("quinn", "Quinn", ("watches", "headphones")),
    Shopper("rosa", "Rosa", ("t-shirts", "sneakers", "hats")),
    Shopper("sam", "Sam", ("bottles", "mugs", "backpacks")),
    Shopper("tara", "Tara", ("chairs", "plants")),
    Shopper("umar", "Umar", ("backpacks", "umbrellas", "sneakers")),
    Shopper("vera", "Vera", ("lamps", "mugs", "chairs")),
    Shopper("walt", "Walt", ("watches", "backpacks")),
    Shopper("xena", "Xena", ("hats", "umbrellas")),
    Shopper("yuri", "Yuri", ("headphones", "sneakers", "t-shirts")),
    Shopper("zoe", "Zoe", ("mugs", "t-shirts", "plants")),
    Shopper("amir", "Amir", ("sneakers", "watches", "headphones")),
    Shopper("bea", "Bea", ("plants", "chairs", "lamps")),
    Shopper("cole", "Cole", ("bottles", "umbrellas")),
    Shopper("dina", "Dina", ("t-shirts", "mugs", "bottles")),
)

REVIEWERS_GROUP = "Description reviewers"
MANAGERS_GROUP = "Shop managers"
STAFF: tuple[StaffMember, ...] = (
    StaffMember("reviewer", "Riley", "Reviewer", "reviews description drafts (edit, approve, reject)", REVIEWERS_GROUP),
    StaffMember(
        "manager",
        "Morgan",
        "Manager",
        "reviews and publishes descriptions, manages the catalogue and recommendations in the admin",
        MANAGERS_GROUP,
    ),
)
DEMO_USERNAMES = frozenset(s.username for s in SHOPPERS) | frozenset(s.username for s in STAFF)

#: What goes with what: a product's partner (bought with it) comes from these categories.
COMPLEMENTS: dict[str, tuple[str, ...]] = {
    "mugs": ("bottles", "plants"),
    "t-shirts": ("sneakers", "hats"),
    "sneakers": ("t-shirts", "backpacks"),
    "backpacks": ("bottles", "umbrellas"),
    "lamps": ("chairs", "plants"),
    "chairs": ("lamps",),
    "watches": ("headphones",),
    "hats": ("t-shirts", "umbrellas"),
    "bottles": ("backpacks", "mugs"),
    "plants": ("mugs", "lamps"),
    "umbrellas": ("hats", "backpacks"),
    "headphones": ("backpacks", "watches"),
}

#: Search words a shopper types for a category.
SEARCH_WORDS: dict[str, tuple[str, ...]] = {
    "mugs": ("mug", "coffee mug", "stoneware mug"),
    "t-shirts": ("t-shirt", "linen tee", "organic cotton t-shirt"),
    "sneakers": ("sneakers", "leather sneakers", "trainers"),
    "backpacks": ("backpack", "laptop backpack", "waterproof bag"),
    "lamps": ("table lamp", "bedside lamp", "brass lamp"),
    "chairs": ("chair", "oak chair", "dining chair"),
    "watches": ("watch", "titanium watch", "leather strap watch"),
    "hats": ("hat", "wool hat", "straw hat"),
    "bottles": ("water bottle", "steel bottle", "glass bottle"),
    "plants": ("plant", "houseplant", "terracotta pot"),
    "umbrellas": ("umbrella", "compact umbrella", "golf umbrella"),
    "headphones": ("headphones", "noise cancelling headphones", "wireless headphones"),
}

ANONYMOUS_SHOPPERS = 40


@dataclass(frozen=True)
class CatalogueProduct:
    """The few fields of a product that the plan needs."""

    key: str
    slug: str
    category: str  # category slug
    colour: str
    in_stock: bool


@dataclass(frozen=True)
class PlannedEvent:
    event: str
    key: str  # idempotency key
    username: str | None  # a demo user, or None for an anonymous session
    session_key: str
    item: str | None
    at: datetime
    order_id: str = ""
    quantity: int = 1
    query: str = ""
    source: str = ""


class _Catalogue:
    """Products by category, ranked by (deterministic) popularity, and each product's partner."""

    def __init__(self, products: list[CatalogueProduct], rng: random.Random):
        self.by_category: dict[str, list[CatalogueProduct]] = {}
        for product in sorted(products, key=lambda p: p.slug):
            self.by_category.setdefault(product.category, []).append(product)
        for ranked in self.by_category.values():
            rng.shuffle(ranked)  # rank 0 is the category's best seller
        self.categories = sorted(self.by_category)
        self.weights = {c: [1.0 / (rank + 1) ** 1.1 for rank in range(len(p))] for c, p in self.by_category.items()}
        self.rank = {p.key: rank for ranked in self.by_category.values() for rank, p in enumerate(ranked)}
        # A few hits: products outside the all-time top that sell mostly this week.
        self.hits = set()
        for category in self.categories[::3]:
            ranked = self.by_category[category]
            if len(ranked) > 3:
                self.hits.add(ranked[3 + rng.randrange(len(ranked) - 3)].key)

    def pick(self, rng: random.Random, category: str, *, recent: bool) -> CatalogueProduct:
        ranked = self.by_category[category]
        if recent:
            hits = [p for p in ranked if p.key in self.hits]
            if hits and rng.random() < 0.35:
                return hits[0]
        return rng.choices(ranked, weights=self.weights[category])[0]

    def partner(self, product: CatalogueProduct) -> CatalogueProduct | None:
        """The most popular in-stock product of the same colour in a complementary category."""
        options = [c for c in COMPLEMENTS.get(product.category, ()) if c in self.by_category]
        if not options:
            return None
        category = options[self.rank[product.key] % len(options)]
        candidates = [p for p in self.by_category[category] if p.in_stock]
        same_colour = [p for p in candidates if p.colour == product.colour]
        chosen = (same_colour or candidates)[:1]
        return chosen[0] if chosen else None


def plan_history(
    products: list[CatalogueProduct], *, now: datetime, seed: int = 7, days: int = 60
) -> list[PlannedEvent]:
    """The demo history for ``products``: the same catalogue and seed give the same events (times relative to ``now``)."""
    rng = random.Random(seed)
    catalogue = _Catalogue(list(products), rng)
    if not catalogue.categories:
        return []
    events: list[PlannedEvent] = []
    for shopper in SHOPPERS:
        likes = tuple(c for c in shopper.likes if c in catalogue.by_category) or tuple(catalogue.categories[:1])
        for session in range(rng.randint(7, 13)):
            _plan_session(
                events, rng, catalogue, shopper.username, "demo-%s-%d" % (shopper.username, session), likes, now, days
            )
    for number in range(ANONYMOUS_SHOPPERS):
        likes = tuple(rng.sample(catalogue.categories, min(2, len(catalogue.categories))))
        _plan_session(events, rng, catalogue, None, "demo-anon-%d" % number, likes, now, days)
    counters: dict[str, int] = {}
    keyed = []
    for event in events:  # stable keys: per visitor, in plan order
        who = event.username or event.session_key
        counters[who] = counters.get(who, 0) + 1
        keyed.append(dataclasses.replace(event, key="%s%s:%d" % (KEY_PREFIX, who, counters[who])))
    return keyed


def _plan_session(events, rng, catalogue: _Catalogue, username, session, likes, now, days) -> None:
    days_ago = days * rng.random() ** 1.7  # more sessions recently
    at = now - timedelta(days=days_ago) - timedelta(minutes=rng.randint(5, 600))
    at = min(at, now - timedelta(minutes=30))
    recent = days_ago < 7

    def add(event: str, item: CatalogueProduct | None = None, **fields):
        nonlocal at
        at += timedelta(seconds=rng.randint(20, 240))
        events.append(
            PlannedEvent(
                event=event,
                key="",
                username=username,
                session_key="" if username else session,
                item=item.key if item else None,
                at=at,
                **fields,
            )
        )

    if rng.random() < 0.3:
        add("search", query=rng.choice(SEARCH_WORDS.get(likes[0], (likes[0],))))
    viewed: list[CatalogueProduct] = []
    for _ in range(rng.randint(2, 6)):
        category = rng.choice(likes) if rng.random() < 0.85 else rng.choice(catalogue.categories)
        product = catalogue.pick(rng, category, recent=recent)
        if viewed and rng.random() < 0.3:  # arrived through a recommendation
            add("click", product, source=rng.choice(("similar", "for_you", "trending", "bought_together")))
        add("view", product, source="product_page")
        viewed.append(product)
    cart: list[CatalogueProduct] = []
    for product in dict.fromkeys(viewed):
        if product.in_stock and rng.random() < 0.35:
            add("add_to_cart", product, source="product_page")
            cart.append(product)
    if not cart or rng.random() > 0.6:
        return
    basket = list(cart)
    for product in cart:
        partner = catalogue.partner(product)
        if partner is not None and partner not in basket and rng.random() < 0.65:
            add("view", partner, source="bought_together")
            add("add_to_cart", partner, source="bought_together")
            basket.append(partner)
    order = "order-%s" % session
    for product in basket:
        quantity = 2 if product.category in ("mugs", "bottles") and rng.random() < 0.3 else 1
        add("purchase", product, order_id=order, quantity=quantity, source="checkout")
