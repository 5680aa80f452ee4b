"""Query understanding, synonyms and completion for text written without spaces (pure): the tokeniser that splits
the index's CJK runs (``ranking.tokenise``) splits the catalogue's values, the synonyms and the query too, so a
category, colour or synonym written inside a run is found as it is between spaces."""

import itertools
import random

import pytest

from ragrec_django.ranking.query import Synonyms, Vocabulary, expand, matches_value, tokens, understand
from ragrec_django.ranking.suggest import PrefixIndex, run_tails
from ragrec_django.ranking.tokenise import fold_width, tokeniser

CATEGORIES = ["杯子", "钱包", "围巾", "厨房电器", "服装", "T恤", "马克杯"]
COLOURS = ["蓝色", "黑色", "红色", "银色", "白色", "深灰色"]
MATERIALS = ["陶瓷", "真皮", "羊毛", "不锈钢", "纯棉"]
#: Words around the terms, as a shopper writes them ("我想买" "I'd like to buy", "的" "of", "便宜" "cheap").
FILLERS = ["", "我想买", "一个", "的", "便宜", "新款"]
VALUES = {
    "category": dict.fromkeys(CATEGORIES, 1),
    "colour": dict.fromkeys(COLOURS, 1),
    "material": dict.fromkeys(MATERIALS, 1),
}


def splitters():
    names = ["bigram"]
    try:
        import jieba  # noqa: F401

        names.append("jieba")
    except ImportError:
        pass
    return names


@pytest.fixture(params=splitters())
def splitter(request):
    return tokeniser(request.param)


def test_tokens_of_a_run_are_its_words_with_their_places(splitter):
    text = "我想买蓝色杯子 under 30"
    found = tokens(text, splitter=splitter)
    for token in found:
        assert text[token.start : token.end].lower() == token.word  # each word is where it says
    words = [token.word for token in found]
    assert {"蓝色", "杯子", "under", "30"} <= set(words)
    # Without a tokeniser (or with "none") a run is one word, as before.
    assert [t.word for t in tokens(text)] == ["我想买蓝色杯子", "under", "30"]
    assert [t.word for t in tokens(text, splitter=tokeniser("none"))] == ["我想买蓝色杯子", "under", "30"]


def test_full_width_letters_inside_a_run_keep_their_places(splitter):
    text = "白色Ｔ恤"
    found = tokens(text, splitter=splitter)
    assert [(t.word, text[t.start : t.end]) for t in found][-2:] == [("t", "Ｔ"), ("恤", "恤")]


def test_every_term_written_inside_a_run_is_understood(splitter):
    """Every colour, material and category, in every order, run together with filler words, is recognised; the
    query's price phrase too; and nothing is left over as words."""
    vocabulary = Vocabulary.build(VALUES, plural_folding=False, splitter=splitter)
    rng = random.Random(7)
    for colour, material, category in itertools.product(COLOURS, MATERIALS, CATEGORIES):
        if category == "马克杯" and splitter.name == "bigram":
            continue  # "杯子" and "马克杯" share "杯": covered by the synonym test
        filler = rng.choice(FILLERS)
        query = filler + colour + material + category
        understood = understand(query, vocabulary)
        found = {(t.attribute, t.value) for t in understood.terms}
        assert {("colour", colour), ("material", material), ("category", category)} <= found, query
        assert understood.categories == (category,), query
        with_price = understand(query + " under 30", vocabulary)
        assert with_price.price is not None and with_price.categories == (category,), query


def test_words_between_spaces_are_understood_as_before(splitter):
    vocabulary = Vocabulary.build(
        {"category": {"T-shirts": 3, "杯子": 1}, "colour": {"blue": 2}}, plural_folding=True, splitter=splitter
    )
    understood = understand("blue tshirts 杯子", vocabulary)
    assert [(t.attribute, t.value) for t in understood.terms] == [
        ("colour", "blue"),
        ("category", "T-shirts"),
        ("category", "杯子"),
    ]


def test_without_the_tokeniser_a_term_inside_a_run_is_not_understood():
    """What the splitter fixes."""
    vocabulary = Vocabulary.build(VALUES, plural_folding=False)
    assert understand("蓝色杯子", vocabulary).terms == ()
    assert [t.value for t in understand("蓝色 杯子", vocabulary).terms] == ["蓝色", "杯子"]


