"""Keyword search on its own: the fallbacks when not every query word matches, and the ranking bound."""

import pytest

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


CATALOGUE_WORDS = {"tall": 5, "vase": 5, "coffee": 9, "mugs": 7, "umbrella": 3, "stoneware": 4}


@pytest.mark.parametrize(
    "query",
    ["something to tell the time", "a gift for my mother", "the best cup for tea", "walls and floors", "warm hat"],
)
def test_words_of_the_language_are_never_corrected(query):
    corrector = keyword.SpellingCorrector(CATALOGUE_WORDS, keyword.language_words("english"))
    assert corrector.correct_query(query) == query


@pytest.mark.parametrize(
    ("typo", "expected"),
    [("cofee mugg", "coffee mugs"), ("umbrela", "umbrella"), ("stonewear", "stoneware")],
)
def test_misspellings_are_still_corrected_to_catalogue_words(typo, expected):
    corrector = keyword.SpellingCorrector(CATALOGUE_WORDS, keyword.language_words("english"))
    assert corrector.correct_query(typo) == expected


def test_a_configuration_without_a_word_list_corrects_to_the_catalogue_alone():
    assert keyword.language_words("simple") == frozenset()
    assert len(keyword.language_words("german")) > 10_000 and "zeit" in keyword.language_words("german")
    assert keyword.SpellingCorrector(CATALOGUE_WORDS).correct_query("tell") == "tall"


def test_the_catalogue_corrector_reads_the_search_language(catalogue, settings):
    settings.RAGREC = {**settings.RAGREC, "SEARCH_LANGUAGE": "english"}
    corrector = keyword.spelling_corrector()
    assert corrector.language == keyword.language_words("english")
    assert corrector.correct_query("something to tell the time") == "something to tell the time"
