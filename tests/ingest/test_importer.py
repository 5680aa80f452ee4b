"""CSV import: mappings, validation with line numbers, all-or-nothing, the online-retail preset, the command."""

import io
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from ragrec_django import ingest
from ragrec_django.models import Interaction, Item

pytestmark = pytest.mark.django_db

PRODUCTS = """sku,name,body,section,cost,picture
P1,Red mug,A red ceramic mug.,Mugs,4.5,img/p1.jpg
P2,Blue mug,,Mugs,4.499,
P3,Brass lamp,A desk lamp.,Lamps,,
"""

ORDERS = """customer,sku,when,order_no,qty
c1,P1,2024-03-01 10:00:00,o1,2
c1,P2,2024-03-01 10:00:00,o1,1
c2,P3,2024-03-02T09:30:00+01:00,o2,1
c2,P1,1709460000,o3,3
"""

MAP = {"session": "customer", "item": "sku", "timestamp": "when", "order": "order_no", "quantity": "qty"}
PRODUCT_MAP = {
    "id": "sku",
    "title": "name",
    "description": "body",
    "category": "section",
    "price": "cost",
    "image": "picture",
}


def csv_file(text, name):
    handle = io.StringIO(text)
    handle.name = name
    return handle


def run_import(orders=ORDERS, products=PRODUCTS, **kwargs):
    return ingest.import_csv(
        interactions=csv_file(orders, "orders.csv") if orders is not None else None,
        products=csv_file(products, "products.csv") if products is not None else None,
        mapping=MAP,
        product_mapping=PRODUCT_MAP,
        time_zone="UTC",
        **kwargs,
    )


def test_happy_path_imports_items_and_interactions():
    written, products, orders = run_import()
    assert (written.products, written.interactions, written.skipped) == (3, 4, 0)
    assert products.total == 3 and orders.total == 4

    mug = Item.objects.get(key="P1")
    assert mug.title == "Red mug" and mug.category == "Mugs" and mug.price == Decimal("4.50")
    assert mug.text == "Red mug Category: Mugs. A red ceramic mug."
    assert mug.metadata == {"image": "img/p1.jpg"}
    assert Item.objects.get(key="P2").price == Decimal("4.50")  # rounded to cents
    assert Item.objects.get(key="P3").price is None
    assert Item.objects.filter(search_vector__isnull=False).count() == 3  # keyword search works on them

    rows = {(e.session_key, e.item.key): e for e in Interaction.objects.select_related("item")}
    first = rows[("c1", "P1")]
    assert (first.event, first.order_id, first.quantity) == ("purchase", "o1", 2)
    assert first.created_at == datetime(2024, 3, 1, 10, 0, tzinfo=timezone.utc)  # naive -> --timezone
    assert rows[("c2", "P3")].created_at == datetime(2024, 3, 2, 8, 30, tzinfo=timezone.utc)  # offset kept
    assert rows[("c2", "P1")].created_at == datetime.fromtimestamp(1709460000, tz=timezone.utc)  # Unix seconds


def test_bad_rows_are_reported_with_line_numbers_and_nothing_is_imported():
    orders = ORDERS + (
        "c3,P1,2024-03-03 10:00:00,o4,0\n"  # line 6: quantity
        "c3,P1,yesterday,o4,1\n"  # line 7: timestamp
        ",P2,2024-03-03 10:00:00,o4,1\n"  # line 8: no visitor
        "c3,NOPE,2024-03-03 10:00:00,o4,1\n"  # line 9: unknown item (found when resolving)
        "c3,P1,2099-01-01 00:00:00,o4,1\n"  # line 10: future
    )
    with pytest.raises(ingest.ImportRefused) as caught:
        run_import(orders)
    errors = {error.line: " ".join(error.messages) for error in caught.value.errors}
    assert sorted(errors) == [6, 7, 8, 9, 10]
    assert "quantity must be a whole number from 1 to 10000" in errors[6]
    assert "'yesterday' is not a date" in errors[7]
    assert "no user or session" in errors[8]
    assert "unknown item 'NOPE'" in errors[9]
    assert "in the future" in errors[10]
    assert str(caught.value.errors[0]).startswith("orders.csv line 6: ")
    assert Item.objects.count() == 0 and Interaction.objects.count() == 0

    with pytest.raises(ingest.ImportRefused) as caught:  # only the reference error left
        run_import(ORDERS + "c3,NOPE,2024-03-03 10:00:00,o4,1\n")
    assert [(e.line, e.messages) for e in caught.value.errors] == [
        (6, ("unknown item 'NOPE' (not in the products file nor in the item mirror)",))
    ]
    assert Item.objects.count() == 0 and Interaction.objects.count() == 0  # products rolled back too


