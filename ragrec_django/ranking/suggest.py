"""Typo-tolerant prefix completion for autocomplete (pure, no Django).

``PrefixIndex(words)`` keeps a vocabulary ({word: frequency}) sorted, so the words starting with a prefix are
one binary search away. ``complete("cera")`` -> ["ceramic", ...]; when no word starts with the prefix as
typed, prefixes one edit away (a letter dropped, added, changed, or two swapped) are tried: "cerm" and
"ceeam" still find "ceramic". Ties go to the more frequent word.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Mapping

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
        if not found and len(prefix) >= MIN_FUZZY_PREFIX:
            for variant in self._edits(prefix):
                found.update(self.starting_with(variant, limit=50))
        return sorted(found, key=lambda word: (-self.frequency[word], len(word), word))[:limit]

    def _edits(self, word: str) -> set[str]:
        splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
        deletes = {a + b[1:] for a, b in splits if b}
        swaps = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
        changes = {a + c + b[1:] for a, b in splits if b for c in self.alphabet}
        inserts = {a + c + b for a, b in splits for c in self.alphabet}
        return (deletes | swaps | changes | inserts) - {word, ""}
