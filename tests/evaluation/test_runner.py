"""The evaluation runner end to end on a tiny data set whose baseline scores are known by hand."""

import io
import json
import re

import pytest
from django.core.management import call_command
from django.utils import timezone

from ragrec_django.evaluation import learned_ranker, runner
from ragrec_django.evaluation import report as reports
from ragrec_django.ingest import read_interactions, read_products
from ragrec_django.models import Interaction, Item

from .fakes import WordHashEncoder

PRODUCTS = "id,title\n" + "".join(
    "%s,%s\n" % pair
    for pair in [
        ("A", "red ceramic mug"),
        ("B", "blue ceramic mug"),
        ("C", "green tea cup"),
        ("D", "brass desk lamp"),
        ("E", "black floor lamp"),
        ("F", "copper kettle"),
        ("G", "glass kettle"),
        ("H", "linen shirt"),
    ]
)

# u1: o1 {A,B} then o2 {A,C}; u2: o3 {A,B,D} then o4 {B,E}; u3: o5 {A,F} only; u4: o6 {B,C} then o7 {G}.
BASKETS = [
    ("u1", "o1", 1, "AB"),
    ("u2", "o3", 2, "ABD"),
    ("u3", "o5", 3, "AF"),
    ("u4", "o6", 4, "BC"),
    ("u1", "o2", 5, "AC"),
    ("u2", "o4", 6, "BE"),
    ("u4", "o7", 7, "G"),
]
ORDERS = "session,item,timestamp,order\n" + "".join(
    "%s,%s,2024-01-0%d 10:00:00,%s\n" % (visitor, item, day, order)
    for visitor, order, day, items in BASKETS
    for item in items
)


def dataset():
    def read(reader, text):
        handle = io.StringIO(text)
        handle.name = "tiny.csv"
        result = reader(handle, time_zone="UTC") if reader is read_interactions else reader(handle)
        assert result.error_count == 0
        return result.rows

    return runner.Dataset("tiny", read(read_products, PRODUCTS), read(read_interactions, ORDERS))


def test_temporal_split_holds_out_each_last_basket():
    split = runner.temporal_split(dataset().interactions)
    assert {v: set(b.items) for v, b in split.test.items()} == {"u1": {"A", "C"}, "u2": {"B", "E"}, "u4": {"G"}}
    assert split.held_out_lines == 5 and len(split.train) == 9
    assert {r.order_id for r in split.train} == {"o1", "o3", "o5", "o6"}
    assert [b.order_id for b in split.history["u2"]] == ["o3"]
    assert split.bought("u2") == {"A", "B", "D"}


