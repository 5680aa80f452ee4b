"""The CJK tokenisers (ranking.tokenise): what the full-text index and the queries are made of, for every kind of
input: Chinese, Japanese, Korean, mixed scripts, punctuation, full-width characters, empty and very long text."""

import random

import pytest

from ragrec_django.ranking.tokenise import (
    BigramTokeniser,
    JiebaTokeniser,
    Tokeniser,
    TokeniserError,
    bigrams,
    has_cjk,
    tokeniser,
)

BIGRAM = tokeniser("bigram")
NONE = tokeniser("none")


def test_bigrams_of_a_run():
    assert bigrams("蓝色杯子") == ["蓝色", "色杯", "杯子"]
    assert bigrams("杯") == ["杯"]
    assert bigrams("") == []


def test_none_changes_nothing_whatever_the_script():
    for text in ("", "Blaue Tasse aus Porzellan", "蓝色陶瓷杯子", "ＬＥＤ灯", "青いマグカップ"):
        assert NONE.index_text(text) == text
        assert NONE.query_text(text) == text
    assert NONE.words("蓝色陶瓷杯子") == []
    assert not NONE.active


def test_bigram_index_keeps_the_runs_bigrams_adjacent_then_its_characters():
    assert BIGRAM.index_text("蓝色杯子").split() == ["蓝色", "色杯", "杯子", "蓝", "色", "杯", "子"]
    assert BIGRAM.query_text("蓝色杯子").split() == ["蓝色", "色杯", "杯子"]
    # A one-character query is that character, which the index has.
    assert BIGRAM.query_text("杯").split() == ["杯"]
    assert "杯" in BIGRAM.index_text("玻璃杯").split()


def test_other_scripts_pass_through_unchanged():
    text = "Blaue Tasse aus Porzellan, 250 ml (Größe M) — für Tee & Kaffee!"
    assert BIGRAM.index_text(text) == text
    assert BIGRAM.query_text(text) == text
    assert not has_cjk(text)


def test_mixed_scripts_split_at_the_script_boundary():
    assert BIGRAM.query_text("T恤").split() == ["T", "恤"]
    assert BIGRAM.query_text("iPhone手机壳").split() == ["iPhone", "手机", "机壳"]
    assert BIGRAM.query_text("Blaue Tasse 蓝色杯子 aus Porzellan").split() == [
        "Blaue", "Tasse", "蓝色", "色杯", "杯子", "aus", "Porzellan",
    ]  # fmt: skip


def test_punctuation_ends_a_run():
    # A full stop or comma, Chinese or not, separates words: no bigram spans it.
    assert BIGRAM.words("蓝色，杯子。", query=True) == ["蓝色", "杯子"]
    assert BIGRAM.words("「陶瓷」杯、碗", query=True) == ["陶瓷", "杯", "碗"]
    assert BIGRAM.query_text("蓝色、杯子。") == " 蓝色 、 杯子 。"
    assert BIGRAM.query_text("蓝色，杯子") == " 蓝色 , 杯子 "  # the full-width comma is read as ASCII


def test_full_width_ascii_and_the_ideographic_space_are_read_as_ascii():
    assert BIGRAM.query_text("ＬＥＤ台灯").split() == ["LED", "台灯"]
    assert BIGRAM.query_text("蓝色\u3000杯子").split() == ["蓝色", "杯子"]


def test_japanese_and_korean_runs():
    # Kanji, hiragana and katakana of one run are paired across the script changes.
    assert BIGRAM.query_text("青いマグ").split() == ["青い", "いマ", "マグ"]
    assert BIGRAM.query_text("ｶｯﾌﾟ").split() == ["ｶｯ", "ｯﾌ", "ﾌﾟ"]  # half-width katakana
    assert BIGRAM.query_text("파란 머그컵").split() == ["파란", "머그", "그컵"]


def test_characters_outside_the_basic_plane():
    assert BIGRAM.query_text("𠀀𠀁").split() == ["𠀀𠀁"]
    assert has_cjk("𠀀")


@pytest.mark.parametrize("text", ["", " ", "\n\t", "。，、", "12345"])
def test_empty_blank_and_runless_text(text):
    assert BIGRAM.words(text) == []
    assert BIGRAM.query_text(text).split() == text.replace("，", ",").split()


def test_very_long_input_is_tokenised_whole():
    rng = random.Random(7)
    alphabet = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该由"
    run = "".join(rng.choice(alphabet) for _ in range(100_000))
    words = BIGRAM.words(run)
    assert len(words) == 2 * len(run) - 1  # every bigram, then every character
    assert len(BIGRAM.words(run, query=True)) == len(run) - 1
    mixed = ("word " + run[:1000] + ". ") * 100
    assert BIGRAM.index_text(mixed).count("word") == 100


def test_a_query_inside_an_indexed_text_finds_all_its_words_there():
    """The property keyword search rests on: the words of any substring of an indexed run are words of the index."""
    rng = random.Random(3)
    text = "简约北欧风格蓝色陶瓷咖啡杯，带木质杯垫。纯棉白色短袖T恤适合夏天。"
    indexed = set(BIGRAM.words(text))
    for _ in range(200):
        start = rng.randrange(len(text))
        query = text[start : start + rng.randrange(1, 8)]
        assert set(BIGRAM.words(query, query=True)) <= indexed, query


def test_unknown_tokeniser_is_refused_and_known_ones_are_shared():
    with pytest.raises(TokeniserError, match="Unknown tokeniser 'icu'"):
        tokeniser("icu")
    assert tokeniser("bigram") is tokeniser("bigram")
    assert isinstance(tokeniser("bigram"), BigramTokeniser) and type(tokeniser("none")) is Tokeniser


def test_jieba_missing_is_a_clear_error(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TokeniserError, match="needs the jieba package"):
        JiebaTokeniser()


@pytest.fixture(scope="module")
def jieba():
    pytest.importorskip("jieba")
    return tokeniser("jieba")


class TestJieba:
    def test_chinese_words_by_the_dictionary(self, jieba):
        assert jieba.words("我想买一个蓝色的咖啡杯", query=True)[-3:] == ["蓝色", "的", "咖啡杯"]
        # The index adds the dictionary words inside a long word, and the single characters.
        indexed = jieba.words("蓝色陶瓷咖啡杯")
        assert {"蓝色", "陶瓷", "咖啡", "咖啡杯", "杯"} <= set(indexed)

    def test_query_words_of_indexed_text_are_in_the_index(self, jieba):
        for text in ("蓝色陶瓷咖啡杯", "不锈钢电热水壶", "红色羊毛围巾", "男士黑色真皮钱包"):
            assert set(jieba.words(text, query=True)) <= set(jieba.words(text)), text

    def test_kana_and_hangul_are_bigrams_and_other_scripts_pass_through(self, jieba):
        assert jieba.query_text("青いマグ").split() == ["青", "いマ", "マグ"]
        assert jieba.query_text("Blaue Tasse, 250 ml") == "Blaue Tasse, 250 ml"
        assert jieba.query_text("") == ""
