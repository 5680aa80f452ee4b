"""``storage.products_named_in``: the catalogue products whose full title an answer names (grounding checks)."""

import pytest

from ragrec_django import storage
from ragrec_django.adapters import ItemSnapshot
from ragrec_django.models import Item
from ragrec_django.storage.items import sync_items

pytestmark = pytest.mark.django_db


def snapshot(key: str, title: str) -> ItemSnapshot:
    return ItemSnapshot(
        key=key, title=title, category="Mugs", price=None, in_stock=True, is_eligible=True, url="", group_key=""
    )


def test_full_titles_are_found_case_insensitively_and_short_ones_never():
    sync_items([snapshot("1", "Blue Enamel Mug"), snapshot("2", "Blue Enamel Mug, 350 ml"), snapshot("3", "Mug")])
    found = storage.products_named_in("Try the blue enamel mug, 350 ml: a mug for camping.")
    assert sorted(found) == [("1", "Blue Enamel Mug"), ("2", "Blue Enamel Mug, 350 ml")]
    assert storage.products_named_in("A blue enamel cup.") == []


def test_a_product_added_or_renamed_in_this_process_is_found_at_once():
    sync_items([snapshot("1", "Blue Enamel Mug")])
    assert storage.products_named_in("the Blue Enamel Mug") == [("1", "Blue Enamel Mug")]
    sync_items([snapshot("1", "Harbour Teapot"), snapshot("2", "Nordic Milk Jug")])
    assert storage.products_named_in("the Blue Enamel Mug or the nordic milk jug") == [("2", "Nordic Milk Jug")]
    assert Item.objects.count() == 2
