"""The single settings entry point: ``settings.RAGREC``.

Works like ``rest_framework.settings``: documented defaults, user overrides
merged on top, dotted paths imported on first access, and the whole object
reloaded when a test changes ``RAGREC`` with ``override_settings``. The
settings with a validator (``VALIDATORS``) are read checked and normalised;
the system checks report the same problems at start-up (``checks.py``).

    from ragrec_django.conf import ragrec_settings
    ragrec_settings.ITEM_MODEL          # "catalog.Product"
    ragrec_settings.ADAPTER             # the adapter *class*, imported lazily
    ragrec_settings.EXPERIMENTS         # [Experiment, ...]; ImproperlyConfigured when invalid
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from dataclasses import dataclass
from numbers import Real
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

DEFAULTS: dict[str, Any] = {
    # The shop's item model as "app_label.ModelName". Never modified by ragrec.
    "ITEM_MODEL": None,
    # Adapter class mapping an item to text, image, category, price, stock, URL.
    "ADAPTER": "ragrec_django.adapters.ItemAdapter",
    # Encoder aliases, like Django's CACHES: {"alias": {"BACKEND": path, "OPTIONS": {...}}}.
    "ENCODERS": {
        "minilm": {
            "BACKEND": "ragrec_django.ml.text.TransformerTextEncoder",
            "OPTIONS": {"model": "sentence-transformers/all-MiniLM-L6-v2", "device": "auto"},
        },
        "clip": {
            "BACKEND": "ragrec_django.ml.clip.OpenClipEncoder",
            "OPTIONS": {"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "device": "auto"},
        },
    },
    # Embedding spaces: each is one encoder alias applied to one modality of the item. Optional per space:
    # "INDEX": "halfvec" (default) or "binary" (binary-quantized HNSW + exact re-ranking; applies to
    # generations built afterwards) and "RERANK_DEPTH" (overrides HNSW["RERANK_DEPTH"]); checked by ragrec.E005.
    "SPACES": {
        "text": {"ENCODER": "minilm", "MODALITY": "text"},
        "image": {"ENCODER": "clip", "MODALITY": "image"},
        "clip-text": {"ENCODER": "clip", "MODALITY": "text"},
    },
    # Stored vector type: "halfvec" (2 bytes/dim, half the size of index and table) or "vector".
    "VECTOR_TYPE": "halfvec",
    # HNSW build and search parameters (pgvector). EF_SEARCH_BROAD serves queries filtered only by
    # eligibility and exclusions (the common case); queries filtered by price, stock or category get
    # EF_SEARCH divided by the share of items the filter passes, up to EF_SEARCH_MAX (a narrow filter
    # discards most candidates the index scan visits; see docs/benchmarks.md). RERANK_DEPTH: candidates a
    # binary-quantized index (a space's "INDEX": "binary", docs/scaling.md) returns for exact re-ranking.
    # EXACT_CACHE_ROWS / EXACT_CACHE_SECONDS: vectors per generation each process keeps for the exact ranking
    # of selective filters (a category), and how long before other processes' writes are seen (0 rows: off;
    # storage/vector_cache.py, docs/search.md). EF_SEARCH_SCALE_ROWS: the three EF_SEARCH values hold for a
    # generation of up to this many vectors; a bigger one's grow with the square root of its size (0: never).
    # SMALL_CATEGORY_ROWS: the most items also ranked exactly beside the index's answer: the anchor's category
    # when it is this small (similar items), and of the QUERY_CATEGORIES whose centroids are nearest a query vector
    # (search, photo search, for you), nearest first, as many as fit together; so a small product line unlike the
    # rest of a large catalogue is not lost in the graph (0: never; storage/ann.py, storage/centroids.py).
    "HNSW": {
        "M": 16,
        "EF_CONSTRUCTION": 64,
        "EF_SEARCH": 100,
        "EF_SEARCH_BROAD": 60,
        "EF_SEARCH_MAX": 400,
        "EF_SEARCH_SCALE_ROWS": 100_000,
        "RERANK_DEPTH": 100,
        "EXACT_CACHE_ROWS": 200_000,
        "EXACT_CACHE_SECONDS": 300,
        "SMALL_CATEGORY_ROWS": 5_000,
        "QUERY_CATEGORIES": 128,
    },
    # Enqueue re-encoding when an item is saved (after commit).
    "AUTO_ENCODE": True,
    # Items per Celery encoding task.
    "ENCODE_CHUNK_SIZE": 256,
    # Celery queue used for encoding tasks (route it to GPU workers in the host's Celery config).
    "ENCODE_QUEUE": None,
    # Celery queue per workload (docs/scaling.md, "Celery topology"): None keeps every task on Celery's
    # default queue; {} (or some renamed) sends encoding by space modality to {"image": "gpu-image",
    # "text": "gpu-text"} and the rest to "cpu" (ragrec_django.queues). Overrides ENCODE_QUEUE.
    "TASK_QUEUES": None,
    # Conservative encode rate of one worker, items per second per modality: a chunk of ENCODE_CHUNK_SIZE
    # items must take less than the broker's visibility_timeout (system check ragrec.W006).
    "ENCODE_ITEMS_PER_SECOND": {"text": 20, "image": 5},
    # Times a task may be redelivered after a worker died on it before its items are marked failed.
    "MAX_REDELIVERIES": 3,
    # Images larger than this many pixels are refused (decompression-bomb guard).
    "MAX_IMAGE_PIXELS": 40_000_000,
    # Image formats accepted for product images and photo search.
    "IMAGE_FORMATS": ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"],
    # Named serving configurations (ranking rules); rows in the admin override these by name.
    "SERVING_CONFIGS": {"default": {}},
    # Weights of the spaces fused for "similar items" (spaces not configured are skipped).
    "SIMILAR_WEIGHTS": {"text": 0.5, "image": 0.5},
    # Retrievers fused (reciprocal rank fusion) for text search, with their weights: "keyword"
    # (full-text), "text" (query vs the text space) and "image" (CLIP text tower vs the image space).
    "SEARCH_WEIGHTS": {"keyword": 1.0, "text": 1.0, "image": 0.7},
    # PostgreSQL text search configuration for keyword search (the items of a language SEARCH_LANGUAGES names
    # use that language's).
    "SEARCH_LANGUAGE": "english",
    # Full text per item language: {"de": "german", "zh": {"CONFIG": "simple", "TOKENISER": "jieba"}}, language
    # code (the adapter's get_language) -> a text-search configuration, or a dict of CONFIG and/or TOKENISER
    # (each defaulting to SEARCH_LANGUAGE / SEARCH_TOKENISER). Items of other languages, or of none, use those
    # two. Queries search every configured language at once. Reindex after changing it (ragrec_reindex).
    "SEARCH_LANGUAGES": {},
    # Word boundaries for Chinese, Japanese and Korean text before full-text indexing and search: "none"
    # (PostgreSQL's), "bigram" (character pairs, no dictionary) or "jieba" (Chinese words; the "multilingual"
    # extra). Reindex after changing it (ragrec_reindex). See docs/search.md, "More than English".
    "SEARCH_TOKENISER": "none",
    # Keyword search ranks at most this many matching items (a query of common words can match
    # much of a large catalogue; ranking them all costs ~3 us per item).
    "KEYWORD_RANK_LIMIT": 2000,
    # Item attributes (keys of the adapter's metadata) that search understands in queries ("blue",
    # "linen") and offers as facets, next to category and price. See docs/search.md.
    "SEARCH_ATTRIBUTES": ["colour", "color", "material", "size", "brand"],
    # Score multiplier per attribute of the query an item has (1.0: x2 for "blue", x4 for "blue linen").
    "SEARCH_ATTRIBUTE_BOOST": 1.0,
    # Upper bounds of the price facet's bands (the last band is "over" the last bound).
    "SEARCH_PRICE_BANDS": [10, 25, 50, 100, 250, 500],
    # Currency symbol in search reasons and price facets ("under £30"), when the shopper typed none.
    "SEARCH_CURRENCY": "",
    # Days search analytics (SearchLog rows) are kept.
    "SEARCH_LOG_DAYS": 90,
    # Event weights for trending and "for you" profiles.
    "EVENT_WEIGHTS": {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 5.0},
    # Half-lives of the time decay of trending popularity and of "for you" history.
    "TRENDING_HALF_LIFE_HOURS": 72,
    "PROFILE_HALF_LIFE_HOURS": 24 * 14,
    # Candidate lists fused (reciprocal rank fusion) for "for you", with their weights: "similar"
    # (near the history profile), "repeat" (the visitor's own purchases), "co_purchase" (bought
    # with what they bought). 0 leaves a list out. The defaults won the offline evaluation on real
    # orders (docs/evaluation.md); {"similar": 1.0} alone never shows what the visitor bought.
    "FOR_YOU_WEIGHTS": {"similar": 0.25, "repeat": 1.25, "co_purchase": 1.0},
    # Ranking per recommender: "fusion" (the weighted lists above) or "learned" (the active model of
    # manage.py ragrec_train_ranker; fusion serves while there is none). One name for all, or
    # {"for_you": "learned"}; "similar" (similar items) has its own model: ragrec_train_ranker --recommender
    # similar. See ragrec_django.services.ranker, services.item_candidates and docs/evaluation.md. A serving configuration's
    # "ranker" rule overrides it for the requests served with that configuration (an A/B variant's CONFIG).
    "RANKER": "fusion",
    # The learned ranker reads the signals shared by all visitors from tables refreshed by
    # ragrec_train_ranker --signals / tasks.refresh_ranker_signals_task (e.g. every 15 minutes) and by each
    # training; older than this many hours (or missing), it aggregates the event table per request instead.
    "RANKER_SIGNALS_MAX_AGE_HOURS": 24,
    # The learned rankers' candidate stages ("for you", "similar items") gather at most this many items per request
    # from all their sources, in training and in serving alike (docs/evaluation.md: candidate recall per source).
    "RANKER_CANDIDATES": 200,
    # "Bought together" with RANKER "learned" reads a table of partners per item trained with the model
    # (ml.ranker.basket_table: up to 200 per item); the table holds at most this many (item, partner) pairs in
    # all, 6 bytes each (2,000,000: 12 MB of the artefact), so a large catalogue keeps fewer partners per item.
    "RANKER_BASKET_MAX_PAIRS": 2_000_000,
    # A/B experiments: {name: {"RECOMMENDERS": [names] (optional: all), "VARIANTS": {variant: {"CONFIG": serving
    # config, "WEIGHT": share}, ...}}}. A visitor's variant is a hash of (name, user id or session key); the first
    # variant listed is the baseline. Read as [Experiment, ...] (parse_experiments below); checked by ragrec.E011/W002.
    "EXPERIMENTS": {},
    # Items first seen within this many days count as new (promotion quota).
    "NEW_ITEM_DAYS": 30,
    # Largest k any recommendation call returns.
    "MAX_K": 100,
    # Query embeddings cached per process (text search in the web process).
    "QUERY_CACHE_SIZE": 2048,
    # torch CPU threads of each process that serves requests (query encoding), set once per process
    # on its first request (registry.prepare_serving_process); None keeps torch's one thread per core,
    # which makes concurrent requests fight for every core. Size the web server's processes to the cores.
    "QUERY_THREADS": 1,
    # After a server hook has warmed a web process (services.serving.prepare_web_process), move
    # everything allocated so far (Django, torch, the models: ~600k objects) out of the cyclic garbage
    # collector's reach (gc.freeze), so a full collection walks only what requests made since: one
    # walked all of them, 100-400 ms with every thread of the process stopped.
    "FREEZE_HEAP_AFTER_WARM_UP": True,
    # Text generators, like ENCODERS: alias -> {"BACKEND": dotted.path, "OPTIONS": {...}}. The offline
    # default writes only from the product's own fields and retrieved facts; see ragrec_django.ml.generators
    # for the OpenAI-compatible (vLLM, Ollama, llama.cpp, OpenAI) and local transformers backends.
    "GENERATORS": {"default": {"BACKEND": "ragrec_django.ml.generators.FactsGenerator", "OPTIONS": {}}},
    # Generator alias used for product descriptions and the shopping assistant.
    "DESCRIPTION_GENERATOR": "default",
    "ASSISTANT_GENERATOR": "default",
    # Conversations with the assistant (services.conversation) untouched for this many days are deleted by
    # ragrec_purge_conversations; products per answer; Rocchio weights of the conversation's taste profile in
    # the text space (query, liked products, disliked products) and how much the profile re-ranks a turn.
    "CONVERSATION_RETENTION_DAYS": 30,
    # Months of shopper events kept (the event table is partitioned by month): ragrec_event_partitions drops the
    # months before the current one minus this many, whole. None: every event is kept.
    "EVENT_RETENTION_MONTHS": None,
    "CONVERSATION_PAGE_SIZE": 4,
    "CONVERSATION_ROCCHIO": {"query": 1.0, "liked": 0.75, "disliked": 0.25},
    "CONVERSATION_PROFILE_WEIGHT": 1.0,
    # Phrases a draft must not contain (flagged for the reviewer), e.g. unprovable marketing claims.
    "BANNED_CLAIMS": ["eco-friendly", "best in the world", "clinically proven", "guaranteed", "100% safe", "cures"],
    # Whether generated descriptions may contain links; length cap of a description, in characters.
    "DESCRIPTION_ALLOW_LINKS": False,
    "DESCRIPTION_MAX_CHARS": 1200,
    # Publishing writes the approved text to the item through the adapter (else: shown only with the
    # template tag {% ragrec_description item %}).
    "PUBLISH_TO_ITEM": True,
    # Reviewers' edits used as few-shot style examples in later prompts.
    "STYLE_EXAMPLES": 3,
    # Celery queue of generation tasks (None: the default queue).
    "GENERATION_QUEUE": None,
    # Colours CLIP compares a product photo against, to flag a draft whose colour the photo contradicts.
    "COLOUR_CHECK_PALETTE": [
        "red",
        "orange",
        "yellow",
        "green",
        "blue",
        "purple",
        "pink",
        "brown",
        "black",
        "white",
        "grey",
    ],
    # Largest photo accepted by search by photo (REST API and the demo's upload form), in bytes;
    # a larger upload is refused (HTTP 413) before it is decoded.
    "MAX_UPLOAD_BYTES": 10 * 1024 * 1024,
    # REST API throttle rates per scope ("<n>/<s|min|hour|day>", None for no limit); scopes left
    # out keep these defaults. "ragrec_photo" is search by photo (an image encoding per request).
    "API_THROTTLE_RATES": {"ragrec": "600/min", "ragrec_photo": "60/min", "ragrec_events": "6000/min"},
    # Alias in settings.CACHES holding the API's throttle counters: use a cache shared by all web
    # processes (Redis, Memcached, database) in production; a per-process cache multiplies the rates.
    "API_THROTTLE_CACHE": "default",
    # DRF authentication classes of the API views (dotted paths). Session only by default: HTTP Basic on
    # the API would be a password oracle at the API's rate. None uses REST_FRAMEWORK's defaults.
    "API_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    # Events posted to the API by anonymous clients count toward trending and co-purchases only when their
    # session key is a live session of Django's session store (one the server issued). False trusts every
    # key (clients that identify visitors with ids of their own); such events are stored either way.
    "API_VERIFY_SESSIONS": True,
    # One source (the client address events came from) counts at most this many visitors per item in
    # trending, and this many orders per item in co-purchases (None: no cap).
    "POPULARITY_MAX_PER_SOURCE": 5,
    # Aliases of DATABASES (one, or a list) holding read replicas of "default": the heavy reads (ANN,
    # keyword search, trending, co-purchases, A/B statistics) go to a healthy one; None: all on "default".
    "READ_DATABASE": None,
    # A replica lagging more than this many seconds behind the primary is skipped (reads go to "default").
    "READ_DATABASE_MAX_LAG_SECONDS": 10,
}

# Settings holding a dotted path, imported on first access.
IMPORT_STRINGS = {"ADAPTER"}

# Settings that are dicts merged key by key with the default (not replaced).
MERGED_DICTS = {"HNSW", "EVENT_WEIGHTS", "ENCODE_ITEMS_PER_SECOND"}


# ---------------------------------------------------------------- validation
#
# A validator takes a setting's value and returns it checked and normalised, or raises
# ImproperlyConfigured with a message naming the setting. ``ragrec_settings.<NAME>`` is the result of
# the setting's validator in ``VALIDATORS``, so services read checked values; ``checks.py`` reports the
# same messages at start-up, each setting under its system-check id.

#: Lists fused by "for you" (``FOR_YOU_WEIGHTS``).
FOR_YOU_LISTS = ("similar", "repeat", "co_purchase")
#: Retrievers fused by text search (``SEARCH_WEIGHTS``).
SEARCH_RETRIEVERS = ("keyword", "text", "image")
#: Recommender names, as in ``RecommendationList.recommender`` (plus the shopping assistant).
RECOMMENDERS = (
    "similar",
    "bought_together",
    "search",
    "photo",
    "for_you",
    "recently_viewed",
    "buy_again",
    "trending",
    "assistant",
)
NAME_MAX_LENGTH = 64  # Impression.experiment / variant / config
EXPERIMENT_KEYS = {"RECOMMENDERS", "VARIANTS"}
VARIANT_KEYS = {"CONFIG", "WEIGHT"}
#: A throttle rate as DRF reads it: requests per second, minute, hour or day ("600/min").
THROTTLE_RATE = re.compile(r"\d+/[smhd][a-z]*")


def _weights(
    setting: str, raw, *, names: tuple[str, ...] | None = None, kind: str = "", need_positive: bool = False
) -> dict[str, float]:
    """A dict of name -> finite weight >= 0 (names from ``names`` when given; at least one above 0 if ``need_positive``)."""
    if not isinstance(raw, dict):
        raise ImproperlyConfigured('RAGREC["%s"] must be a dict, got %s.' % (setting, type(raw).__name__))
    unknown = sorted(set(raw) - set(names)) if names is not None else []
    if unknown:
        raise ImproperlyConfigured(
            'RAGREC["%s"]: unknown %s(s) %s; the %ss are %s.' % (setting, kind, unknown, kind, ", ".join(names))
        )
    weights = {}
    for name, value in raw.items():
        try:
            weight = float(value)
        except (TypeError, ValueError):
            weight = float("nan")
        if not math.isfinite(weight) or weight < 0:
            raise ImproperlyConfigured('RAGREC["%s"][%r] must be a number >= 0, got %r.' % (setting, name, value))
        weights[name] = weight
    if need_positive and not any(weights.values()):
        raise ImproperlyConfigured('RAGREC["%s"] needs at least one weight above 0.' % setting)
    return weights


def validate_for_you_weights(raw) -> dict[str, float]:
    """``FOR_YOU_WEIGHTS``: known lists only, finite weights >= 0, at least one above 0."""
    return _weights("FOR_YOU_WEIGHTS", raw, names=FOR_YOU_LISTS, kind="list", need_positive=True)


def validate_similar_weights(raw) -> dict[str, float]:
    """``SIMILAR_WEIGHTS``: space name -> finite weight >= 0 (spaces not configured are skipped when serving)."""
    return _weights("SIMILAR_WEIGHTS", raw)


def validate_search_weights(raw) -> dict[str, float]:
    """``SEARCH_WEIGHTS``: known retrievers only, finite weights >= 0 (0 leaves a retriever out)."""
    return _weights("SEARCH_WEIGHTS", raw, names=SEARCH_RETRIEVERS, kind="retriever")


def validate_search_tokeniser(raw) -> str:
    """``SEARCH_TOKENISER``: a tokeniser of ``ranking.tokenise.TOKENISERS`` whose package is installed."""
    from .ranking.tokenise import TokeniserError, build_tokeniser

    try:
        build_tokeniser(raw if isinstance(raw, str) else repr(raw))
    except TokeniserError as exc:
        raise ImproperlyConfigured('RAGREC["SEARCH_TOKENISER"]: %s' % exc) from exc
    return raw


#: A language code as SEARCH_LANGUAGES takes it: "de", "zh-hans", "pt_br" (compared in lower case, "_" as "-").
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{1,8})*")
#: A PostgreSQL text-search configuration name, optionally schema-qualified ("german", "public.my_config").
REGCONFIG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?")
SEARCH_LANGUAGE_KEYS = {"CONFIG", "TOKENISER"}


@dataclass(frozen=True)
class SearchLanguage:
    """One language of ``SEARCH_LANGUAGES``: its text-search configuration and tokeniser (None: the defaults,
    ``SEARCH_LANGUAGE`` and ``SEARCH_TOKENISER``)."""

    config: str | None = None
    tokeniser: str | None = None


def language_code(raw) -> str:
    """A language code as ``SEARCH_LANGUAGES`` compares it: lower case, "_" read as "-" ("pt_BR" -> "pt-br")."""
    return str(raw or "").strip().lower().replace("_", "-")


def validate_search_languages(raw) -> dict[str, SearchLanguage]:
    """``SEARCH_LANGUAGES``: language code -> a text-search configuration name, or a dict of ``CONFIG`` and/or
    ``TOKENISER`` (a tokeniser of ``ranking.tokenise.TOKENISERS`` whose package is installed). Whether the
    database has each configuration is a database check (``checks.check_text_search_configurations``)."""
    from .ranking.tokenise import TokeniserError, build_tokeniser

    if not isinstance(raw, dict):
        raise ImproperlyConfigured(
            'RAGREC["SEARCH_LANGUAGES"] must be a dict of language code -> configuration, got %s.' % type(raw).__name__
        )
    problems, languages = [], {}
    for code, spec in raw.items():
        where = 'RAGREC["SEARCH_LANGUAGES"][%r]' % (code,)
        normalised = language_code(code) if isinstance(code, str) else ""
        if not LANGUAGE_CODE.fullmatch(normalised):
            problems.append('%s: a key must be a language code such as "de", "zh" or "pt-br".' % where)
            continue
        if normalised in languages:
            problems.append("%s: the language %r is named twice." % (where, normalised))
            continue
        if isinstance(spec, str):
            spec = {"CONFIG": spec}
        if not isinstance(spec, dict) or not spec:
            problems.append(
                '%s must be a text-search configuration name ("german") or a dict with CONFIG and/or TOKENISER '
                '({"CONFIG": "simple", "TOKENISER": "jieba"}).' % where
            )
            continue
        unknown = sorted(set(map(str, spec)) - SEARCH_LANGUAGE_KEYS)
        if unknown:
            problems.append(
                "%s: unknown key(s) %s; valid keys are %s."
                % (where, ", ".join(unknown), ", ".join(sorted(SEARCH_LANGUAGE_KEYS)))
            )
            continue
        config, tokeniser = spec.get("CONFIG"), spec.get("TOKENISER")
        if config is not None and not (isinstance(config, str) and REGCONFIG_NAME.fullmatch(config)):
            problems.append("%s: CONFIG must be a text-search configuration name, got %r." % (where, config))
            continue
        if tokeniser is not None:
            try:
                build_tokeniser(tokeniser if isinstance(tokeniser, str) else repr(tokeniser))
            except TokeniserError as exc:
                problems.append("%s: TOKENISER: %s" % (where, exc))
                continue
        languages[normalised] = SearchLanguage(config=config, tokeniser=tokeniser)
    if problems:
        raise ImproperlyConfigured(" ".join(problems))
    return languages


def validate_api_throttle_rates(raw) -> dict[str, str | None]:
    """``API_THROTTLE_RATES`` merged over the default rates: scope -> "<n>/<s|min|hour|day>" or None (no limit)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ImproperlyConfigured('RAGREC["API_THROTTLE_RATES"] must be a dict, got %s.' % type(raw).__name__)
    for scope, rate in raw.items():
        if rate is not None and not (isinstance(rate, str) and THROTTLE_RATE.fullmatch(rate)):
            raise ImproperlyConfigured(
                'RAGREC["API_THROTTLE_RATES"][%r] must be "<number>/<s|min|hour|day>" or None, got %r.' % (scope, rate)
            )
    return {**DEFAULTS["API_THROTTLE_RATES"], **raw}


