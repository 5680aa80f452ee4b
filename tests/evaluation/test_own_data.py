"""``ragrec_evaluate`` on a shop's own export (a synthetic fashion shop, other column names than Online Retail)
and on the data ``ragrec_import`` wrote: the same figures both ways; every bad input a clear ``CommandError``."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from ragrec_django.evaluation import runner
from ragrec_django.models import Interaction, Item

from . import fashion

pytestmark = pytest.mark.django_db

RECOMMENDERS = "popularity,cooc_last,cooc_all,for_you,buy_again,bought_together,trending"


@pytest.fixture(autouse=True)
def word_hash_text_space(settings):
    settings.RAGREC = {
        **settings.RAGREC,
        "ENCODERS": {"words": {"BACKEND": "tests.evaluation.fakes.WordHashEncoder", "OPTIONS": {}}},
        "SPACES": {"text": {"ENCODER": "words", "MODALITY": "text"}},
    }


@pytest.fixture
def export(tmp_path):
    return fashion.write(tmp_path / "fashion")


def file_args(orders, products):
    return [
        "--interactions",
        str(orders),
        "--products",
        str(products),
        "--map",
        *fashion.MAP,
        "--product-map",
        *fashion.PRODUCT_MAP,
        "--time-format",
        fashion.TIME_FORMAT,
        "--timezone",
        "Europe/Berlin",
    ]


def evaluate(tmp_path, *args, name="report"):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "ragrec_evaluate", *args, "--k", "5", "--table-k", "5", "--out", str(tmp_path / name), stdout=out, stderr=err
    )
    return json.loads((tmp_path / name / "report.json").read_text()), out.getvalue(), err.getvalue()


def figures(report):
    """Every scored curve of every recommender (latencies and times aside)."""
    return {
        variant: {
            name: {key: result[key] for key in ("recall", "ndcg", "hit_rate", "mrr", "se", "coverage", "users")}
            for name, result in body["results"].items()
        }
        for variant, body in report["variants"].items()
    }


def test_a_fashion_export_evaluates_from_files_and_after_import_with_the_same_figures(tmp_path, export):
    orders, products = export
    rows = fashion.orders()
    baskets = {(r["customer_ref"], r["basket_no"]) for r in rows}

    from_files, out, err = evaluate(
        tmp_path, *file_args(orders, products), "--database-live", "--recommenders", RECOMMENDERS
    )
    assert "recall@5" in out and "cooc_last" in out
    assert Item.objects.count() == 0 and Interaction.objects.count() == 0  # rolled back
    data = from_files["dataset"]
    # Order numbers restart at 1001 for every customer: baskets are (customer, order number) pairs.
    assert len({r["basket_no"] for r in rows}) <= 5 < len(baskets)
    assert data["baskets"] == len(baskets) and data["visitors"] == 90 and data["eligible_visitors"] == 90
    assert data["lines"] == len(rows) and data["items"] == len({r["article"] for r in rows})
    # The progress line says exactly which text was encoded.
    assert "the text is title + category + description, e.g. 'Black wool jumper Category: Knitwear. A black" in err
    results = from_files["variants"]["all"]["results"]
    assert set(results) == set(RECOMMENDERS.split(","))
    assert all(result["users"] == 90 for result in results.values())
    # Customers re-buy their basics: their own purchases find more of the next basket than popularity does.
    assert results["buy_again"]["recall"][4] > results["popularity"]["recall"][4]

    imported = io.StringIO()
    call_command(
        "ragrec_import",
        *file_args(orders, products),
        stdout=imported,
        stderr=io.StringIO(),
    )
    assert "Imported %d product(s) and %d interaction(s)" % (len(fashion.articles()), len(rows)) in imported.getvalue()
    assert "Product text (what the text space encodes): title + category + description" in imported.getvalue()
    jumper = Item.objects.get(key="KNI-00-BL")
    assert (jumper.group_key, jumper.category, str(jumper.price)) == ("KNI-00", "Knitwear", "17.99")
    assert jumper.metadata == {"image": "https://img.example/kni-00.jpg"}

    from_database, _, err = evaluate(tmp_path, "--database-live", "--recommenders", RECOMMENDERS, name="imported")
    assert "reading the events and items of database" in err
    assert "the item mirror's text, e.g. 'Black wool jumper Category: Knitwear." in err
    assert figures(from_database) == figures(from_files)
    assert from_database["dataset"]["baskets"] == len(baskets)
    # Evaluated in place and rolled back: the imported data is untouched.
    assert Interaction.objects.count() == len(rows) and Item.objects.filter(is_eligible=True).count() == 60


def test_the_learned_ranker_is_trained_inside_the_run_on_the_training_part_only(tmp_path, export):
    pytest.importorskip("lightgbm")
    report, _, err = evaluate(
        tmp_path,
        *file_args(*export),
        "--database-live",
        "--recommenders",
        "for_you,for_you_learned,bought_together,bought_together_learned,bought_together_learned_visitor,cooc_last",
    )
    training_lines = report["dataset"]["training_lines"]
    said = [line for line in err.splitlines() if "for_you_learned: " in line]
    assert any(" %d events, " % training_lines in line for line in said), "\n".join(
        said
    )  # train_ranker read the training part
    assert report["prepared"]["for_you_learned"]["version"]
    assert "paired_for_you_learned_vs_for_you" in report["variants"]["all"]
    assert report["variants"]["all"]["results"]["for_you_learned"]["users"] == 90
    # "bought together" served from the same model's basket table: trained once for both
    assert sum(" events, " in line for line in err.splitlines()) == 1
    assert report["prepared"]["bought_together_learned"] == report["prepared"]["for_you_learned"]
    assert report["prepared"]["bought_together_learned"]["basket_table_pairs"] > 0
    assert "paired_bought_together_learned_vs_bought_together" in report["variants"]["new"]
    assert report["variants"]["all"]["results"]["bought_together_learned"]["users"] == 90
    # with the shopper's repeat purchases: the same model, paired with co-occurrence in every variant (cart included)
    assert report["prepared"]["bought_together_learned_visitor"] == report["prepared"]["for_you_learned"]
    cart = report["variants"]["cart"]
    assert cart["results"]["bought_together_learned_visitor"]["users"] == cart["users"] > 0
    assert set(cart["paired_bought_together_learned_visitor_vs_cooc_last"]) == {"recall@10", "ndcg@10"}
    assert Interaction.objects.count() == 0


def test_user_ids_of_an_export_are_visitors_without_django_users(tmp_path):
    orders = tmp_path / "o.csv"
    orders.write_text(
        "user,item,timestamp,order\n"
        + "".join(
            "%d,%s,2024-02-0%d 10:00:00,%d\n" % (u, item, day, day)
            for u in (7, 8)
            for day, item in ((1, "A"), (2, "B"), (3, "A"))
        )
    )
    products = tmp_path / "p.csv"
    products.write_text("id,title\nA,red mug\nB,blue mug\n")
    report, _, _ = evaluate(
        tmp_path,
        "--interactions",
        str(orders),
        "--products",
        str(products),
        "--database-live",
        "--recommenders",
        "buy_again",
    )
    # Users 7 and 8 share order ids 1, 2, 3 and are still two visitors with three baskets each.
    assert report["dataset"]["eligible_visitors"] == 2 and report["dataset"]["baskets"] == 6
    assert report["variants"]["all"]["results"]["buy_again"]["recall"][1] == 1.0  # both re-buy A


# ---------------------------------------------------------------- bad inputs


@pytest.fixture
def files(tmp_path, export):
    """Named files for the bad-input cases."""
    folder = tmp_path / "empty_folder"
    folder.mkdir()
    latin = tmp_path / "latin.csv"
    latin.write_bytes("customer_ref,article\nC1,Pull \xe9t\xe9\n".encode("latin-1"))
    report_file = tmp_path / "report.txt"
    report_file.write_text("not a folder")
    one_order_each = tmp_path / "one_order_each.csv"
    one_order_each.write_text(
        "session,item,order,timestamp\nc1,KNI-00-BL,1001,2024-01-01T10:00\nc2,KNI-00-BL,1001,2024-01-02T10:00\n"
    )
    bad_rows = tmp_path / "bad_rows.csv"
    bad_rows.write_text(
        "session,item,order,timestamp,quantity\nc1,KNI-00-BL,1,2024-01-01T10:00,-2\nc1,NOPE,2,2024-01-02T10:00,1\n"
    )
    return {
        "orders": str(export[0]),
        "products": str(export[1]),
        "folder": str(folder),
        "latin": str(latin),
        "report_file": str(report_file),
        "one_order_each": str(one_order_each),
        "bad_rows": str(bad_rows),
    }


OWN = ["--interactions", "{orders}", "--products", "{products}", "--map", *fashion.MAP, "--product-map", *fashion.PRODUCT_MAP, "--time-format", fashion.TIME_FORMAT]  # fmt: skip
PLAIN_PRODUCTS = ["--products", "{products}", "--product-map", *fashion.PRODUCT_MAP]

BAD_EVALUATIONS = [
    (["--path", "/no/such/folder"], "No such folder: /no/such/folder"),
    (["--path", "{products}"], "is a file: give the folder holding online_retail.csv"),
    (["--path", "{folder}"], "No such file: {folder}/online_retail.csv (the online-retail data set's interactions)"),
    (["--dataset", "online-retail", "--path", "{folder}"], "No such file: {folder}/online_retail.csv"),
    (["--interactions", "/no/such.csv", "--products", "{products}"], "No such file: /no/such.csv (--interactions)"),
    (["--interactions", "{orders}", "--products", "/no/such.csv"], "No such file: /no/such.csv (--products)"),
    (["--interactions", "{folder}", "--products", "{products}"], "is a folder, not a file (--interactions)"),
    (["--interactions", "{orders}"], "--interactions needs --products"),
    (PLAIN_PRODUCTS, "--products needs --interactions"),
    ([*OWN, "--path", "{folder}"], "--path is the folder of a --dataset's files"),
    (["--imported", "--database-live"], "give one of them"),
    (
        ["--imported", *OWN],
        "already in the database; --interactions, --products, --map, --product-map, --time-format are for reading a data set",
    ),
    (["--imported", "--path", "{folder}"], "--imported evaluates the events already in the database; --path are for"),
    (["--database-live", "--map", "item=article"], "--database-live without a data set evaluates the events already"),
    (["--database-live", "--skip-invalid"], "; --skip-invalid are for reading a data set"),
    ([*OWN, "--database-live", "--keep-db"], "--keep-db: there is no scratch database with --database-live"),
    ([*OWN, "--database-live", "--db-name", "other"], "--db-name: there is no scratch database"),
    ([*OWN, "--db-name", "{live_db}"], "is the configured database"),
    ([*OWN, "--k", "0"], "--k must be >= 1"),
    ([*OWN, "--table-k", "21"], "--table-k between 1 and --k"),
    ([*OWN, "--users", "0"], "--users must be >= 1"),
    ([*OWN, "--recommenders", "for_you,magic"], "Unknown recommender(s) magic"),
    ([*OWN, "--recommenders", " , "], "--recommenders names none"),
    ([*OWN, "--out", "{report_file}"], "is a file; give a folder for the report"),
    ([*OWN, "--map", "colour=x"], "Unknown field 'colour' in mapping"),
    ([*OWN, "--map", "session"], "must look like field=column"),
    ([*OWN, "--map", "session=customer"], "has no column(s) for session=customer"),
    ([*OWN, "--product-map", "title=headline"], "articles.csv has no column(s) for title=headline"),
    (
        ["--interactions", "{orders}", *PLAIN_PRODUCTS[2:], "--products", "{products}"],
        "map a column to user or session",
    ),
    ([*OWN, "--delimiter", ";;"], "--delimiter must be one character"),
    ([*OWN, "--encoding", "klingon"], "Unknown --encoding 'klingon'"),
    ([*OWN, "--max-quantity", "0"], "--max-quantity must be at least 1"),
    ([*OWN, "--timezone", "Mars/Olympus"], "Unknown time zone 'Mars/Olympus'"),
    ([*OWN, "--event", "purchased"], "--event must be one of"),
    (["--interactions", "{latin}", *PLAIN_PRODUCTS], "is not utf-8-sig text"),
    (["--interactions", "{bad_rows}", *PLAIN_PRODUCTS], "2 invalid row(s): nothing was evaluated"),
    (["--interactions", "{one_order_each}", *PLAIN_PRODUCTS, "--database-live"], "has two or more baskets"),
    (["--database-live"], "holds no events"),
    (["--imported"], "holds no events"),
]


@pytest.mark.parametrize("args, message", BAD_EVALUATIONS, ids=[" ".join(a)[:60] for a, _ in BAD_EVALUATIONS])
def test_every_bad_evaluation_input_is_a_clear_command_error(files, tmp_path, args, message):
    names = {**files, "live_db": connection.settings_dict["NAME"]}
    argv = [arg.format(**names) for arg in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    with pytest.raises(CommandError) as caught:
        call_command("ragrec_evaluate", *argv, stdout=io.StringIO(), stderr=io.StringIO())
    assert message.format(**names) in str(caught.value)
    assert Item.objects.count() == 0 and Interaction.objects.count() == 0


def test_invalid_rows_are_listed_with_file_and_line(files):
    err = io.StringIO()
    with pytest.raises(CommandError, match="2 invalid row"):
        call_command(
            "ragrec_evaluate",
            "--interactions",
            files["bad_rows"],
            *[a.format(**files) for a in PLAIN_PRODUCTS],
            stdout=io.StringIO(),
            stderr=err,
        )
    assert "bad_rows.csv line 2: quantity must be a whole number" in err.getvalue()
    assert "bad_rows.csv line 3: unknown item 'NOPE' (not in articles.csv)" in err.getvalue()


def test_a_data_set_into_a_database_that_holds_data_is_refused_with_the_way_out(tmp_path, files, export):
    call_command("ragrec_import", *file_args(*export), stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match="already holds 60 item.*run ragrec_evaluate --database-live"):
        evaluate(tmp_path, *file_args(*export), "--database-live")


BAD_IMPORTS = [
    (["--preset", "online-retail", "--dir", "/no/such/folder"], "No such folder: /no/such/folder (--dir)"),
    (["--preset", "online-retail", "--dir", "{folder}"], "No such file: {folder}/online_retail.csv (--interactions)"),
    (["--dir", "{folder}"], "--dir needs --preset"),
    ([], "Give --interactions FILE, --products FILE, or both"),
    (["--interactions", "/no/such.csv"], "No such file: /no/such.csv (--interactions)"),
    (["--products", "{folder}"], "is a folder, not a file (--products)"),
    ([*OWN, "--delimiter", ""], "--delimiter must be one character"),
    ([*OWN, "--encoding", "klingon"], "Unknown --encoding 'klingon'"),
    ([*OWN, "--max-quantity", "-5"], "--max-quantity must be at least 1"),
    (["--interactions", "{latin}", "--map", "session=customer_ref", "item=article"], "is not utf-8-sig text"),
]


@pytest.mark.parametrize("args, message", BAD_IMPORTS, ids=[" ".join(a)[:60] for a, _ in BAD_IMPORTS])
def test_every_bad_import_input_is_a_clear_command_error(files, args, message):
    argv = [arg.format(**files) for arg in args]
    with pytest.raises(CommandError) as caught:
        call_command("ragrec_import", *argv, stdout=io.StringIO(), stderr=io.StringIO())
    assert message.format(**files) in str(caught.value)
    assert Item.objects.count() == 0 and Interaction.objects.count() == 0


def test_help_says_what_text_is_encoded():
    from django.core.management import load_command_class

    for command in ("ragrec_import", "ragrec_evaluate"):
        help_text = load_command_class("ragrec_django", command).create_parser("manage.py", command).format_help()
        text = " ".join(help_text.split())
        assert "the text space encodes, for each product, title + ' Category: CATEGORY.' + ' DESCRIPTION'" in text
        assert "nothing else of the product (price, image, url, group) is encoded" in text
        assert "group variant group" in text


# ---------------------------------------------------------------- a database that has not been migrated


@pytest.fixture
def unmigrated_database(django_db_blocker):
    """A real, empty PostgreSQL database on the test server; the default connection points at it meanwhile."""
    settings_dict = connection.settings_dict
    original = settings_dict["NAME"]
    name = original + "_unmigrated"
    quoted = connection.ops.quote_name(name)
    with django_db_blocker.unblock():
        with connection._nodb_cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS %s" % quoted)
            cursor.execute("CREATE DATABASE %s" % quoted)
        connection.close()
        settings_dict["NAME"] = name
        try:
            yield name
        finally:
            connection.close()
            settings_dict["NAME"] = original
            with connection._nodb_cursor() as cursor:
                cursor.execute("DROP DATABASE IF EXISTS %s" % quoted)


@pytest.mark.django_db(transaction=True)
def test_commands_on_a_database_that_was_never_migrated_name_migrate(unmigrated_database, export, tmp_path):
    out = ["--out", str(tmp_path / "out")]
    for command, args in (
        ("ragrec_import", file_args(*export)),
        ("ragrec_evaluate", ["--database-live", *out]),
        ("ragrec_evaluate", ["--imported", *out]),
        ("ragrec_evaluate", [*file_args(*export), "--database-live", *out]),
    ):
        with pytest.raises(CommandError) as caught:
            call_command(command, *args, stdout=io.StringIO(), stderr=io.StringIO())
        message = str(caught.value)
        assert "The database %r has not been migrated" % unmigrated_database in message, (command, args)
        assert "ragrec_django.0001_initial" in message and "Run `manage.py migrate` first." in message


def test_runner_tells_apart_two_customers_sharing_an_order_id():
    rows = runner.as_sessions(
        runner.Dataset("x", [], [
            runner.InteractionRow(1, "purchase", "A", "c1", None, "1001", 1, "", _at(1)),
            runner.InteractionRow(2, "purchase", "B", "c2", None, "1001", 1, "", _at(1)),
            runner.InteractionRow(3, "purchase", "C", "", 5, "1001", 1, "", _at(2)),
        ])
    ).interactions  # fmt: skip
    baskets = runner.baskets_of(rows)
    assert {visitor: [b.items for b in found] for visitor, found in baskets.items()} == {
        "c1": [["A"]],
        "c2": [["B"]],
        "user-5": [["C"]],
    }


def _at(day):
    from datetime import timezone

    return datetime(2024, 1, day, 10, tzinfo=timezone.utc)


def test_the_time_shift_keeps_every_gap_across_a_dst_change():
    """Summer and winter events of a naive Europe/Berlin export keep their distance (shifted in UTC, not on
    the wall clock), and the last training event is not in the future."""
    from zoneinfo import ZoneInfo

    from django.utils import timezone

    berlin = ZoneInfo("Europe/Berlin")
    times = [datetime(2024, 1, 10, 10, tzinfo=berlin), datetime(2024, 7, 10, 10, tzinfo=berlin)]
    rows = [runner.InteractionRow(n, "purchase", "A", "c1", None, str(n), 1, "", at) for n, at in enumerate(times)]
    rows.append(runner.InteractionRow(9, "purchase", "A", "c1", None, "9", 1, "", datetime(2024, 7, 11, tzinfo=berlin)))
    data = runner.Dataset("dst", [runner.ProductRow(1, "A", "red mug")], rows)
    split = runner.temporal_split(data.interactions)
    runner.load_training_data(data, split)
    stored = sorted(Interaction.objects.values_list("created_at", flat=True))
    utc = [at.astimezone(UTC) for at in times]  # (same-zone subtraction in Python is wall-clock time)
    assert stored[1] - stored[0] == utc[1] - utc[0] == timedelta(days=182, hours=-1)
    assert stored[1] <= timezone.now()
