"""Synthetic catalogue for the query benchmark: items, text and clustered embedding vectors.

Everything is deterministic for a given seed and size. Nothing here touches the database.

Items
    20 regular categories of about 4.975% each and one "rare" category of 0.5%. Each category has
    50 sub-clusters (product lines). Prices are log-normal (median about 40), 90% are in stock, 99%
    are eligible, 20% belong to a variant group of 2-4 items.

Text
    Title of 8 words, description of 20 words, drawn from a vocabulary of about 1,600 words:
    the category's own topical words (40 per category, with per-sub-cluster favourites) and shared
    words with a Zipf distribution, so keyword queries match anything from a handful of items
    to a few percent of the catalogue.

Vectors (one set per space, unit length)
    ``category centre + 0.7 * sub-cluster centre + 0.6 * (32-d latent through a fixed random
    basis) + 0.25 * isotropic noise``, then L2-normalised. Cosine similarity is about 0.78 within
    a sub-cluster, 0.5 within a category and 0 across categories; the latent part gives the
    neighbourhoods an intrinsic dimension of about 32 (real sentence/CLIP embeddings are far from
    isotropic), so the ANN problem is neither trivial (a few tight blobs) nor uniform noise.
    The two spaces share the category and sub-cluster of an item but have independent centres,
    bases and noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CATEGORY_NAMES = [
    "chairs",
    "tables",
    "lamps",
    "sofas",
    "rugs",
    "mirrors",
    "shelves",
    "beds",
    "desks",
    "cabinets",
    "curtains",
    "cushions",
    "vases",
    "clocks",
    "planters",
    "kettles",
    "cookware",
    "knives",
    "towels",
    "bedding",
]
RARE_CATEGORY = "telescopes"
RARE_SHARE = 0.005
SUBCLUSTERS_PER_CATEGORY = 50
TOPICAL_WORDS_PER_CATEGORY = 40
SHARED_WORDS = 800
LATENT_DIM = 32

REAL_WORDS = """
wooden oak walnut pine bamboo rattan wicker leather velvet linen cotton wool jute marble granite
ceramic porcelain stoneware glass crystal brass copper steel iron aluminium chrome matte glossy
polished brushed rustic vintage modern classic nordic industrial minimalist elegant compact
foldable stackable adjustable ergonomic cordless rechargeable dimmable waterproof handmade
organic recycled sturdy lightweight premium deluxe luxury everyday heavy soft warm cosy bright
natural black white grey charcoal ivory cream beige sand olive sage emerald navy cobalt teal
mustard ochre terracotta blush burgundy crimson amber golden silver round square oval large small
medium tall narrow wide slim double single king queen outdoor indoor garden kitchen bathroom
bedroom office living dining hallway nursery patio balcony set pair pack collection edition
""".split()

SYLLABLES = [
    "ba",
    "ko",
    "ri",
    "ta",
    "len",
    "mor",
    "vi",
    "sa",
    "nu",
    "pel",
    "dra",
    "qui",
    "ost",
    "fen",
    "lu",
    "ga",
    "tor",
    "mi",
    "zen",
    "ca",
    "ro",
    "bel",
    "dun",
    "ha",
    "ver",
    "ti",
    "ne",
    "sol",
]


@dataclass
class Catalogue:
    n: int
    category: np.ndarray  # int, index into categories
    categories: list[str]
    subcluster: np.ndarray  # int, global sub-cluster id
    price: np.ndarray  # float, 2 decimals
    in_stock: np.ndarray  # bool
    eligible: np.ndarray  # bool
    group_key: list[str]
    titles: list[str]
    texts: list[str]
    vocabulary: list[str]
    topical: list[list[str]]  # per category
    shared: list[str]

    def keys(self) -> list[str]:
        return [str(i + 1) for i in range(self.n)]


def _pseudo_words(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    words = []
    while len(words) < count:
        word = "".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 5))))
        if word not in taken and len(word) >= 4:
            taken.add(word)
            words.append(word)
    return words


def make_catalogue(n: int, seed: int = 0) -> Catalogue:
    rng = np.random.default_rng(seed)
    categories = CATEGORY_NAMES + [RARE_CATEGORY]
    n_regular = len(CATEGORY_NAMES)
    rare = rng.random(n) < RARE_SHARE
    category = np.where(rare, n_regular, rng.integers(0, n_regular, n))
    subcluster = category * SUBCLUSTERS_PER_CATEGORY + rng.integers(0, SUBCLUSTERS_PER_CATEGORY, n)
    price = np.round(np.exp(rng.normal(np.log(40.0), 1.0, n)).clip(0.5, 50_000), 2)
    in_stock = rng.random(n) < 0.9
    eligible = rng.random(n) < 0.99

    group_key = [""] * n
    grouped = np.flatnonzero(rng.random(n) < 0.2)
    position, group = 0, 0
    while position < len(grouped):
        size = int(rng.integers(2, 5))
        for index in grouped[position : position + size]:
            group_key[index] = "g%d" % group
        position, group = position + size, group + 1

    taken = set(REAL_WORDS) | set(categories)
    shared = list(REAL_WORDS) + _pseudo_words(rng, SHARED_WORDS - len(REAL_WORDS), taken)
    topical = [_pseudo_words(rng, TOPICAL_WORDS_PER_CATEGORY, taken) for _ in categories]
    zipf = 1.0 / np.arange(1, len(shared) + 1)
    shared_p = zipf / zipf.sum()
    shared_order = rng.permutation(len(shared))
    shared_ranked = [shared[i] for i in shared_order]

    # Per item: 8 title words and 20 description words, half topical (sub-cluster favourites
    # first), half shared (Zipf).
    n_words = 28
    is_topical = rng.random((n, n_words)) < 0.45
    shared_pick = rng.choice(len(shared_ranked), size=(n, n_words), p=shared_p)
    # Topical word: favour 8 words of the item's sub-cluster out of the category's 40.
    sub_local = subcluster % SUBCLUSTERS_PER_CATEGORY
    favourite = (sub_local[:, None] * 3 + rng.integers(0, 8, (n, n_words))) % TOPICAL_WORDS_PER_CATEGORY
    anywhere = rng.integers(0, TOPICAL_WORDS_PER_CATEGORY, (n, n_words))
    topical_pick = np.where(rng.random((n, n_words)) < 0.7, favourite, anywhere)
    titles, texts = [], []
    for i in range(n):
        own = topical[category[i]]
        words = [
            own[topical_pick[i, j]] if is_topical[i, j] else shared_ranked[shared_pick[i, j]] for j in range(n_words)
        ]
        title = " ".join(words[:8]).capitalize()
        description = " ".join(words[8:]) + "."
        titles.append(title)
        texts.append("%s. %s. %s" % (title, categories[category[i]], description))
    vocabulary = shared_ranked + [w for words in topical for w in words] + categories
    return Catalogue(
        n=n,
        category=category,
        categories=categories,
        subcluster=subcluster,
        price=price,
        in_stock=in_stock,
        eligible=eligible,
        group_key=group_key,
        titles=titles,
        texts=texts,
        vocabulary=vocabulary,
        topical=topical,
        shared=shared_ranked,
    )


def clustered_vectors(catalogue: Catalogue, dim: int, seed: int) -> np.ndarray:
    """Unit vectors (float32, n x dim) clustered by category and sub-cluster (see module doc)."""
    rng = np.random.default_rng(seed)
    n_categories = len(catalogue.categories)
    n_sub = n_categories * SUBCLUSTERS_PER_CATEGORY
    centres = _unit(rng.standard_normal((n_categories, dim), dtype=np.float32))
    subs = _unit(rng.standard_normal((n_sub, dim), dtype=np.float32))
    basis = rng.standard_normal((LATENT_DIM, dim), dtype=np.float32) / np.sqrt(dim)
    out = np.empty((catalogue.n, dim), dtype=np.float32)
    for start in range(0, catalogue.n, 50_000):
        stop = min(start + 50_000, catalogue.n)
        rows = slice(start, stop)
        latent = rng.standard_normal((stop - start, LATENT_DIM), dtype=np.float32) / np.sqrt(LATENT_DIM)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32) / np.sqrt(dim)
        out[rows] = (
            centres[catalogue.category[rows]]
            + 0.7 * subs[catalogue.subcluster[rows]]
            + 0.6 * (latent @ basis)
            + 0.25 * noise
        )
    return _unit(out)


def perturbed(vectors: np.ndarray, rng: np.random.Generator, scale: float = 0.3) -> np.ndarray:
    """Query vectors near the given ones (not identical to any stored vector)."""
    noise = rng.standard_normal(vectors.shape).astype(np.float32) / np.sqrt(vectors.shape[1])
    return _unit(vectors + scale * noise)


def search_queries(catalogue: Catalogue, count: int, seed: int, typo_rate: float = 0.1) -> list[str]:
    """``count`` distinct shopper queries of 1-3 words (category, topical and shared words, some typos)."""
    rng = np.random.default_rng(seed)
    shared_head = catalogue.shared[:300]
    queries: list[str] = []
    seen: set[str] = set()
    while len(queries) < count:
        category = int(rng.integers(0, len(catalogue.categories)))
        words = []
        for _ in range(int(rng.choice([1, 2, 3], p=[0.25, 0.45, 0.30]))):
            roll = rng.random()
            if roll < 0.45:
                words.append(catalogue.topical[category][int(rng.integers(0, TOPICAL_WORDS_PER_CATEGORY))])
            elif roll < 0.6:
                words.append(catalogue.categories[category])
            else:
                words.append(shared_head[int(rng.integers(0, len(shared_head)))])
        if rng.random() < typo_rate:
            j = int(rng.integers(0, len(words)))
            word = words[j]
            if len(word) >= 5:
                k = int(rng.integers(1, len(word) - 2))
                words[j] = word[:k] + word[k + 1] + word[k] + word[k + 2 :]
        query = " ".join(words)
        if query not in seen:
            seen.add(query)
            queries.append(query)
    return queries


#: Attribute values of the synthetic items' metadata (query understanding and facets: ``query.py`` phase
#: "understanding"); colour and material words are also words of the items' text.
COLOURS = ("black", "white", "grey", "ivory", "cream", "beige", "olive", "navy", "teal", "mustard", "blush", "crimson")
MATERIALS = ("oak", "walnut", "rattan", "velvet", "linen", "cotton", "wool", "marble", "ceramic", "brass")


def item_attributes(catalogue: Catalogue, seed: int) -> list[dict[str, str]]:
    """Per item a metadata ``{"colour": ..., "material": ...}`` (uniform, deterministic for the seed)."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, len(COLOURS), catalogue.n)
    materials = rng.integers(0, len(MATERIALS), catalogue.n)
    return [{"colour": COLOURS[c], "material": MATERIALS[m]} for c, m in zip(colours, materials)]