@pytest.mark.django_db
def test_end_to_end_with_known_baseline_scores(tmp_path):
    data = dataset()
    report = runner.evaluate(data, runner.Options(k_max=5), encoder=WordHashEncoder())

    # Only training events reach the database the services read, shifted so the last one is now.
    assert Interaction.objects.count() == 9
    assert not Interaction.objects.filter(order_id__in=["o2", "o4", "o7"]).exists()
    latest = Interaction.objects.order_by("-created_at").first().created_at
    assert abs((timezone.now() - latest).total_seconds()) < 120
    assert Item.objects.count() == 8

    # Popularity (training baskets holding the item): A=3, B=3, C=D=F=1, E=G=H=0 -> A B C D F E G H.
    popularity = report["variants"]["all"]["results"]["popularity"]
    # u1 wants {A,C}, u2 {B,E}, u4 {G}: recall@1 = (1/2 + 0 + 0)/3, @2 = (1/2 + 1/2 + 0)/3, @3 = (1 + 1/2 + 0)/3
    assert popularity["recall"][:3] == pytest.approx([1 / 6, 1 / 3, 1 / 2], abs=1e-6)
    assert popularity["hit_rate"][:2] == pytest.approx([1 / 3, 2 / 3], abs=1e-6)
    assert popularity["mrr"] == pytest.approx((1 + 1 / 2 + 0) / 3, abs=1e-6)  # MRR@5: u4's G is 7th -> 0
    assert popularity["users"] == 3
    # Per-visitor recall@1 is (1/2, 0, 0): sample variance 1/12, standard error sqrt(1/12 / 3) = 1/6.
    assert popularity["se"]["recall"][0] == pytest.approx(1 / 6, abs=1e-6)
    # Everyone gets the same list: coverage@k = k / 8 items.
    assert popularity["coverage"] == pytest.approx([k / 8 for k in range(1, 6)])

    # "new": own purchases removed from lists and targets. u1 wants {C}: [C ...]; u2 {E}: [C F E ...]; u4 {G}: [A D F E G].
    new = report["variants"]["new"]["results"]["popularity"]
    assert new["recall"] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3, 1.0], abs=1e-6)
    assert report["variants"]["new"]["users"] == 3

    # Co-occurrence with the last training basket: u1 {A,B} -> A:2 B:2 D:2 C:1 F:1 (ties by popularity) = A B D C F;
    # u2 {A,B,D} -> A:3 B:3 D:2 C:1 F:1 = A B D ...; u4 {B,C} -> A:2 B:1 C:1 D:1 = A B C D.
    cooc = report["variants"]["all"]["results"]["cooc_last"]
    assert cooc["recall"][:2] == pytest.approx([(1 / 2 + 0 + 0) / 3, (1 / 2 + 1 / 2 + 0) / 3], abs=1e-6)

    # The services ran on the loaded data; ablations run only when named.
    results = report["variants"]["all"]["results"]
    assert set(results) == set(runner.DEFAULT_RECOMMENDERS)
    assert not {name for name, r in runner.RECOMMENDERS.items() if r.kind == "ablation"} & set(results)
    assert results["trending"]["empty_lists"] == 0 and results["for_you"]["empty_lists"] == 0
    assert results["buy_again"]["hit_rate"][4] == pytest.approx(2 / 3, abs=1e-6)  # u1 re-buys A, u2 B; u4 buys G (new)
    # for_you fuses the repeat list in: it finds u1's A and u2's B again, as buy_again does.
    assert results["for_you"]["hit_rate"][4] == pytest.approx(2 / 3, abs=1e-6)
    assert report["recommenders"]["bought_together"]["kind"] == "service"
    assert set(report["latency_per_visitor"]) == set(runner.DEFAULT_RECOMMENDERS)
    assert report["latency_per_visitor"]["for_you"]["p95_ms"] >= report["latency_per_visitor"]["for_you"]["p50_ms"] > 0
    assert set(report["load_average_1min"]) == {"start", "min", "max", "end"}
    assert report["dataset"]["eligible_visitors"] == 3 and report["dataset"]["training_lines"] == 9
    assert report["variants"]["all"]["results"]["for_you"]["diversity"][0] is None  # k=1 has no pairs

    written = reports.write(report, tmp_path, k=5)
    assert json.loads((tmp_path / "report.json").read_text())["k_max"] == 5
    # recall@5 = (1 + 1/2 + 0)/3, with its standard error
    assert re.search(
        r"\| popularity \| baseline \| (\*\*)?0\.5000(\*\*)? ±0\.\d{4} \|", (tmp_path / "results.md").read_text()
    )
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        assert written["metrics_all"].stat().st_size > 1000 and written["metrics_new"].exists()
    assert "popularity" in reports.text_table(report, k=5)


