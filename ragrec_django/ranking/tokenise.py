"""Word boundaries for scripts written without spaces (Chinese, Japanese, Korean), before PostgreSQL full text.

PostgreSQL's text-search parsers split text at spaces and punctuation, so a run of CJK characters
("蓝色陶瓷杯子") is one word to them and a query matches only the whole run. A ``Tokeniser`` rewrites
text so that each CJK word stands alone between spaces; every other character passes through
unchanged, so the configuration of ``SEARCH_LANGUAGE`` still stems the European words of the same
text. The index and the queries must go through the same tokeniser (``storage.items`` and
``storage.keyword`` do).

* ``none``: text as it is (PostgreSQL's own word boundaries).
* ``bigram``: overlapping character pairs of each run, no dictionary (any CJK language); the index
  also keeps the single characters, so a one-character query ("杯") finds "杯子".
* ``jieba``: Chinese words from the ``jieba`` dictionary (``cut_for_search`` for the index, which
  adds the shorter words inside long ones, ``cut`` for queries); kana and hangul runs as bigrams.

Full-width ASCII ("ＬＥＤ", common in CJK text) and the ideographic space are read as ASCII first.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import re
import threading
from collections.abc import Iterable

#: Characters of scripts written without spaces: CJK ideographs (with extensions and compatibility
#: forms), hiragana, katakana (and its phonetic extensions, half-width forms) and hangul.
CJK_CHARACTERS = (
    "\u1100-\u11ff\u3040-\u309f\u30a0-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0002fa1f"
)
CJK_RUN = re.compile("[%s]+" % CJK_CHARACTERS)
#: Han ideographs only (what jieba segments).
HAN_RUN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]+")
#: Full-width ASCII -> ASCII, the ideographic space -> a space.
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}

TOKENISERS = ("none", "bigram", "jieba")


class TokeniserError(Exception):
    """A tokeniser cannot be built (unknown name, a package missing)."""


def has_cjk(text: str) -> bool:
    """Whether ``text`` has a character of a script written without spaces."""
    return CJK_RUN.search(text) is not None


def fold_width(text: str) -> str:
    """``text`` with full-width ASCII read as ASCII and the ideographic space as a space (one character for one:
    positions in the text stay those of the original)."""
    return text.translate(_FULL_WIDTH)


def bigrams(run: str) -> list[str]:
    """Overlapping character pairs of ``run`` ("蓝色杯" -> ["蓝色", "色杯"]); a single character stays itself."""
    if len(run) < 2:
        return [run] if run else []
    return [run[i : i + 2] for i in range(len(run) - 1)]


class Tokeniser:
    """``none``: text unchanged. Subclasses split CJK runs into words (``run_words``)."""

    name = "none"

    @property
    def active(self) -> bool:
        """Whether this tokeniser changes any text (the index is then written from tokenised text)."""
        return type(self).run_words is not Tokeniser.run_words

    def run_words(self, run: str, *, query: bool) -> list[str]:
        """The words of one run of CJK characters, for the index (``query=False``) or for a query."""
        return [run]

    def index_text(self, text: str) -> str:
        """``text`` as it is written into the full-text index."""
        return self._rewrite(text, query=False)

    def query_text(self, text: str) -> str:
        """``text`` as a query searches it."""
        return self._rewrite(text, query=True)

    def word_spans(self, run: str) -> list[tuple[str, int, int]]:
        """The query words of one run of CJK characters with where each is in ``run`` (``(word, start, end)``; a
        bigram overlaps the next)."""
        spans, cursor = [], 0
        for word in self.run_words(run, query=True):
            start = run.find(word, cursor)
            if start < 0:  # pragma: no cover - run_words returns pieces of the run, in order
                continue
            spans.append((word, start, start + len(word)))
            cursor = start + 1
        return spans

    def words(self, text: str, *, query: bool = False) -> list[str]:
        """The CJK words of ``text`` in order (the other characters are left out)."""
        if not self.active:
            return []
        text = text.translate(_FULL_WIDTH)
        return [word for match in CJK_RUN.finditer(text) for word in self.run_words(match.group(0), query=query)]

    def _rewrite(self, text: str, *, query: bool) -> str:
        if not self.active or not text:
            return text
        text = text.translate(_FULL_WIDTH)
        return CJK_RUN.sub(lambda match: " %s " % " ".join(self.run_words(match.group(0), query=query)), text)


class BigramTokeniser(Tokeniser):
    """Character bigrams of each run (the index adds the single characters after the run's bigrams, so the
    bigrams of a run keep adjacent positions and a quoted query phrase still matches)."""

    name = "bigram"

    def run_words(self, run: str, *, query: bool) -> list[str]:
        pairs = bigrams(run)
        if query or len(run) < 2:
            return pairs
        return pairs + list(run)


class JiebaTokeniser(Tokeniser):
    """Chinese words by the ``jieba`` dictionary (MIT); other CJK scripts (kana, hangul) as bigrams.

    The index gets ``cut_for_search`` (a long word and the dictionary words inside it) and the single
    characters; a query gets ``cut`` (the most likely segmentation). The dictionary loads on first use
    (about a second, once per process).
    """

    name = "jieba"
    _loaded = None
    _lock = threading.Lock()

    def __init__(self):
        if importlib.util.find_spec("jieba") is None:
            raise TokeniserError(
                'SEARCH_TOKENISER "jieba" needs the jieba package: pip install "ragrec-django[multilingual]" '
                '(or choose "bigram", which needs none).'
            )

    @classmethod
    def segmenter(cls):
        """The process's jieba tokenizer, its dictionary loaded (thread-safe, once)."""
        if cls._loaded is None:
            with cls._lock:
                if cls._loaded is None:
                    import jieba

                    jieba.setLogLevel(logging.WARNING)
                    segmenter = jieba.Tokenizer()
                    segmenter.initialize()
                    cls._loaded = segmenter
        return cls._loaded

    def run_words(self, run: str, *, query: bool) -> list[str]:
        words: list[str] = []
        position = 0
        for han in HAN_RUN.finditer(run):
            words.extend(bigrams(run[position : han.start()]))
            words.extend(self._han_words(han.group(0), query=query))
            position = han.end()
        words.extend(bigrams(run[position:]))
        return words

    def _han_words(self, han: str, *, query: bool) -> list[str]:
        segmenter = self.segmenter()
        if query:
            return _kept(segmenter.cut(han, HMM=False))
        return _kept(segmenter.cut_for_search(han, HMM=False)) + [c for c in han if len(han) > 1]


def _kept(words: Iterable[str]) -> list[str]:
    return [word for word in (w.strip() for w in words) if word]


def build_tokeniser(name: str) -> Tokeniser:
    """A new tokeniser called ``name`` (one of ``TOKENISERS``); ``TokeniserError`` for another name or a missing
    package (checked each call: the system check uses this)."""
    if name == "none":
        return Tokeniser()
    if name == "bigram":
        return BigramTokeniser()
    if name == "jieba":
        return JiebaTokeniser()
    raise TokeniserError("Unknown tokeniser %r; the tokenisers are %s." % (name, ", ".join(TOKENISERS)))


#: The process's tokeniser of each name (built once; jieba's dictionary is shared by the class anyway).
tokeniser = functools.lru_cache(maxsize=8)(build_tokeniser)
