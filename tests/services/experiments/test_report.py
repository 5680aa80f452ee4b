"""CTR and conversions per recommender, variant and day, on a hand-made set of impressions and events."""

from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.contrib.auth import get_user_model

from ragrec_django.models import Impression, Interaction, Item
from ragrec_django.services import experiments
from ragrec_django.stats import two_proportion_z_test

pytestmark = pytest.mark.django_db

D0, D1, D2 = date(2025, 3, 2), date(2025, 3, 3), date(2025, 3, 4)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt_timezone.utc)


@pytest.fixture
def events(shop, experiment_settings):
    """Impressions and events whose counts are worked out by hand in the comments."""
    item = {title: Item.objects.get(key=str(product.pk)) for title, product in shop.items()}
    A, B, C, D = (item[t] for t in ("Red mug", "Blue mug", "Brass lamp", "Floor lamp"))
    user = get_user_model().objects.create_user("u1")

    def shown(when, variant, items, session="", user_id=None, recommender="trending"):
        return Impression.objects.create(
            recommender=recommender,
            config="lamps-only" if variant == "lamps" else "default",
            experiment="ranking-test" if variant else "",
            variant=variant,
            session_key=session,
            user_id=user_id,
            item_keys=[i.key for i in items],
            created_at=when,
        )

    def event(kind, what, when, session="", user_id=None, impression=None):
        Interaction.objects.create(
            event=kind,
            item=what,
            session_key=session,
            user_id=user_id,
            impression=impression,
            created_at=when,
            source="test",
        )

    # control, D1: c1 clicked twice on A and once on B (2 distinct clicks), A added to the cart an hour later and
    # bought later still (1 converted list, 2 conversions).
    c1 = shown(at(D1, 12), "control", [A, B], "s1")
    event("click", A, at(D1, 12, 1), "s1", impression=c1)
    event("click", A, at(D1, 12, 2), "s1")  # a replayed click: one click per (impression, item) keeps the impression
    event("click", B, at(D1, 12, 3), "s1", impression=c1)
    event("add_to_cart", A, at(D1, 13), "s1")
    event("purchase", A, at(D1, 14), "s1")
    # c2: clicked, bought two days later: outside the 24 h window.
    c2 = shown(at(D1, 12), "control", [A, B], "s2")
    event("click", A, at(D1, 12, 5), "s2", impression=c2)
    event("purchase", A, at(D1 + timedelta(days=2), 12), "s2")
    # c3: never clicked; bought A anyway (not attributed: no click).
    shown(at(D1, 12), "control", [A, B], "s3")
    event("purchase", A, at(D1, 13), "s3")
    # control, D2: c4 clicked B; B bought by someone else, B in the cart *before* the click, A (not clicked) in the cart.
    c4 = shown(at(D2, 9), "control", [A, B], "s4")
    event("add_to_cart", B, at(D2, 9, 1), "s4")
    event("click", B, at(D2, 9, 5), "s4", impression=c4)
    event("purchase", B, at(D2, 10), "s9")
    event("add_to_cart", A, at(D2, 10), "s4")

    # lamps, D1: l1 a signed-in user who clicked C and bought it 2 h later; l2 a session that put D in its cart
    # 23 h after clicking it.
    l1 = shown(at(D1, 8), "lamps", [C, D], user_id=user.pk)
    event("click", C, at(D1, 8, 1), user_id=user.pk, impression=l1)
    event("purchase", C, at(D1, 10, 1), user_id=user.pk)
    l2 = shown(at(D1, 20), "lamps", [C, D], "s5")
    event("click", D, at(D1, 20, 1), "s5", impression=l2)
    event("add_to_cart", D, at(D2, 19), "s5")
    # lamps, D2: s6 clicked C in l3, then again in l4, then bought C: the last click (l4) gets the conversion.
    l3 = shown(at(D2, 8), "lamps", [C, D], "s6")
    event("click", C, at(D2, 8, 1), "s6", impression=l3)
    l4 = shown(at(D2, 11), "lamps", [C, D], "s6")
    event("click", C, at(D2, 11, 1), "s6", impression=l4)
    event("purchase", C, at(D2, 12), "s6")

    # No experiment: similar, clicked, not converted; and one list the day before the range (left out).
    s1 = shown(at(D1, 15), "", [A], "s7", recommender="similar")
    event("click", A, at(D1, 15, 1), "s7", impression=s1)
    early = shown(at(D0, 15), "", [A], "s8", recommender="similar")
    event("click", A, at(D0, 15, 1), "s8", impression=early)