@pytest.mark.django_db
def test_bought_together_is_one_basket_call_per_visitor(monkeypatch):
    from ragrec_django.services import history

    calls = []
    basket_service = history.bought_together_for_basket

    def counted(item_keys, **kwargs):
        calls.append((sorted(item_keys), kwargs.get("visitor")))
        return basket_service(item_keys, **kwargs)

    monkeypatch.setattr(history, "bought_together_for_basket", counted)
    data = dataset()
    split = runner.temporal_split(data.interactions)
    runner.load_training_data(data, split)
    runner.encode_catalogue(data.products, WordHashEncoder())
    ctx = runner.build_context(split, [p.key for p in data.products], depth=6)
    # u1's last training basket is o1 {A,B}. Training baskets: o1 {A,B}, o3 {A,B,D}, o5 {A,F}, o6 {B,C}:
    # D is bought with A once and with B once (2); C with B (1); F with A (1). A and B never come back.
    assert runner.rec_bought_together(ctx, "u1")[:3] == ["D", "C", "F"]
    assert calls == [(["A", "B"], None)]
    # With the visitor: u1 bought only A and B, both in the basket, so nothing is added.
    assert runner.rec_bought_together_visitor(ctx, "u1")[:3] == ["D", "C", "F"]
    assert len(calls) == 2 and calls[1][1].session_key == "u1"
    # u2's last training basket o3 {A,B,D}: C (with B in o6) and F (with A in o5), 1 each.
    assert runner.rec_bought_together(ctx, "u2")[:2] == ["C", "F"]
    # the learned path with repeats passes the shopper (no model here: the counts serve, as a shop's fallback)
    assert learned_ranker.recommend_basket_with_repeats(ctx, "u2")[:2] == ["C", "F"]
    assert calls[-1] == (["A", "B", "D"], calls[-1][1]) and calls[-1][1].session_key == "u2"
    ctx.carts = {"u2": ["B"]}
    learned_ranker.recommend_basket(ctx, "u2")
    assert calls[-1] == (["B"], None)  # the cart, without the shopper


def test_a_cart_is_the_first_half_of_the_held_out_basket_in_line_order():
    basket = runner.Basket("o9", timezone.now(), ["C", "A", "B", "D", "E"])
    assert runner.cart_of(basket) == (["C", "A"], {"B", "D", "E"})
    assert runner.cart_of(runner.Basket("o8", timezone.now(), ["A", "C"])) == (["A"], {"C"})
    assert runner.cart_of(runner.Basket("o7", timezone.now(), ["G"])) == (["G"], set())


@pytest.mark.django_db
def test_the_cart_variant_asks_the_basket_recommenders_again_with_the_cart(monkeypatch):
    from ragrec_django.services import history

    baskets = []
    basket_service = history.bought_together_for_basket

    def recorded(item_keys, **kwargs):
        baskets.append(list(item_keys))
        return basket_service(item_keys, **kwargs)

    monkeypatch.setattr(history, "bought_together_for_basket", recorded)
    report = runner.evaluate(
        dataset(),
        runner.Options(k_max=10, recommenders=["bought_together", "cooc_last", "popularity"]),
        encoder=WordHashEncoder(),
    )
    cart = report["variants"]["cart"]
    # Held out: u1 o2 {A,C} -> cart [A], target C; u2 o4 {B,E} -> cart [B], target E; u4 o7 {G} has no rest.
    assert cart["users"] == 2 and cart["per_shopper"]["visitors"] == ["u1", "u2"]
    # The service was asked for the last training baskets (3 visitors), then for the two carts.
    assert baskets == [["A", "B"], ["A", "B", "D"], ["B", "C"], ["A"], ["B"]]
    # Co-occurrence with the cart, the cart removed: u1 [A] -> B:2 D:1 F:1 then C (popularity 1) 4th;
    # u2 [B] -> A:2 C:1 D:1 F:0 (popularity 1) then E 5th.
    assert cart["results"]["cooc_last"]["recall"] == pytest.approx([0, 0, 0, 0.5] + [1.0] * 6, abs=1e-6)
    # Popularity (not a basket recommender) keeps its list, with the cart removed: A B C D F E G H:
    # u1 without A: B C ... (C 2nd); u2 without B: A C D F E (E 5th).
    assert cart["results"]["popularity"]["recall"][:5] == pytest.approx([0, 0.5, 0.5, 0.5, 1.0], abs=1e-6)
    # The basket service is paired with the baseline shopper by shopper (the baseline finds both targets by 10).
    paired = cart["paired_bought_together_vs_cooc_last"]["recall@10"]
    assert paired["mean_difference"] == pytest.approx(cart["results"]["bought_together"]["recall"][9] - 1.0, abs=1e-6)
    assert paired["wins"] == 0
    assert "paired_bought_together_vs_cooc_last" in report["variants"]["all"]
    assert report["variants"]["all"]["results"]["cooc_last"]["users"] == 3


