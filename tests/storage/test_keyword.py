"""Keyword search on its own: the fallbacks when not every query word matches, and the ranking bound."""

from ragrec_django.models import Item
from ragrec_django.storage import keyword


def titles(rows):
    names = dict(Item.objects.filter(id__in=[item_id for item_id, _ in rows]).values_list("id", "title"))
    return [names[item_id] for item_id, _ in rows]


def test_a_word_no_item_has_does_not_widen_the_search_to_any_word(catalogue):
    # "zq" and "xylograph" match nothing: the words the catalogue knows must still all match.
    rows, corrected = keyword.keyword_search("green mug zq xylograph", 10)
    assert corrected == "green mug zq xylograph"
    assert titles(rows) == ["Green enamel camping mug"]


def test_known_words_that_never_meet_fall_back_to_any_word(catalogue):
    rows, _ = keyword.keyword_search("brass porcelain", 10)
    assert set(titles(rows)) == {"Brass desk lamp", "White porcelain tea cup"}


def test_ranking_is_bounded_but_k_results_still_come_back(catalogue, settings):
    settings.RAGREC = {**settings.RAGREC, "KEYWORD_RANK_LIMIT": 1}
    rows, _ = keyword.keyword_search("mug", 3)
    assert len(rows) == 3
    assert set(Item.objects.filter(id__in=[item_id for item_id, _ in rows]).values_list("category", flat=True)) == {
        "Mugs"
    }