def test_skip_invalid_drops_bad_rows_explicitly():
    orders = ORDERS + "c3,P1,2024-03-03 10:00:00,o4,abc\nc3,NOPE,2024-03-03 10:00:00,o4,1\n"
    written, _, _ = run_import(orders, skip_invalid=True)
    assert (written.products, written.interactions, written.skipped) == (3, 4, 2)
    assert sorted(e.line for e in written.errors) == [6, 7]
    assert Interaction.objects.count() == 4


def test_product_errors_and_user_ids():
    products = PRODUCTS + "P1,Again,,,1,\nP4,,,,1,\nP5,Lamp,,,-3,\n"
    with pytest.raises(ingest.ImportRefused) as caught:
        run_import(products=products)
    errors = {error.line: " ".join(error.messages) for error in caught.value.errors}
    assert "duplicate id 'P1' (first on line 2)" in errors[5]
    assert "title is empty" in errors[6]
    assert "price must be a number" in errors[7]

    user = get_user_model().objects.create(username="shopper")
    orders = "user,item,event\n%d,P1,view\n999999,P1,view\n" % user.pk
    with pytest.raises(ingest.ImportRefused) as caught:
        ingest.import_csv(
            interactions=csv_file(orders, "events.csv"),
            products=csv_file(PRODUCTS, "p.csv"),
            product_mapping=PRODUCT_MAP,
        )
    assert [(e.line, e.messages) for e in caught.value.errors] == [(3, ("unknown user 999999",))]


def test_mapping_errors_name_the_problem():
    with pytest.raises(ingest.MappingError, match="no column"):
        ingest.import_csv(interactions=csv_file(ORDERS, "orders.csv"), mapping={**MAP, "item": "product"})
    with pytest.raises(ingest.MappingError, match="Unknown field"):
        ingest.parse_mapping(["colour=c"], ingest.INTERACTION_FIELDS)
    assert ingest.parse_mapping(["user=U,item=I", "order=O"], ingest.INTERACTION_FIELDS) == {
        "user": "U",
        "item": "I",
        "order": "O",
    }