def counts(row):
    c = row.counts
    return (c.impressions, c.clicked, c.clicks, c.converted, c.conversions)


def test_daily_counts(events):
    report = experiments.report(D1, D2)
    daily = {(r.day, r.recommender, r.variant): counts(r) for r in report.daily}
    assert daily == {
        (D1, "similar", ""): (1, 1, 1, 0, 0),
        (D1, "trending", "control"): (3, 2, 3, 1, 2),
        (D2, "trending", "control"): (1, 1, 1, 0, 0),
        (D1, "trending", "lamps"): (2, 2, 2, 2, 2),
        (D2, "trending", "lamps"): (2, 2, 2, 1, 1),
    }
    assert report.days == [D1, D2]


def test_summary_rates_intervals_and_tests(events):
    summary = experiments.report(D1, D2).summary
    assert [(r.recommender, r.experiment, r.variant) for r in summary] == [
        ("similar", "", ""),
        ("trending", "ranking-test", "control"),
        ("trending", "ranking-test", "lamps"),
    ]
    similar, control, lamps = summary
    assert counts(control) == (4, 3, 4, 1, 2) and counts(lamps) == (4, 4, 4, 3, 3)
    assert control.counts.ctr == 0.75 and lamps.counts.ctr == 1.0
    assert control.counts.conversion_rate == 0.25 and lamps.counts.conversion_rate == 0.75
    assert control.is_baseline and not lamps.is_baseline and control.ctr_test is None
    assert lamps.ctr_test == two_proportion_z_test(3, 4, 4, 4)
    assert lamps.conversion_test == two_proportion_z_test(1, 4, 3, 4)
    assert lamps.conversion_test.difference == 0.5 and not lamps.conversion_test.reliable
    low, high = control.counts.ctr_interval
    assert low < 0.75 < high
    assert similar.ctr_test is None and not similar.is_baseline


def test_window_and_conversion_events_are_parameters(events):
    longer = {(r.variant): counts(r) for r in experiments.report(D1, D2, window=timedelta(days=3)).summary}
    assert longer["control"] == (4, 3, 4, 2, 3)  # c2's purchase two days later now counts
    purchases_only = {r.variant: counts(r) for r in experiments.report(D1, D2, conversion_events=["purchase"]).summary}
    assert purchases_only["control"] == (4, 3, 4, 1, 1) and purchases_only["lamps"] == (4, 4, 4, 2, 2)


def test_days_follow_the_current_time_zone(events, settings):
    settings.TIME_ZONE = "America/New_York"  # UTC-5 in March: D2 09:00 UTC is still D2, D1 08:00 UTC too
    report = experiments.report(D1, D2)
    by_day = {(r.day, r.variant): r.counts.impressions for r in report.daily if r.recommender == "trending"}
    assert by_day[(D1, "lamps")] == 2 and by_day[(D2, "lamps")] == 2
    early = experiments.report(D0, D0)
    assert [counts(r) for r in early.daily] == [(1, 1, 1, 0, 0)]
    settings.TIME_ZONE = "Asia/Tokyo"  # UTC+9: D1 20:00 UTC (l2) is D2 in Tokyo
    tokyo = {
        (r.day, r.variant): r.counts.impressions
        for r in experiments.report(D1, D2).daily
        if r.recommender == "trending"
    }
    assert tokyo[(D1, "lamps")] == 1 and tokyo[(D2, "lamps")] == 3  # l1 on D1; l2, l3, l4 on D2


def test_empty_and_reversed_ranges(db):
    assert experiments.report(D1, D2).summary == []
    with pytest.raises(ValueError, match="before the start"):
        experiments.report(D2, D1)