def test_a_chinese_synonym_applies_inside_a_run(splitter):
    """A merchandiser's synonym ("保温瓶" -> "杯子", "围脖" <-> "围巾") widens the keyword groups and finds the
    category, wherever it stands in the run."""
    synonyms = Synonyms.build([("保温瓶", ["杯子"], False), ("围脖", ["围巾"], True)], splitter=splitter)
    vocabulary = Vocabulary.build(VALUES, plural_folding=False, splitter=splitter)
    for filler, colour in itertools.product(FILLERS, COLOURS):
        query = filler + colour + "保温瓶"
        understood = understand(query, vocabulary, synonyms=synonyms)
        assert understood.categories == ("杯子",), query
        assert ("colour", colour) in {(t.attribute, t.value) for t in understood.terms}, query
        groups = expand(query, synonyms)
        assert [g.alternatives for g in groups if g.alternatives] == [("杯子",)], query
        assert understand(filler + "围脖", vocabulary, synonyms=synonyms).categories == ("围巾",)
    # One-way: "杯子" is not widened to "保温瓶"; two-way: "围巾" is widened to "围脖".
    assert not any(g.alternatives for g in expand("蓝色杯子", synonyms))
    assert [g.alternatives for g in expand("红色围巾", synonyms) if g.alternatives] == [("围脖",)]


def test_soft_attributes_match_values_containing_them():
    """With bigrams, "灰色" (grey) is a word of "深灰色" (dark grey); jieba keeps "深灰色" whole, as its dictionary has it."""
    assert matches_value("colour", "灰色", "深灰色", False, tokeniser("bigram"))
    assert not matches_value("colour", "灰色", "深灰色", False)  # one word without the tokeniser


@pytest.mark.parametrize(
    ("text", "tails"),
    [
        ("蓝色咖", ["蓝色咖", "色咖", "咖"]),
        ("blue 杯", ["杯"]),
        ("蓝色 ", []),
        ("蓝色cup", []),
        ("", []),
    ],
)
def test_run_tails(text, tails):
    assert run_tails(text) == tails


def test_a_run_is_completed_from_where_a_word_may_start():
    index = PrefixIndex({"蓝色陶瓷咖啡杯": 3, "咖啡": 5, "咖啡杯": 2, "陶瓷": 4, "围巾": 1, "ceramic": 9})
    assert index.complete_run("蓝色陶") == ["蓝色陶瓷咖啡杯"]  # the whole run starts with it
    assert index.complete_run("我要咖", 2) == ["我要咖啡", "我要咖啡杯"]  # the most frequent first
    assert index.complete_run("围") == ["围巾"]
    assert index.complete_run("汽车") == []
    assert index.complete_run("cera") == []  # not a run: complete() does that
    # A run is never completed "with a typo": one character away is another word.
    assert index.complete("咖非") == []
    assert index.complete("cerm") == ["ceramic"]


def test_any_text_is_tokenised_with_its_words_in_place(splitter):
    """Random text mixing ideographs, kana, hangul, full-width and ASCII letters, digits, punctuation and spaces:
    every word is non-empty and stands where it says (its folded characters), and understanding and completion
    take it without an error."""
    rng = random.Random(11)
    alphabet = "蓝色杯子钱包围巾マグカップたおる한국어ＴＶＸａｂ１２ab XY9,.!?-_　。、「」" + "".join(
        CATEGORIES + COLOURS
    )
    vocabulary = Vocabulary.build(VALUES, plural_folding=True, splitter=splitter)
    index = PrefixIndex({"蓝色陶瓷杯": 2, "咖啡": 1, "mug": 3})
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))
        for token in tokens(text, plural_folding=False, splitter=splitter):
            assert token.word and 0 <= token.start < token.end <= len(text), (text, token)
            assert fold_width(text[token.start : token.end]).lower() == token.word, (text, token)
        understood = understand(text, vocabulary)
        assert all(0 <= t.start <= t.end <= len(text) for t in understood.terms), text
        tails = run_tails(text)
        assert all(text.endswith(tail) for tail in tails), text
        for completion in index.complete_run(text):  # the text with a tail of its last run extended
            assert len(completion) > len(text), (text, completion)
            assert any(completion.startswith(text.lower()[: len(text) - len(tail)]) for tail in tails), text