ONLINE_RETAIL = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2011-06-01 10:00:00,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2011-06-01 10:00:00,3.39,17850.0,United Kingdom
536366,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2011-06-01 11:00:00,2.55,,United Kingdom
C536379,71053,WHITE METAL LANTERN,-1,2011-06-02 09:41:00,27.5,14527.0,United Kingdom
536380,71053,WHITE METAL LANTERN,-2,2011-06-02 09:41:00,27.5,14527.0,United Kingdom
536370,POST,POSTAGE,3,2011-06-02 08:45:00,18,12583.0,France
536371,gift_0001_20,Dotcomgiftshop Gift Voucher £20.00,1,2011-06-02 08:45:00,17,12583.0,France
536372,23843,PAPER CRAFT LITTLE BIRDIE,80995,2011-06-09 09:15:00,2.08,16446.0,United Kingdom
536373,71053,WHITE METAL LANTERN,1,2011-01-10 10:00:00,3.39,12583.0,France
"""

RETAIL_PRODUCTS = """StockCode,Description,median_unit_price,n_lines,n_invoices
85123A,WHITE HANGING HEART T-LIGHT HOLDER ,2.55,10,10
71053,WHITE METAL LANTERN,3.39,5,5
POST,POSTAGE,18,5,5
23843,PAPER CRAFT LITTLE BIRDIE,2.08,1,1
"""


def test_online_retail_preset_filters_and_converts(tmp_path):
    (tmp_path / "online_retail.csv").write_text(ONLINE_RETAIL, encoding="utf-8")
    (tmp_path / "products.csv").write_text(RETAIL_PRODUCTS, encoding="utf-8")
    preset = ingest.get_preset("online-retail")
    read = ingest.read_interactions(tmp_path / "online_retail.csv", preset=preset)
    assert read.total == 9 and read.error_count == 0
    assert dict(read.filtered) == {
        "no customer id": 1,
        "cancellation (invoice C...)": 1,
        "quantity <= 0 (returns)": 1,
        "non-product code (postage, fees, discounts, vouchers...)": 2,
        "quantity above 10,000 (bulk lines, two of three cancelled)": 1,
    }
    assert [(r.session, r.item, r.order_id, r.quantity) for r in read.rows] == [
        ("17850", "85123A", "536365", 6),
        ("17850", "71053", "536365", 6),
        ("12583", "71053", "536373", 1),
    ]
    assert read.rows[0].created_at == datetime(2011, 6, 1, 9, 0, tzinfo=timezone.utc)  # British summer time
    assert read.rows[2].created_at == datetime(2011, 1, 10, 10, 0, tzinfo=timezone.utc)  # winter: GMT

    out, err = io.StringIO(), io.StringIO()
    call_command("ragrec_import", "--preset", "online-retail", "--dir", str(tmp_path), stdout=out, stderr=err)
    assert "Imported 3 product(s) and 3 interaction(s)" in out.getvalue()
    assert "filtered out (no customer id): 1" in out.getvalue()
    assert set(Item.objects.values_list("key", flat=True)) == {"85123A", "71053", "23843"}  # POST is not a product
    assert Item.objects.get(key="85123A").title == "WHITE HANGING HEART T-LIGHT HOLDER"


def test_command_refuses_bad_files_and_lists_lines(tmp_path):
    orders = tmp_path / "orders.csv"
    orders.write_text(ORDERS + "c3,P1,2024-03-03 10:00:00,o4,-1\n")
    products = tmp_path / "products.csv"
    products.write_text(PRODUCTS)
    args = [
        "ragrec_import",
        "--interactions",
        str(orders),
        "--products",
        str(products),
        "--map",
        *("%s=%s" % pair for pair in MAP.items()),
        "--product-map",
        *("%s=%s" % pair for pair in PRODUCT_MAP.items()),
    ]
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 invalid row"):
        call_command(*args, stdout=io.StringIO(), stderr=err)
    assert "orders.csv line 6: quantity must be a whole number" in err.getvalue()
    assert Item.objects.count() == 0 and Interaction.objects.count() == 0

    out = io.StringIO()
    call_command(*args, "--dry-run", "--skip-invalid", stdout=out, stderr=io.StringIO())
    assert "Would import 3 product(s) and 4 interaction(s)" in out.getvalue()
    assert Item.objects.count() == 0 and Interaction.objects.count() == 0

    call_command(*args, "--skip-invalid", stdout=out, stderr=io.StringIO())
    assert "Skipped 1 invalid row(s)" in out.getvalue()
    assert Interaction.objects.count() == 4


def test_variant_groups_and_excluded_items():
    products = "sku,name,style\nP1,Red mug,MUG\nP2,Blue mug,MUG\nP3,Brass lamp,\nSHIP,Shipping,\ngift_10,Gift card,\n"
    orders = ORDERS + "c1,SHIP,2024-03-01 10:00:00,o1,1\nc2,gift_10,2024-03-02T09:30:00+01:00,o2,1\n"
    written, product_read, order_read = ingest.import_csv(
        interactions=csv_file(orders, "orders.csv"),
        products=csv_file(products, "products.csv"),
        mapping=MAP,
        product_mapping={"id": "sku", "title": "name", "group": "style"},
        time_zone="UTC",
        exclude_items=["SHIP", "gift_*"],
    )
    assert (written.products, written.interactions) == (3, 4)
    assert product_read.filtered == {ingest.EXCLUDED: 2} and order_read.filtered == {ingest.EXCLUDED: 2}
    assert dict(Item.objects.values_list("key", "group_key")) == {"P1": "MUG", "P2": "MUG", "P3": ""}
    assert not ingest.item_filter(["gift_*"])("GIFT_10")  # case-sensitive, as item keys are


def test_order_ids_up_to_the_limit_are_kept_whole():
    from ragrec_django import limits
    from ragrec_django.exceptions import EventError
    from ragrec_django.services.events import EventInput, record_events

    composite = ("c1-2024-03-01-" + "x" * 300)[: limits.ORDER_ID_MAX_CHARS]
    assert limits.ORDER_ID_MAX_CHARS == 255
    written, _, _ = run_import(ORDERS.replace(",o1,", ",%s," % composite))
    assert written.interactions == 4
    assert Interaction.objects.filter(order_id=composite).count() == 2

    with pytest.raises(ingest.ImportRefused) as caught:
        run_import(ORDERS.replace(",o1,", ",%s," % (composite + "y")))
    assert caught.value.errors[0].messages == ("order id longer than 255 characters",)

    item = str(Item.objects.get(key="P1").key)
    record_events([EventInput(event="purchase", item=item, session_key="s", order_id=composite)])
    with pytest.raises(EventError, match="longer than 255 characters"):
        record_events([EventInput(event="purchase", item=item, session_key="s", order_id=composite + "y")])
