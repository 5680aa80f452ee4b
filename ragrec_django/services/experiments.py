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

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from .. import stats, storage
from ..conf import NAME_MAX_LENGTH, Experiment, ragrec_settings
from ..exceptions import ImpressionError, UnknownServingConfig
from ..models import Impression, Interaction, Item
from .results import Visitor, serving_rules

logger = logging.getLogger(__name__)

ATTRIBUTION_WINDOW = timedelta(hours=24)
CONVERSION_EVENTS = (Interaction.Event.ADD_TO_CART, Interaction.Event.PURCHASE)


# ---------------------------------------------------------------- settings
# ``RAGREC["EXPERIMENTS"]`` is parsed and checked by ``ragrec_django.conf.parse_experiments``.


def configured_experiments() -> list[Experiment]:
    """The experiments of ``RAGREC["EXPERIMENTS"]``; ``ImproperlyConfigured`` when the setting is invalid."""
    return ragrec_settings.EXPERIMENTS


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
        logger.error(
            "ragrec: experiment %r, variant %r: %s Serving %r instead.", experiment.name, variant.name, exc, default
        )
        return Assignment(config=default)
    return Assignment(config=variant.config, experiment=experiment.name, variant=variant.name)


# ---------------------------------------------------------------- recording


def record_impression(
    recommender: str,
    config: str,
    item_keys: list[str],
    visitor: Visitor,
    *,
    experiment: str = "",
    variant: str = "",
    channel: str = Impression.Channel.TEMPLATE,
) -> uuid.UUID | None:
    """Store one shown list (one INSERT); its public id, or None when empty or the database failed (logged)."""
    if not recommender or not item_keys:
        return None
    row = Impression(
        recommender=recommender[:32],
        config=(config or "")[:NAME_MAX_LENGTH],
        experiment=experiment[:NAME_MAX_LENGTH],
        variant=variant[:NAME_MAX_LENGTH],
        channel=channel,
        user_id=visitor.user_id,
        session_key=(visitor.session_key or "")[:64],
        item_keys=[str(k)[:64] for k in item_keys],
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


def record_click(impression: Impression, item: Item, visitor: Visitor, *, origin: str = "") -> Interaction | None:
    """Store a click on ``item`` in ``impression``, once: a repeated click (a reload, a replayed link) returns
    the stored one (a database constraint keeps one click per impression and item). None when the database
    failed (logged).

    The click belongs to ``visitor`` (the request's); when the request has none, to the visitor
    the list was shown to. ``origin``: ``services.events.request_origin`` of the request.
    """
    clicks = Interaction.objects.filter(event=Interaction.Event.CLICK, impression=impression, item=item)
    if not visitor:
        visitor = Visitor(user_id=impression.user_id, session_key=impression.session_key)
    row = Interaction(
        event=Interaction.Event.CLICK,
        item=item,
        impression=impression,
        user_id=visitor.user_id,
        session_key=visitor.session_key or "",
        source=impression.recommender,
        origin=origin,
    )
    try:
        earlier = clicks.first()
        if earlier is not None:
            return earlier
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:  # the same click, stored by a concurrent request
        return clicks.first()
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
    conversions: int = 0  # attributed add_to_cart / purchase events, once per (impression, item, event, order)

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
    return (
        timezone.make_aware(datetime.combine(start, time.min), zone),
        timezone.make_aware(datetime.combine(end + timedelta(days=1), time.min), zone),
    )


def report(
    start: date, end: date, *, window: timedelta = ATTRIBUTION_WINDOW, conversion_events=CONVERSION_EVENTS
) -> Report:
    """Impressions, clicks and conversions per day and per (recommender, experiment, variant).

    ``start`` and ``end`` are days in the current time zone, both included. See the module's
    docstring for what is counted.
    """
    if end < start:
        raise ValueError("The end day is before the start day.")
    low, high = _bounds(start, end)
    rows = storage.experiment_stats(
        start=low,
        end=high,
        time_zone=timezone.get_current_timezone_name(),
        window=window,
        conversion_events=conversion_events,
    )
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
    rows = [
        SummaryRow(recommender, experiment, variant, counts)
        for (recommender, experiment, variant), counts in totals.items()
    ]
    groups: dict[tuple[str, str], list[SummaryRow]] = defaultdict(list)
    for row in rows:
        if row.experiment:
            groups[(row.recommender, row.experiment)].append(row)
    for (_recommender, experiment), members in groups.items():
        baseline = _baseline_name(configured.get(experiment), [m.variant for m in members])
        base = next((m for m in members if m.variant == baseline), None)
        for member in members:
            member.is_baseline = member is base
            if base is not None and member is not base:
                member.ctr_test = stats.two_proportion_z_test(
                    base.counts.clicked, base.counts.impressions, member.counts.clicked, member.counts.impressions
                )
                member.conversion_test = stats.two_proportion_z_test(
                    base.counts.converted, base.counts.impressions, member.counts.converted, member.counts.impressions
                )

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
