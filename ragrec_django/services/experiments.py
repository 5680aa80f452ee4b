"""Online measurement and A/B tests: variant assignment, impressions, clicks, conversions, statistics.

Settings (``RAGREC["EXPERIMENTS"]``)::

    "EXPERIMENTS": {
        "ranking-test": {
            "RECOMMENDERS": ["similar", "for_you"],          # optional: every recommender when left out
            "VARIANTS": {                                     # the first one listed is the baseline
                "control": {"CONFIG": "default", "WEIGHT": 50},
                "diverse": {"CONFIG": "diverse", "WEIGHT": 50},
            },
        },
    }

Assignment. A visitor is ``user:<id>`` when signed in, else ``session:<key>``; the first 8
bytes of ``sha256("<experiment>\\0<visitor>")`` give a number in [0, 1) that picks a variant by
cumulative weight, in the order the variants are listed. It is the same in every process and on
every request, needs no storage, and is independent between experiments. Changing the weights
or the order moves visitors between variants: start a new experiment (a new name) instead. A
visitor with neither a user nor a session is in no experiment (the caller's config is used), and
so is every request that names a ``config`` explicitly.

Impressions. One ``Impression`` row per list shown (``record_impression``): recommender, serving
config, experiment and variant, the visitor, and the item keys in order. Empty lists are not
recorded. Writing one never breaks the page or the response: a database error is logged.

Clicks. An ``Interaction`` of event ``click`` with ``impression`` set: the redirect view
(``ragrec_django.views.click``) or an API client posting ``{"event": "click", "impression_id": ...}``.

Attribution (conversions). An ``add_to_cart`` or ``purchase`` event is a conversion of an
impression when the same visitor (the click's user if it had one, else its session key) acts on
an item they clicked in that impression, at or after the click and within ``ATTRIBUTION_WINDOW``
(24 hours) of it. When several clicked impressions qualify, the latest click wins (last click),
so one event converts at most one impression. Impressions are counted on the day they were
shown, in the current time zone, whatever day the click or conversion came.

Rates. ``CTR`` is clicked impressions / impressions (lists with at least one click);
``conversion rate`` is converted impressions / impressions. Both come with a 95% Wilson interval,
and each variant is compared with its experiment's baseline by a two-proportion z-test.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from numbers import Real

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, transaction
from django.utils import timezone

from .. import stats, storage
from ..conf import ragrec_settings
from ..exceptions import ImpressionError, UnknownServingConfig
from ..models import Impression, Interaction, Item
from .results import Visitor, serving_rules

logger = logging.getLogger(__name__)

#: Recommender names, as in ``RecommendationList.recommender`` (plus the shopping assistant).
RECOMMENDERS = (
    "similar", "bought_together", "search", "photo", "for_you", "recently_viewed", "buy_again", "trending", "assistant",
)
ATTRIBUTION_WINDOW = timedelta(hours=24)
CONVERSION_EVENTS = (Interaction.Event.ADD_TO_CART, Interaction.Event.PURCHASE)
NAME_MAX_LENGTH = 64  # Impression.experiment / variant / config
EXPERIMENT_KEYS = {"RECOMMENDERS", "VARIANTS"}
VARIANT_KEYS = {"CONFIG", "WEIGHT"}


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class Variant:
    name: str
    config: str
    weight: float


@dataclass(frozen=True)
class Experiment:
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
        raise ImproperlyConfigured('RAGREC["EXPERIMENTS"] must be a dict of experiment name -> settings, got %s.'
                                   % type(raw).__name__)
    problems: list[str] = []
    experiments = []
    owner: dict[str, str] = {}
    for name, spec in raw.items():
        where = 'RAGREC["EXPERIMENTS"][%r]' % (name,)
        if not _usable_entry(where, "an experiment name", name, spec, "a dict with VARIANTS (and optionally RECOMMENDERS)",
                             EXPERIMENT_KEYS, problems):
            continue
        recommenders = spec.get("RECOMMENDERS")
        if recommenders is not None:
            if not isinstance(recommenders, (list, tuple)) or not recommenders or not all(isinstance(r, str) for r in recommenders):
                problems.append("%s: RECOMMENDERS must be a non-empty list of recommender names (%s)."
                                % (where, ", ".join(RECOMMENDERS)))
                recommenders = None
            else:
                bad = sorted(set(recommenders) - set(RECOMMENDERS))
                if bad:
                    problems.append("%s: unknown recommender(s) %s; known: %s." % (where, ", ".join(bad), ", ".join(RECOMMENDERS)))
                recommenders = frozenset(recommenders)
        for recommender in sorted(recommenders or RECOMMENDERS):
            if recommender in owner:
                problems.append("%s: recommender %r is already in experiment %r; a recommender may be in one experiment only."
                                % (where, recommender, owner[recommender]))
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
        problems.append("%s: %s must be a non-empty string of at most %d characters." % (where, naming, NAME_MAX_LENGTH))
        return False
    if not isinstance(spec, dict):
        problems.append("%s must be %s." % (where, shape))
        return False
    unknown = sorted(set(map(str, spec)) - keys)
    if unknown:
        problems.append("%s: unknown key(s) %s; valid keys are %s." % (where, ", ".join(unknown), ", ".join(sorted(keys))))
    return True


def _parse_variants(where: str, raw, problems: list[str]) -> list[Variant]:
    if not isinstance(raw, dict) or len(raw) < 2:
        problems.append('%s: VARIANTS must be a dict of at least two variants, e.g. {"control": {"CONFIG": "default", '
                        '"WEIGHT": 50}, "diverse": {"CONFIG": "diverse", "WEIGHT": 50}}.' % where)
        return []
    variants = []
    for name, spec in raw.items():
        here = "%s VARIANTS[%r]" % (where, name)
        if not _usable_entry(here, "a variant name", name, spec, 'a dict like {"CONFIG": "default", "WEIGHT": 50}',
                             VARIANT_KEYS, problems):
            continue
        config = spec.get("CONFIG")
        if not isinstance(config, str) or not config.strip() or len(config) > NAME_MAX_LENGTH:
            problems.append("%s: CONFIG must name a serving configuration (at most %d characters)." % (here, NAME_MAX_LENGTH))
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


def configured_experiments() -> list[Experiment]:
    return parse_experiments(ragrec_settings.EXPERIMENTS)


def experiment_for(recommender: str) -> Experiment | None:
    for experiment in configured_experiments():
        if experiment.covers(recommender):
            return experiment
    return None


# ---------------------------------------------------------------- assignment


@dataclass(frozen=True)
class Assignment:
    """The serving configuration to use, and the experiment and variant it came from (blank when none)."""

    config: str
    experiment: str = ""
    variant: str = ""


def visitor_key(visitor: Visitor) -> str:
    """``user:<id>`` or ``session:<key>``; empty for a visitor who cannot be told apart from others."""
    if visitor.user_id is not None:
        return "user:%s" % visitor.user_id
    if visitor.session_key:
        return "session:%s" % visitor.session_key
    return ""


def assign(recommender: str, visitor: Visitor, config: str | None = None, *, default: str = "default") -> Assignment:
    """Which serving configuration ``recommender`` uses for ``visitor``.

    An explicit ``config`` always wins (no experiment). Otherwise the visitor's variant of the
    experiment covering ``recommender``, if any, else ``default``. A variant whose configuration
    does not exist is logged and skipped (the page still gets ``default``): the system check
    ``ragrec.W002`` reports it at start-up.
    """
    if config is not None:
        return Assignment(config=str(config))
    key = visitor_key(visitor)
    if not key:
        return Assignment(config=default)
    try:
        experiment = experiment_for(recommender)
    except ImproperlyConfigured as exc:
        logger.error("ragrec: experiments are off, their settings are invalid: %s", exc)
        return Assignment(config=default)
    if experiment is None:
        return Assignment(config=default)
    variant = experiment.variant_for(key)
    try:
        serving_rules(variant.config)
    except UnknownServingConfig as exc:
        logger.error("ragrec: experiment %r, variant %r: %s Serving %r instead.", experiment.name, variant.name, exc, default)
        return Assignment(config=default)
    return Assignment(config=variant.config, experiment=experiment.name, variant=variant.name)


# ---------------------------------------------------------------- recording


def record_impression(
    recommender: str, config: str, item_keys: list[str], visitor: Visitor, *, experiment: str = "", variant: str = "",
    channel: str = Impression.Channel.TEMPLATE,
) -> uuid.UUID | None:
    """Store one shown list (one INSERT); its public id, or None when empty or the database failed (logged)."""
    if not recommender or not item_keys:
        return None
    row = Impression(
        recommender=recommender[:32], config=(config or "")[:NAME_MAX_LENGTH], experiment=experiment[:NAME_MAX_LENGTH],
        variant=variant[:NAME_MAX_LENGTH], channel=channel, user_id=visitor.user_id,
        session_key=(visitor.session_key or "")[:64], item_keys=[str(k)[:64] for k in item_keys],
    )
    try:
        storage.insert_impression(row)  # a failure rolls back to there, not the page's whole transaction
    except DatabaseError:
        logger.exception("ragrec: could not record an impression of %s", recommender)
        return None
    return row.pk


def impression_for_click(impression_id, item_key: str) -> tuple[Impression, Item]:
    """The impression and the shown item a click names; ``ImpressionError`` when either is not so."""
    try:
        impression_id = uuid.UUID(str(impression_id))
    except ValueError:
        raise ImpressionError("%r is not an impression id." % str(impression_id)[:64]) from None
    impression = Impression.objects.filter(pk=impression_id).first()
    if impression is None:
        raise ImpressionError("Unknown impression %s." % impression_id)
    item_key = str(item_key)
    if item_key not in impression.item_keys:
        raise ImpressionError("Item %r was not shown in impression %s." % (item_key[:64], impression_id))
    item = Item.objects.filter(key=item_key).first()
    if item is None:
        raise ImpressionError("Item %r no longer exists." % item_key[:64])
    return impression, item


def record_click(impression: Impression, item: Item, visitor: Visitor) -> Interaction | None:
    """Store a click on ``item`` in ``impression``; None when the database failed (logged).

    The click belongs to ``visitor`` (the request's); when the request has none, to the visitor
    the list was shown to.
    """
    if not visitor:
        visitor = Visitor(user_id=impression.user_id, session_key=impression.session_key)
    row = Interaction(
        event=Interaction.Event.CLICK, item=item, impression=impression, user_id=visitor.user_id,
        session_key=visitor.session_key or "", source=impression.recommender,
    )
    try:
        with transaction.atomic():
            row.save(force_insert=True)
    except DatabaseError:
        logger.exception("ragrec: could not record a click on %s in impression %s", item.key, impression.pk)
        return None
    return row


# ---------------------------------------------------------------- statistics


@dataclass
class Counts:
    impressions: int = 0
    clicked: int = 0  # impressions with at least one click
    clicks: int = 0  # distinct (impression, item) clicks
    converted: int = 0  # impressions with at least one attributed conversion
    conversions: int = 0  # attributed add_to_cart / purchase events

    def add(self, other: Counts) -> None:
        for name in ("impressions", "clicked", "clicks", "converted", "conversions"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def ctr(self) -> float | None:
        return stats.rate(self.clicked, self.impressions)

    @property
    def conversion_rate(self) -> float | None:
        return stats.rate(self.converted, self.impressions)

    @property
    def ctr_interval(self):
        return stats.wilson_interval(self.clicked, self.impressions)

    @property
    def conversion_interval(self):
        return stats.wilson_interval(self.converted, self.impressions)


@dataclass
class DailyRow:
    day: date
    recommender: str
    experiment: str
    variant: str
    counts: Counts


@dataclass
class SummaryRow:
    recommender: str
    experiment: str
    variant: str
    counts: Counts
    is_baseline: bool = False
    ctr_test: stats.ZTest | None = None  # against the baseline variant of the same experiment and recommender
    conversion_test: stats.ZTest | None = None


@dataclass
class Report:
    start: date
    end: date  # inclusive
    window: timedelta
    daily: list[DailyRow] = field(default_factory=list)
    summary: list[SummaryRow] = field(default_factory=list)

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    zone = timezone.get_current_timezone()
    return (timezone.make_aware(datetime.combine(start, time.min), zone),
            timezone.make_aware(datetime.combine(end + timedelta(days=1), time.min), zone))


def report(start: date, end: date, *, window: timedelta = ATTRIBUTION_WINDOW,
           conversion_events=CONVERSION_EVENTS) -> Report:
    """Impressions, clicks and conversions per day and per (recommender, experiment, variant).

    ``start`` and ``end`` are days in the current time zone, both included. See the module's
    docstring for what is counted.
    """
    if end < start:
        raise ValueError("The end day is before the start day.")
    low, high = _bounds(start, end)
    rows = storage.experiment_stats(start=low, end=high, time_zone=timezone.get_current_timezone_name(), window=window,
                                    conversion_events=conversion_events)
    result = Report(start=start, end=end, window=window)
    totals: dict[tuple[str, str, str], Counts] = defaultdict(Counts)
    for day, recommender, experiment, variant, *numbers in rows:
        counts = Counts(*(int(n) for n in numbers))
        result.daily.append(DailyRow(day, recommender, experiment, variant, counts))
        totals[(recommender, experiment, variant)].add(counts)
    result.summary = _summarise(totals)
    return result


def _summarise(totals: dict[tuple[str, str, str], Counts]) -> list[SummaryRow]:
    try:
        configured = {e.name: [v.name for v in e.variants] for e in configured_experiments()}
    except ImproperlyConfigured:
        configured = {}
    rows = [SummaryRow(recommender, experiment, variant, counts) for (recommender, experiment, variant), counts in totals.items()]
    groups: dict[tuple[str, str], list[SummaryRow]] = defaultdict(list)
    for row in rows:
        if row.experiment:
            groups[(row.recommender, row.experiment)].append(row)
    for (recommender, experiment), members in groups.items():
        baseline = _baseline_name(configured.get(experiment), [m.variant for m in members])
        base = next((m for m in members if m.variant == baseline), None)
        for member in members:
            member.is_baseline = member is base
            if base is not None and member is not base:
                member.ctr_test = stats.two_proportion_z_test(
                    base.counts.clicked, base.counts.impressions, member.counts.clicked, member.counts.impressions)
                member.conversion_test = stats.two_proportion_z_test(
                    base.counts.converted, base.counts.impressions, member.counts.converted, member.counts.impressions)

    def order(row: SummaryRow):
        variants = configured.get(row.experiment) or []
        position = variants.index(row.variant) if row.variant in variants else len(variants)
        return (row.recommender, row.experiment, position, row.variant)

    return sorted(rows, key=order)


def _baseline_name(configured: list[str] | None, seen: list[str]) -> str:
    """The experiment's first listed variant; for an experiment no longer configured, "control" or the first name."""
    if configured:
        return configured[0]
    return "control" if "control" in seen else sorted(seen)[0]