def validate_event_retention_months(raw) -> int | None:
    """``EVENT_RETENTION_MONTHS``: None (keep every event) or a whole number of months >= 1."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ImproperlyConfigured(
            'RAGREC["EVENT_RETENTION_MONTHS"] must be a whole number of months >= 1, or None to keep every event; '
            "got %r." % (raw,)
        )
    return raw


def validate_serving_configs(raw) -> dict[str, dict]:
    """``SERVING_CONFIGS``: name -> serving rules that ``ServingRules.from_dict`` accepts.

    Checked at start-up (not when read): a configuration is parsed per request, like the admin's
    rows, so one bad entry refuses only the requests that name it.
    """
    from .ranking.rules import RulesError, ServingRules

    if not isinstance(raw, dict):
        raise ImproperlyConfigured(
            'RAGREC["SERVING_CONFIGS"] must be a dict of name -> rules, got %s.' % type(raw).__name__
        )
    problems = []
    for name, rules in raw.items():
        if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX_LENGTH:
            problems.append(
                'RAGREC["SERVING_CONFIGS"][%r]: a name must be a non-empty string of at most %d characters.'
                % (name, NAME_MAX_LENGTH)
            )
            continue
        try:
            ServingRules.from_dict(rules or {})
        except RulesError as exc:
            problems.append('RAGREC["SERVING_CONFIGS"][%r]: %s.' % (name, exc))
    if problems:
        raise ImproperlyConfigured(" ".join(problems))
    return raw


@dataclass(frozen=True)
class Variant:
    name: str
    config: str
    weight: float


@dataclass(frozen=True)
class Experiment:
    """One experiment of ``EXPERIMENTS``; visitors are assigned a variant by ``variant_for``."""

    name: str
    variants: tuple[Variant, ...]
    recommenders: frozenset[str] | None = None  # None: every recommender

    @property
    def baseline(self) -> Variant:
        return self.variants[0]

    def covers(self, recommender: str) -> bool:
        return self.recommenders is None or recommender in self.recommenders

    def variant_for(self, visitor_key: str) -> Variant:
        """The visitor's variant: deterministic, by cumulative weight."""
        point = bucket(self.name, visitor_key) * sum(v.weight for v in self.variants)
        cumulative = 0.0
        for variant in self.variants:
            cumulative += variant.weight
            if point < cumulative:
                return variant
        return [v for v in self.variants if v.weight > 0][-1]  # rounding at the very top