@pytest.mark.django_db
def test_ablations_run_for_you_with_some_lists_only():
    report = runner.evaluate(
        dataset(),
        runner.Options(k_max=3, recommenders=["for_you_repeat", "for_you_similar"]),
        encoder=WordHashEncoder(),
    )
    results = report["variants"]["all"]["results"]
    assert {report["recommenders"][name]["kind"] for name in results} == {"ablation"}
    # Repeats only: u1 (wants A, C) gets [A, B], u2 (wants B, E) [A, B, D] in some order, u4 (wants G) [B, C].
    assert results["for_you_repeat"]["hit_rate"][2] == pytest.approx(2 / 3, abs=1e-6)
    # Similar only never shows a bought item: in variant "all" it cannot find u1's A or u2's B.
    assert results["for_you_similar"]["users"] == 3


@pytest.mark.django_db
def test_sample_and_refusal_of_a_non_empty_database():
    data = dataset()
    report = runner.evaluate(
        data, runner.Options(k_max=3, users=2, seed=1, recommenders=["popularity"]), encoder=WordHashEncoder()
    )
    assert report["dataset"]["evaluated_visitors"] == 2 and report["dataset"]["sample"] is True
    assert set(report["variants"]["all"]["results"]) == {"popularity"}
    with pytest.raises(runner.DatabaseNotEmpty):
        runner.evaluate(data, runner.Options(k_max=3, recommenders=["popularity"]), encoder=WordHashEncoder())


def code(item):
    """Stock codes like the real ones ("B" and "D" are the data set's bad-debt and discount codes)."""
    return "8500%d" % "ABCDEFGH".index(item)


ONLINE_RETAIL = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    + "".join(
        "%s,%s,x,2,2011-01-0%d 10:00:00,1.0,%s.0,United Kingdom\n"
        % (order, code(item), day, visitor.replace("u", "10"))
        for visitor, order, day, items in BASKETS
        for item in items
    )
    + "999,POST,POSTAGE,1,2011-01-09 10:00:00,1.0,1.0,United Kingdom\n"
)


@pytest.mark.django_db
def test_command_on_the_live_database_rolls_back(settings, tmp_path):
    settings.RAGREC = {
        **settings.RAGREC,
        "ENCODERS": {"minilm": {"BACKEND": "tests.evaluation.fakes.WordHashEncoder", "OPTIONS": {}}},
        "SPACES": {"text": {"ENCODER": "minilm", "MODALITY": "text"}},
    }
    folder = tmp_path / "retail"
    folder.mkdir()
    (folder / "online_retail.csv").write_text(ONLINE_RETAIL)
    (folder / "products.csv").write_text(
        "StockCode,Description,median_unit_price\n"
        + "".join("%s,%s,1.0\n" % (code(line[0]), line[2:]) for line in PRODUCTS.splitlines()[1:])
    )
    out = io.StringIO()
    call_command(
        "ragrec_evaluate",
        "--path",
        str(folder),
        "--database-live",
        "--k",
        "5",
        "--table-k",
        "3",
        "--out",
        str(tmp_path / "report"),
        "--recommenders",
        "popularity,for_you",
        stdout=out,
        stderr=io.StringIO(),
    )
    assert "recall@3" in out.getvalue() and "popularity" in out.getvalue()
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["variants"]["all"]["results"]["popularity"]["recall"][:3] == pytest.approx(
        [1 / 6, 1 / 3, 1 / 2], abs=1e-6
    )
    assert Item.objects.count() == 0 and Interaction.objects.count() == 0  # rolled back
