"""Rows read without the ORM's query compiler (``storage.rows``) are the ORM's own instances and values:
every field of every model read this way equals what the ORM loads, JSON decoded, times aware, Decimals
exact, deferred fields loaded on access."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from ragrec_django import storage
from ragrec_django.models import Item, ServingConfig, SpaceGeneration
from ragrec_django.storage import rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def items():
    first = Item.objects.create(
        key="k1",
        title="Oak chair",
        category="chairs",
        price=Decimal("12.30"),
        group_key="g",
        text="oak chair text",
        metadata={"colour": "oak", "sizes": [1, 2], "note": None},
    )
    second = Item.objects.create(key="k2", title="Pine desk", price=None, in_stock=False, is_promoted=True)
    Item.objects.filter(pk=second.pk).update(created_at=timezone.now() - timedelta(days=90))
    return first, Item.objects.get(pk=second.pk)


def field_values(instance, fields) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in fields}


@pytest.mark.parametrize("model", [Item, SpaceGeneration, ServingConfig])
def test_every_field_of_every_model_read_equals_the_orms(model, items):
    SpaceGeneration.objects.create(
        space="text", number=1, encoder="minilm", modality="text", encoder_version="v1", dimension=3, status="active"
    )
    ServingConfig.objects.create(name="sale", rules={"boost": {"category": "chairs"}, "pin": [[1, 0]]})
    fields = model._meta.concrete_fields
    expected = {obj.pk: field_values(obj, fields) for obj in model.objects.all()}
    read = rows.instances(model, "TRUE", [])
    assert {obj.pk: field_values(obj, fields) for obj in read} == expected and expected
    assert all(type(obj) is model and not obj._state.adding and obj._state.db == "default" for obj in read)


def test_omitted_fields_are_deferred_and_load_on_access(items, django_assert_num_queries):
    first, _ = items
    item = storage.item_by_key("k1")
    assert item.get_deferred_fields() == set(storage.UNSHOWN_FIELDS)
    assert (item.metadata, item.price, item.title) == (
        {"colour": "oak", "sizes": [1, 2], "note": None},
        Decimal("12.30"),
        "Oak chair",
    )
    with django_assert_num_queries(1):
        assert item.text == "oak chair text"
    item.title = "Oak chair, renamed"
    item.save(update_fields=["title"])
    assert Item.objects.get(pk=first.pk).title == "Oak chair, renamed"


def test_lookups_by_key_and_ids(items):
    first, second = items
    assert storage.item_by_key("absent") is None
    assert storage.item_by_key("it's; DROP TABLE x") is None  # bound, never formatted in
    assert set(storage.items_by_ids([first.pk, second.pk, 10**9])) == {first.pk, second.pk}
    assert storage.items_by_ids([]) == {}


def test_values_come_in_the_order_asked_and_converted(items):
    first, _ = items
    assert rows.values(Item, ("metadata", "key", "price"), "id = %s", [first.pk]) == [
        ({"colour": "oak", "sizes": [1, 2], "note": None}, "k1", Decimal("12.30"))
    ]


def test_ranking_attributes_say_which_items_are_new(items):
    first, second = items
    found = {
        row[0]: row for row in storage.ranking_attributes([first.pk, second.pk], timezone.now() - timedelta(days=30))
    }
    assert found == {
        first.pk: (first.pk, "chairs", "g", Decimal("12.30"), True, True, False, True),
        second.pk: (second.pk, "", "", None, False, False, True, True),
    }


def test_a_saved_serving_configuration_and_one_that_is_not(items):
    ServingConfig.objects.create(name="empty", rules={})
    ServingConfig.objects.create(name="sale", rules={"in_stock_only": True})
    assert storage.serving_config_rules("sale") == {"in_stock_only": True}
    assert storage.serving_config_rules("empty") == {}
    assert storage.serving_config_rules("missing") is storage.NO_SERVING_CONFIG_ROW
