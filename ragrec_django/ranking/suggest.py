"""Typo-tolerant prefix completion for autocomplete (pure, no Django).

``PrefixIndex(words)`` keeps a vocabulary ({word: frequency}) sorted, so the words starting with a prefix are
one binary search away. ``complete("cera")`` -> ["ceramic", ...]; when no word starts with the prefix as
typed, prefixes one edit away (a letter dropped, added, changed, or two swapped) are tried: "cerm" and
"ceeam" still find "ceramic". Ties go to the more frequent word.

Text in a script written without spaces (Chinese, Japanese) is never completed "with a typo" (one character
away is another word there); ``complete_run("蓝色咖")`` completes its last characters to a word of the index
that starts with them ("蓝色咖啡杯" when "咖啡杯" is one).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Mapping

from .tokenise import CJK_RUN, has_cjk

#: Letters tried for insertions and substitutions: the vocabulary's most common characters.
ALPHABET_SIZE = 40
#: Prefixes shorter than this are completed only as typed (one edit away from two letters is almost anything).
MIN_FUZZY_PREFIX = 3


class PrefixIndex:
    """Words sorted for prefix look-ups, with their frequencies."""

    def __init__(self, words: Mapping[str, int]):
        self.frequency = {word.lower(): int(count) for word, count in words.items() if word}
        self.sorted = sorted(self.frequency)
        letters = Counter(char for word in self.sorted for char in word)
        self.alphabet = "".join(char for char, _ in letters.most_common(ALPHABET_SIZE))

    def starting_with(self, prefix: str, limit: int = 50) -> list[str]:
        """Words starting with ``prefix`` (at most ``limit``, in alphabetical order)."""
        found, index = [], bisect_left(self.sorted, prefix)
        while index < len(self.sorted) and len(found) < limit and self.sorted[index].startswith(prefix):
            found.append(self.sorted[index])
            index += 1
        return found

    def complete(self, prefix: str, limit: int = 5) -> list[str]:
        """The most frequent words starting with ``prefix``, else with a prefix one edit away from it."""
        prefix = prefix.lower()
        if not prefix:
            return []
        found = set(self.starting_with(prefix, limit=200))
        if not found and len(prefix) >= MIN_FUZZY_PREFIX and not has_cjk(prefix):
            for variant in self._edits(prefix):
                found.update(self.starting_with(variant, limit=50))
        return sorted(found, key=lambda word: (-self.frequency[word], len(word), word))[:limit]

    def complete_run(self, text: str, limit: int = 5) -> list[str]:
        """``text``, which ends in CJK characters, completed: the longest of its ``run_tails`` that a longer word
        starts with, extended by the most frequent such words ("蓝色咖" -> ["蓝色咖啡杯", "蓝色咖啡"] when "咖啡杯"
        and "咖啡" are words); [] when none does."""
        text = text.lower()
        for tail in run_tails(text):
            words = [word for word in self.starting_with(tail, limit=200) if len(word) > len(tail)]
            if words:
                best = sorted(words, key=lambda word: (-self.frequency[word], len(word), word))[:limit]
                return [text[: len(text) - len(tail)] + word for word in best]
        return []

    def _edits(self, word: str) -> set[str]:
        splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
        deletes = {a + b[1:] for a, b in splits if b}
        swaps = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
        changes = {a + c + b[1:] for a, b in splits if b for c in self.alphabet}
        inserts = {a + c + b for a, b in splits for c in self.alphabet}
        return (deletes | swaps | changes | inserts) - {word, ""}


def run_tails(text: str) -> list[str]:
    """The endings of the run of CJK characters that ``text`` ends with, longest first ("蓝色咖" -> ["蓝色咖", "色咖",
    "咖"]): where the word being typed may start, in a script without spaces. [] when ``text`` does not end in one."""
    runs = list(CJK_RUN.finditer(text))
    if not runs or runs[-1].end() != len(text):
        return []
    run = runs[-1].group()
    return [run[start:] for start in range(len(run))]