def bucket(experiment: str, visitor_key: str) -> float:
    """A number in [0, 1) from sha256 of (experiment, visitor): stable across processes and restarts."""
    digest = hashlib.sha256(("%s\0%s" % (experiment, visitor_key)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def parse_experiments(raw) -> list[Experiment]:
    """Experiments from the ``EXPERIMENTS`` setting; ``ImproperlyConfigured`` listing every problem."""
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(
            'RAGREC["EXPERIMENTS"] must be a dict of experiment name -> settings, got %s.' % type(raw).__name__
        )
    problems: list[str] = []
    experiments = []
    owner: dict[str, str] = {}
    for name, spec in raw.items():
        where = 'RAGREC["EXPERIMENTS"][%r]' % (name,)
        if not _usable_entry(
            where,
            "an experiment name",
            name,
            spec,
            "a dict with VARIANTS (and optionally RECOMMENDERS)",
            EXPERIMENT_KEYS,
            problems,
        ):
            continue
        recommenders = spec.get("RECOMMENDERS")
        if recommenders is not None:
            if (
                not isinstance(recommenders, (list, tuple))
                or not recommenders
                or not all(isinstance(r, str) for r in recommenders)
            ):
                problems.append(
                    "%s: RECOMMENDERS must be a non-empty list of recommender names (%s)."
                    % (where, ", ".join(RECOMMENDERS))
                )
                recommenders = None
            else:
                bad = sorted(set(recommenders) - set(RECOMMENDERS))
                if bad:
                    problems.append(
                        "%s: unknown recommender(s) %s; known: %s." % (where, ", ".join(bad), ", ".join(RECOMMENDERS))
                    )
                recommenders = frozenset(recommenders)
        for recommender in sorted(recommenders or RECOMMENDERS):
            if recommender in owner:
                problems.append(
                    "%s: recommender %r is already in experiment %r; a recommender may be in one experiment only."
                    % (where, recommender, owner[recommender])
                )
            else:
                owner[recommender] = name
        variants = _parse_variants(where, spec.get("VARIANTS"), problems)
        if variants:
            experiments.append(Experiment(name=name, variants=tuple(variants), recommenders=recommenders))
    if problems:
        raise ImproperlyConfigured(" ".join(problems))
    return experiments


def _usable_entry(where: str, naming: str, name, spec, shape: str, keys: set[str], problems: list[str]) -> bool:
    """Whether a named settings entry has a valid name and is a dict (else its problem is added);
    unknown keys are added as a problem too, but do not make the entry unusable."""
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX_LENGTH:
        problems.append(
            "%s: %s must be a non-empty string of at most %d characters." % (where, naming, NAME_MAX_LENGTH)
        )
        return False
    if not isinstance(spec, dict):
        problems.append("%s must be %s." % (where, shape))
        return False
    unknown = sorted(set(map(str, spec)) - keys)
    if unknown:
        problems.append(
            "%s: unknown key(s) %s; valid keys are %s." % (where, ", ".join(unknown), ", ".join(sorted(keys)))
        )
    return True


def _parse_variants(where: str, raw, problems: list[str]) -> list[Variant]:
    if not isinstance(raw, dict) or len(raw) < 2:
        problems.append(
            '%s: VARIANTS must be a dict of at least two variants, e.g. {"control": {"CONFIG": "default", '
            '"WEIGHT": 50}, "diverse": {"CONFIG": "diverse", "WEIGHT": 50}}.' % where
        )
        return []
    variants = []
    for name, spec in raw.items():
        here = "%s VARIANTS[%r]" % (where, name)
        if not _usable_entry(
            here,
            "a variant name",
            name,
            spec,
            'a dict like {"CONFIG": "default", "WEIGHT": 50}',
            VARIANT_KEYS,
            problems,
        ):
            continue
        config = spec.get("CONFIG")
        if not isinstance(config, str) or not config.strip() or len(config) > NAME_MAX_LENGTH:
            problems.append(
                "%s: CONFIG must name a serving configuration (at most %d characters)." % (here, NAME_MAX_LENGTH)
            )
            continue
        weight = spec.get("WEIGHT", 1)
        if isinstance(weight, bool) or not isinstance(weight, Real) or not 0 <= weight < float("inf"):
            problems.append("%s: WEIGHT must be a number >= 0, got %r." % (here, weight))
            continue
        variants.append(Variant(name=name, config=config, weight=float(weight)))
    if variants and len(variants) == len(raw) and not sum(v.weight for v in variants) > 0:
        problems.append("%s: the VARIANTS' weights add up to 0; give at least one a positive WEIGHT." % where)
        return []
    return variants


#: Settings checked when read: ``ragrec_settings.<NAME>`` is ``VALIDATORS[NAME](value)``.
VALIDATORS = {
    "FOR_YOU_WEIGHTS": validate_for_you_weights,
    "SIMILAR_WEIGHTS": validate_similar_weights,
    "SEARCH_WEIGHTS": validate_search_weights,
    "EXPERIMENTS": parse_experiments,
    "API_THROTTLE_RATES": validate_api_throttle_rates,
    "SEARCH_TOKENISER": validate_search_tokeniser,
    "SEARCH_LANGUAGES": validate_search_languages,
    "EVENT_RETENTION_MONTHS": validate_event_retention_months,
}


class RagrecSettings:
    """Attribute access to RAGREC with defaults, validation (``VALIDATORS``) and lazy imports."""

    def __init__(self, user_settings: dict | None = None, defaults: dict | None = None):
        self._explicit = user_settings
        self.defaults = defaults or DEFAULTS
        self._cached: set[str] = set()
        self._user: dict | None = None

    @property
    def user_settings(self) -> dict:
        if self._user is None:
            if self._explicit is not None:
                raw = self._explicit
            else:
                from django.conf import settings

                raw = getattr(settings, "RAGREC", {}) or {}
            if not isinstance(raw, dict):
                raise ImproperlyConfigured("settings.RAGREC must be a dict, got %s." % type(raw).__name__)
            unknown = sorted(set(raw) - set(self.defaults))
            if unknown:
                raise ImproperlyConfigured(
                    "Unknown key(s) in settings.RAGREC: %s. Valid keys are: %s."
                    % (", ".join(unknown), ", ".join(sorted(self.defaults)))
                )
            self._user = raw
        return self._user

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_") or attr not in self.defaults:
            raise AttributeError("Invalid RAGREC setting: %r" % attr)
        value = copy.deepcopy(self.defaults[attr])
        if attr in self.user_settings:
            if attr in MERGED_DICTS:
                value.update(self.user_settings[attr])
            else:
                value = self.user_settings[attr]
        if attr in IMPORT_STRINGS and isinstance(value, str):
            value = import_from_setting(value, attr)
        if attr in VALIDATORS:
            value = VALIDATORS[attr](value)
        self._cached.add(attr)
        setattr(self, attr, value)
        return value

    def reload(self) -> None:
        for attr in self._cached:
            delattr(self, attr)
        self._cached.clear()
        self._user = None


def import_from_setting(path: str, setting_name: str) -> Any:
    """Import a dotted path named by a setting, with a message that says which setting."""
    try:
        return import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            "Could not import %r for RAGREC[%r]: %s: %s." % (path, setting_name, type(exc).__name__, exc)
        ) from exc


ragrec_settings = RagrecSettings()


def text_search_of(language: str) -> tuple[str, str]:
    """``(text-search configuration, tokeniser name)`` of an item of ``language`` (a code, "" for none): its entry of
    ``SEARCH_LANGUAGES`` (the code itself, else its primary subtag: "de-at" is "de"), each part defaulting to
    ``SEARCH_LANGUAGE`` and ``SEARCH_TOKENISER``."""
    languages = ragrec_settings.SEARCH_LANGUAGES
    code = language_code(language)
    entry = languages.get(code) or languages.get(code.split("-")[0]) or SearchLanguage()
    return (
        str(entry.config or ragrec_settings.SEARCH_LANGUAGE),
        str(entry.tokeniser or ragrec_settings.SEARCH_TOKENISER),
    )


def text_searches() -> list[tuple[str, str]]:
    """The distinct ``(configuration, tokeniser name)`` pairs items are indexed with: the default's first, then each
    language's of ``SEARCH_LANGUAGES`` in order. A query is searched with every one (their tsqueries OR-ed)."""
    pairs = [text_search_of("")]
    for code in ragrec_settings.SEARCH_LANGUAGES:
        pair = text_search_of(code)
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def query_tokeniser_name() -> str:
    """The tokeniser whose word boundaries query understanding, synonyms and autocomplete use for CJK text:
    ``SEARCH_TOKENISER`` unless it is "none", else the first other one ``SEARCH_LANGUAGES`` names ("none" when
    none does)."""
    return next((name for _, name in text_searches() if name != "none"), "none")


def reload_ragrec_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == "RAGREC":
        ragrec_settings.reload()


setting_changed.connect(reload_ragrec_settings)
