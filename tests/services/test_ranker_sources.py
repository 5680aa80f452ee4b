"""The seventh round's "for you" sources and features from the database: co-views, the vector spaces' profile
neighbours, trending, category popularity, new items and the latest session, as the in-memory log gives them for
training, and never an event after T."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from ragrec_django.models import Interaction, Item
from ragrec_django.ranking import learned
from ragrec_django.services import ranker
from ragrec_django.services.results import Visitor
from ragrec_django.storage import ranking as store
from tests.services.test_ranker import fresh_models  # noqa: F401 (autouse here too)

pytestmark = pytest.mark.django_db


def write(ids, rows):
    """``(visitor, event, title, days ago, minutes after)`` rows as events (a purchase is an order of its own per
    visitor and day)."""
    now = timezone.now()
    Interaction.objects.bulk_create(
        [
            Interaction(
                event=event,
                item_id=ids[title],
                session_key=visitor,
                order_id="%s-%g" % (visitor, days) if event == "purchase" else "",
                created_at=now - timedelta(days=days) + timedelta(minutes=minutes),
            )
            for visitor, event, title, days, minutes in rows
        ]
    )


def shop(catalogue):
    """s1 bought mugs (and a lamp), then viewed lamps in one session; four others viewed a lamp and a kettle
    together and bought two mugs never bought before, and two of them a tee (new items)."""
    ids = dict(Item.objects.values_list("title", "id"))
    rows = [
        ("s1", "purchase", "Red ceramic coffee mug", 40, 0),
        ("s1", "purchase", "Blue ceramic coffee mug", 40, 0),
        ("s1", "purchase", "Red ceramic coffee mug", 20, 0),
        ("s1", "purchase", "Brass desk lamp", 20, 0),
        ("s1", "view", "Copper stovetop tea kettle", 12.5, 0),  # an earlier session, over a day before
        ("s1", "view", "Black floor lamp", 11, 0),  # the latest session
        ("s1", "click", "Black floor lamp", 11, 5),
        ("s1", "view", "Bedside reading lamp", 11, 10),
    ]
    for visitor in ("s2", "s3", "s4", "s5"):
        rows += [
            (visitor, "view", "Black floor lamp", 13, 0),
            (visitor, "view", "Glass kettle with tea infuser", 13, 20),
            (visitor, "purchase", "White porcelain tea cup", 14, 0),
            (visitor, "purchase", "Green enamel camping mug", 14, 0),
        ]
    rows += [(visitor, "purchase", "Black organic cotton tee", 12, 0) for visitor in ("s2", "s3")]
    write(ids, rows)
    return ids


def read_both(at):
    """``s1``'s candidates, history and signals at ``at`` from the database and from the in-memory log."""
    prices, categories = store.item_catalogue()
    log = learned.EventLog.build(
        list(store.event_lines()), prices=prices, categories=categories, stock=store.item_stock_states()
    )
    vectors = ranker.training_vectors()
    got = ranker.signals_for(Visitor(session_key="s1"), at, None, vectors=ranker.DatabaseVectors(vectors.spaces))
    return got, log.candidates_at("ss1", at, vectors=vectors)  # the log keys sessions as "s<key>"


def test_the_rounds_sources_and_features_from_the_database_are_the_logs_and_never_read_after_t(catalogue):
    ids = shop(catalogue)
    at = (timezone.now() - timedelta(days=10)).timestamp()
    got, want = read_both(at)
    candidates, history, signals = got
    assert candidates.items.tolist() == want[0].items.tolist()
    assert candidates.sources == want[0].sources and set(candidates.spaces) == {"text", "image"}
    rows = learned.feature_matrix(*got)
    np.testing.assert_allclose(rows, learned.feature_matrix(*want), rtol=1e-4, atol=1e-6, equal_nan=True)

    where = {int(item): i for i, item in enumerate(candidates.items)}
    names = learned.feature_names(candidates.spaces)
    # co-views of s1's viewed lamps: the kettle the other four viewed with the floor lamp
    assert candidates.scores["co_view"][where[ids["Glass kettle with tea infuser"]]] == 4
    # new: first ordered in the last 30 days, by orders (the cup and the enamel mug 4, the tee 2; s1's lamp is theirs)
    new = [ids[title] for title in ("White porcelain tea cup", "Green enamel camping mug", "Black organic cotton tee")]
    assert sorted(candidates.ranks["new"][[where[i] for i in new]].tolist()) == [1, 2, 3]
    assert candidates.ranks["new"][where[new[2]]] == 3 and candidates.scores["new"][where[new[2]]] == 2
    # s1's categories: mugs (3 lines of 4), lamps: the mugs others bought lead
    assert candidates.ranks["category"][where[ids["White porcelain tea cup"]]] in (1, 2)
    for source in ("trending", "space:text", "space:image"):
        assert not np.isnan(candidates.ranks[source]).all(), source
    assert rows[where[ids["Black floor lamp"]], names.index("session_item_events")] == 2
    assert rows[where[ids["Glass kettle with tea infuser"]], names.index("session_category_events")] == 0
    assert rows[0, names.index("session_events")] == 3
    assert not np.isnan(rows[:, names.index("space_text_cosine")]).any()

    # events after T (s1's session going on, more co-views, a newer item) change nothing at T
    write(
        ids,
        [
            ("s1", "view", "Green linen shirt", 10, 1),
            ("s6", "view", "Black floor lamp", 9, 0),
            ("s6", "view", "Brass desk lamp", 9, 1),
            ("s6", "purchase", "Green linen shirt", 9, 0),
            ("s7", "purchase", "Black organic cotton tee", 5, 0),
        ],
    )
    ranker.forget_models()
    again = ranker.signals_for(Visitor(session_key="s1"), at, None, vectors=ranker.DatabaseVectors(["text", "image"]))
    assert again[0].items.tolist() == candidates.items.tolist()
    np.testing.assert_array_equal(learned.feature_matrix(*again), rows)
