"""Remove (and reveal) characters a reader cannot see but a model can.

Tag characters can spell whole instructions invisibly, zero-width and bidi
controls hide or reorder text, and control characters confuse renderers. They
are removed, the text is NFKC-normalised (fullwidth letters and look-alike
spaces become plain ones) and whitespace is collapsed.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

KEPT_CONTROLS = frozenset("\n\t")
ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad\u2061\u2062\u2063\u2064\u180e\u034f")
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
TAG_RANGE = range(0xE0000, 0xE0080)
VARIATION_SELECTORS = (range(0xFE00, 0xFE10), range(0xE0100, 0xE01F0))
LINE_SEPARATORS = {"\r\n": "\n", "\r": "\n", "\u2028": "\n", "\u2029": "\n\n", "\x85": "\n"}

_LINE_BREAKS = re.compile("|".join(map(re.escape, LINE_SEPARATORS)))
_SPACES = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class HiddenRun:
    """Consecutive hidden characters of one kind, found at ``offset`` of the original text."""

    offset: int
    kind: str
    chars: str

    @property
    def codepoints(self) -> list[str]:
        """The characters as ``U+XXXX`` names."""
        return ["U+%04X" % ord(ch) for ch in self.chars]

    @property
    def decoded(self) -> str:
        """For tag characters, the ASCII text they spell (the usual way to smuggle instructions)."""
        if self.kind != "tag":
            return ""
        return "".join(chr(ord(ch) - 0xE0000) for ch in self.chars if 0x20 <= ord(ch) - 0xE0000 < 0x7F)

    def describe(self) -> str:
        """One line for a reviewer."""
        text = "%d %s character%s at position %d (%s)" % (
            len(self.chars),
            self.kind,
            "" if len(self.chars) == 1 else "s",
            self.offset,
            " ".join(self.codepoints[:8]) + (" ..." if len(self.chars) > 8 else ""),
        )
        return text + (" spelling %r" % self.decoded if self.decoded else "")


@functools.lru_cache(maxsize=8192)
def hidden_kind(ch: str) -> str | None:
    """Why ``ch`` is hidden ("tag", "zero-width", "bidi", "control", ...), or None if it is visible."""
    cp = ord(ch)
    if cp in TAG_RANGE:
        return "tag"
    if ch in ZERO_WIDTH:
        return "zero-width"
    if ch in BIDI:
        return "bidi"
    if ch in FILLERS:
        return "filler"
    if any(cp in selectors for selectors in VARIATION_SELECTORS):
        return "variation-selector"
    return _category_kind(ch)


def _category_kind(ch: str) -> str | None:
    category = unicodedata.category(ch)
    if category == "Cc" and ch not in KEPT_CONTROLS and ch not in LINE_SEPARATORS:
        return "control"
    if category == "Cf":
        return "format"
    if category in ("Co", "Cs"):
        return "private-use" if category == "Co" else "surrogate"
    return None


def strip_hidden(text: str) -> str:
    """``text`` without hidden characters, NFKC-normalised, with whitespace collapsed.

    Runs of spaces and tabs become one space, line breaks are kept (at most one
    blank line in a row) and the ends are trimmed.
    """
    text = _LINE_BREAKS.sub(lambda m: LINE_SEPARATORS[m.group()], str(text))
    if text.isascii():  # the common case: only ASCII controls can hide, and NFKC changes nothing
        return collapse_whitespace(_ASCII_HIDDEN.sub("", text))
    visible = "".join(ch for ch in text if hidden_kind(ch) is None)
    return collapse_whitespace(unicodedata.normalize("NFKC", visible))


#: The ASCII characters ``hidden_kind`` hides (controls other than tab and line feed).
_ASCII_HIDDEN = re.compile("[%s]" % "".join(re.escape(chr(c)) for c in range(0x80) if hidden_kind(chr(c))))


def collapse_whitespace(text: str) -> str:
    """One space for each run of horizontal whitespace, at most one blank line, trimmed ends."""
    text = _SPACE_AROUND_NEWLINE.sub("\n", _SPACES.sub(" ", text))
    return _BLANK_LINES.sub("\n\n", text).strip()


def reveal_hidden(text: str) -> list[HiddenRun]:
    """The hidden characters ``strip_hidden`` removes from ``text``, grouped into runs by kind."""
    runs: list[HiddenRun] = []
    for offset, ch in enumerate(str(text)):
        kind = hidden_kind(ch)
        if kind is None:
            continue
        last = runs[-1] if runs else None
        if last and last.kind == kind and last.offset + len(last.chars) == offset:
            runs[-1] = HiddenRun(last.offset, kind, last.chars + ch)
        else:
            runs.append(HiddenRun(offset, kind, ch))
    return runs
