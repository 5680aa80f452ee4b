"""Per-shopper values and the paired comparison against ``for_you`` (fusion) in the evaluation report."""

import csv
import gzip
import io
import json
import math

import pytest

from ragrec_django.evaluation import report as reports
from ragrec_django.evaluation import runner

from .fakes import WordHashEncoder
from .test_runner import dataset


@pytest.mark.django_db
def test_the_report_keeps_every_shoppers_values_and_pairs_each_recommender_with_fusion(tmp_path):
    report = runner.evaluate(dataset(), runner.Options(k_max=5), encoder=WordHashEncoder())
    data = report["variants"]["all"]
    kept = data["per_shopper"]
    assert kept["k"] == 5 and kept["visitors"] == ["u1", "u2", "u4"]
    # popularity's list is A B C D F E G H: u1 wants {A,C} (both in the top 5), u2 {B,E} (E 6th), u4 {G} (7th)
    assert kept["values"]["popularity"]["recall@5"] == [1.0, 0.5, 0.0]
    # every recommender's kept values average to its reported recall@5 and nDCG@5
    for name, values in kept["values"].items():
        for metric, curve in (("recall@5", "recall"), ("ndcg@5", "ndcg")):
            assert sum(values[metric]) / 3 == pytest.approx(data["results"][name][curve][4], abs=1e-6)

    # the paired comparison: each recommender - for_you, shopper by shopper, with its standard error
    paired = data["paired_vs_for_you"]
    assert set(paired) == set(runner.DEFAULT_RECOMMENDERS) - {"for_you"}
    for name in paired:
        for metric in ("recall@5", "ndcg@5"):
            differences = [a - b for a, b in zip(kept["values"][name][metric], kept["values"]["for_you"][metric])]
            mean = sum(differences) / 3
            se = math.sqrt(sum((d - mean) ** 2 for d in differences) / 2 / 3)
            got = paired[name][metric]
            assert got["mean_difference"] == pytest.approx(mean, abs=1e-6) and got["se"] == pytest.approx(se, abs=1e-6)
            assert got["better"] == sum(d > 0 for d in differences) and got["worse"] == sum(d < 0 for d in differences)
            assert got["users"] == 3
    # in "new" the shoppers are those with a new item held out, in the same order for every recommender
    assert report["variants"]["new"]["per_shopper"]["visitors"] == ["u1", "u2", "u4"]
    assert "popularity" in report["variants"]["new"]["paired_vs_for_you"]

    written = reports.write(report, tmp_path, k=5)
    stored = json.loads((tmp_path / "report.json").read_text())
    assert "per_shopper" not in stored["variants"]["all"]  # kept out of report.json: per_shopper.csv.gz has them
    assert stored["variants"]["all"]["paired_vs_for_you"] == paired
    rows = list(csv.reader(io.StringIO(gzip.decompress(written["per_shopper"].read_bytes()).decode())))
    assert rows[0][:2] == ["variant", "visitor"] and "popularity recall@5" in rows[0]
    column = rows[0].index("popularity recall@5")
    assert [(r[0], r[1], float(r[column])) for r in rows[1:4]] == [
        ("all", "u1", 1.0),
        ("all", "u2", 0.5),
        ("all", "u4", 0.0),
    ]
    assert len(rows) == 1 + 3 + 3 + 2  # all, new, cart (u4's held-out basket has one item: no cart)
    assert [(r[0], r[1]) for r in rows[-2:]] == [("cart", "u1"), ("cart", "u2")]
    markdown = (tmp_path / "results.md").read_text()
    line = "| popularity | %+.4f ±%.4f (%d / %d) | " % tuple(
        paired["popularity"]["recall@5"][key] for key in ("mean_difference", "se", "better", "worse")
    )
    assert "Paired against `for_you` (fusion), variant `all`" in markdown and line in markdown
    assert "| for_you | " in markdown.split("### Per-shopper call time")[1]


def test_without_fusion_in_the_run_there_is_nothing_to_pair():
    assert runner.paired_against({"popularity": {"recall@10": [0.5, 1.0]}}) == {}
    assert runner.paired_against({"for_you": {"recall@10": [0.5, 1.0]}, "x": {"recall@10": [1.0, 1.0]}}) == {
        "x": {"recall@10": {"mean_difference": 0.25, "se": 0.25, "better": 1, "worse": 0, "users": 2}}
    }
