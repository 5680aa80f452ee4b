"""Where CLIP is configured, a draft's stated colour or type is checked against the product photo."""

import pytest

from ragrec_django import storage
from ragrec_django.models import Item
from ragrec_django.services import descriptions
from ragrec_django.services.recommend import query_cache
from tests.services.conftest import catalogue, jpeg  # noqa: F401  (encoded catalogue with a tiny CLIP image space)

pytestmark = pytest.mark.django_db


def clip_pick(item, words, prompt):
    vector = storage.vectors_for_items("image", [item.id])[item.id]
    return max(sorted(words), key=lambda word: float(query_cache.get("image", prompt(word)) @ vector))


def test_stated_colour_and_type_are_checked_against_the_photo(catalogue, llm):
    product = catalogue["Red ceramic coffee mug"]
    llm("This blue bottle is a good buy [title].")
    draft = descriptions.generate_draft(str(product.pk))
    item = Item.objects.get(key=str(product.pk))
    flags = {flag["span"]: flag for flag in draft.flags if flag["kind"] == "image_disagrees"}

    palette = set(descriptions.ragrec_settings.COLOUR_CHECK_PALETTE)
    colour_seen = clip_pick(item, palette | {"blue"}, lambda c: "a photo of a %s Mugs" % c)
    type_seen = clip_pick(item, {"bottle", "mug"}, lambda t: "a photo of a %s" % t)
    assert ("blue" in flags) == (colour_seen != "blue")
    assert ("bottle" in flags) == (type_seen != "bottle")
    for word, seen in (("blue", colour_seen), ("bottle", type_seen)):
        if word in flags:
            assert "photo looks like '%s'" % seen in flags[word]["message"]


def test_no_image_space_means_no_image_check(product, llm):
    llm("This blue bottle is a good buy [title].")
    draft = descriptions.generate_draft(str(product.pk))
    assert not [flag for flag in draft.flags if flag["kind"] == "image_disagrees"]