def understood_queries(catalogue: Catalogue, count: int, seed: int) -> list[str]:
    """``count`` distinct queries that query understanding reads: a category (singular or plural) with a colour,
    a material and/or a price phrase, plus one shared or topical word (so every query is new to the cache)."""
    rng = np.random.default_rng(seed)
    queries: list[str] = []
    seen: set[str] = set()
    while len(queries) < count:
        category = int(rng.integers(0, len(catalogue.categories)))
        name = catalogue.categories[category]
        words = [name if rng.random() < 0.5 else name.rstrip("s")]
        if rng.random() < 0.6:
            words.insert(0, COLOURS[int(rng.integers(0, len(COLOURS)))])
        if rng.random() < 0.4:
            words.insert(0, MATERIALS[int(rng.integers(0, len(MATERIALS)))])
        roll = rng.random()
        if roll < 0.3:
            words.append("under %d" % int(rng.choice([20, 30, 50, 100])))
        elif roll < 0.4:
            low = int(rng.choice([10, 20, 40]))
            words.append("between %d and %d" % (low, low * 3))
        extra = catalogue.topical[category] if rng.random() < 0.5 else catalogue.shared[:300]
        words.insert(int(rng.integers(0, len(words))), extra[int(rng.integers(0, len(extra)))])
        query = " ".join(words)
        if query not in seen:
            seen.add(query)
            queries.append(query)
    return queries


def _unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)).astype(np.float32)
