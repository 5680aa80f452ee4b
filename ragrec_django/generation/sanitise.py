"""Make a backend's answer safe to render, and read its citation markers.

``sanitise_output`` removes hidden characters, markdown images and (unless
allowed) links and bare URLs, cleans the HTML with nh3 against an allow-list,
and caps the length at a sentence boundary. Everything it drops is listed for
the reviewer. Citation markers (``[title]``, ``[source:12]``) are plain text
and pass through; ``split_citations`` reads them per sentence and
``strip_citations`` removes them from the text that is published.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import nh3

from .unicode import collapse_whitespace, reveal_hidden, strip_hidden

DEFAULT_TAGS = ("p", "ul", "li", "strong", "em", "br")
#: Tags removed together with their content, whatever the allow-list says.
CONTENT_TAGS = frozenset(
    {"script", "style", "iframe", "object", "embed", "template", "noscript", "textarea", "title", "svg", "math"}
)
URL_SCHEMES = frozenset({"http", "https"})
#: The only attributes kept, and only on these tags when they are allowed; URL attributes need an http(s) URL.
ATTRIBUTES = {"a": frozenset({"href"}), "img": frozenset({"src", "alt"})}
URL_ATTRIBUTES = frozenset({"href", "src"})
LINK_REL = "noopener noreferrer nofollow"
ABBREVIATIONS = frozenset({"e.g.", "i.e.", "approx.", "incl.", "no.", "vs.", "ca.", "dia."})

_NAMES = r"(?:source:\s*)?[\w.:/-]+(?:\s*[,;]\s*(?:source:\s*)?[\w.:/-]+)*"
CITATION = re.compile(r"\s*\[\s*(%s)\s*\](?!\()" % _NAMES)
_MARKER = r"\s*\[\s*%s\s*\](?!\()" % _NAMES
_URL = r"(?:[^()\s]|\([^()\s]*\))+"
_MD_IMAGE = re.compile(r"!\[[^\]\n]*\]\((%s)\)" % _URL)
_MD_LINK = re.compile(r"\[([^\]\n]*)\]\((%s)\)" % _URL)
_BARE_URL = re.compile(r"(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)[^\s<>\"']+", re.IGNORECASE)
_TAG = re.compile(r"<\s*([a-zA-Z][\w:-]*)([^<>]*)>?")
_ATTRIBUTE = re.compile(r"""([^\s=/]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_BLOCK_TAGS = re.compile(r"<\s*/?\s*(?:p|div|ul|ol|li|br|h[1-6]|tr|blockquote)\b[^>]*>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^>]*>")
#: What a browser could read as the start of markup: a tag, an end tag, a comment, a declaration.
_TAG_LIKE = re.compile(r"<\s*[/!?]?\s*[A-Za-z!?-][^<>]*>?")
MARKUP_PASSES = 8
_SENTENCE_END = re.compile(r"[.!?](?:%s)*(?=\s|<|$)|</(?:p|li|ul)>" % _MARKER)
_STOP_THEN_CITATIONS = re.compile(r"([.!?]+)((?:%s)+)" % _MARKER)
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"'”’)])\s+")


@dataclass
class SanitisedText:
    """Safe HTML, and what was removed to make it so (one line per removal, "kind: detail")."""

    html: str
    removed: list[str] = field(default_factory=list)


@dataclass
class Sentence:
    """A sentence of a draft without its citation markers, and the fields/sources it cites."""

    text: str
    citations: list[str] = field(default_factory=list)


def sanitise_output(
    text: str,
    *,
    allowed_tags: Sequence[str] = DEFAULT_TAGS,
    allow_links: bool = False,
    max_chars: int = 1200,
) -> SanitisedText:
    """Turn generated ``text`` into HTML that is safe to publish.

    Images are dropped unless "img" is in ``allowed_tags``; links (markdown,
    ``<a>`` and bare URLs) are dropped unless ``allow_links``, and then only
    http(s) links survive, with ``rel="noopener noreferrer nofollow"``.
    """
    tags = _tag_set(allowed_tags, allow_links)
    text = html.unescape(str(text))
    removed = ["hidden: " + run.describe() for run in reveal_hidden(text)]
    text = _markdown_media(strip_hidden(text), allow_links, removed)
    removed += _markup_removals(text, tags)
    clean = _cleaner(tags)
    cleaned = clean(_paragraphs(text, tags))
    if not allow_links:
        cleaned = _drop_bare_urls(cleaned, removed)
    return SanitisedText(_cap(collapse_whitespace(cleaned), max_chars, clean, removed), removed)


def _tag_set(allowed_tags: Sequence[str], allow_links: bool) -> frozenset[str]:
    tags = {tag.lower() for tag in allowed_tags} - CONTENT_TAGS
    return frozenset(tags | {"a"} if allow_links else tags - {"a"})


def _cleaner(tags: frozenset[str]) -> Callable[[str], str]:
    """nh3 with the allow-list, ``ATTRIBUTES`` and http(s) URLs only."""
    options = dict(
        tags=set(tags),
        clean_content_tags=set(CONTENT_TAGS),
        attributes={tag: set(names) for tag, names in ATTRIBUTES.items() if tag in tags},
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL if "a" in tags else None,
    )
    return lambda fragment: nh3.clean(fragment, **options)


def _drop(removed: list[str], kind: str, detail: str, replacement: str = "") -> str:
    removed.append("%s: %s" % (kind, detail[:120]))
    return replacement


def _drop_bare_urls(fragment: str, removed: list[str]) -> str:
    """``fragment`` without URLs in its text (the tags' own attributes are left to nh3)."""

    def drop(match: re.Match) -> str:
        return _drop(removed, "url", html.unescape(match.group()))

    parts = re.split(r"(<[^>]*>)", fragment)
    return "".join(part if part.startswith("<") else _BARE_URL.sub(drop, part) for part in parts)


def _markdown_media(text: str, allow_links: bool, removed: list[str]) -> str:
    """Drop markdown images; turn markdown links into <a> (http(s), when allowed) or their text."""
    text = _MD_IMAGE.sub(lambda m: _drop(removed, "image", m.group(1)), text)

    def link(match: re.Match) -> str:
        label, url = match.group(1), match.group(2)
        if allow_links and url.split(":", 1)[0].lower() in URL_SCHEMES:
            return '<a href="%s">%s</a>' % (html.escape(url), label)
        return _drop(removed, "link", url, label)

    return _MD_LINK.sub(link, text)


def _markup_removals(text: str, tags: frozenset[str]) -> list[str]:
    """What nh3 is about to remove: comments, tags off the allow-list, attributes, non-http(s) URLs."""
    removed = ["comment: " + m.group()[:120] for m in _COMMENT.finditer(text)]
    for match in _TAG.finditer(_COMMENT.sub("", text)):
        name = match.group(1).lower()
        if name not in tags:
            kind = {"img": "image", "a": "link"}.get(name, "markup")
            removed.append("%s: %s" % (kind, match.group()[:120]))
        elif not _attributes_kept(name, match.group(2)):
            removed.append("markup: %s" % match.group()[:120])
    return removed


def _attributes_kept(tag: str, attributes: str) -> bool:
    """Whether nh3 keeps every attribute of an allowed ``tag``."""
    for match in _ATTRIBUTE.finditer(attributes):
        name, value = match.group(1).lower(), next((v for v in match.groups()[1:] if v is not None), "")
        if name not in ATTRIBUTES.get(tag, ()):
            return False
        if name in URL_ATTRIBUTES and value.split(":", 1)[0].lower() not in URL_SCHEMES:
            return False
    return True


def _paragraphs(text: str, tags: frozenset[str]) -> str:
    """Wrap blank-line-separated plain text in <p> when allowed and no block markup is present."""
    if "p" not in tags or _BLOCK_TAGS.search(text):
        return text
    return "".join("<p>%s</p>" % part.strip() for part in text.split("\n\n") if part.strip())


def _cap(cleaned: str, max_chars: int, clean: Callable[[str], str], removed: list[str]) -> str:
    """``cleaned`` cut after the last whole sentence (with its citations) that fits in ``max_chars``."""
    if len(cleaned) <= max_chars:
        return cleaned
    ends = [m.end() for m in _SENTENCE_END.finditer(cleaned) if m.end() <= max_chars]
    words = [m.start() for m in re.finditer(r"\s", cleaned[:max_chars]) if _outside_tag(cleaned, m.start())]
    candidates = [(end, "") for end in reversed(ends)] + [(end, "…") for end in reversed(words)]
    for end, suffix in candidates:
        capped = clean(cleaned[:end].rstrip() + suffix)
        if len(capped) <= max_chars:
            _drop(removed, "truncated", "%d characters after the first %d" % (len(cleaned) - end, end))
            return capped
    _drop(removed, "truncated", "everything (no sentence fits in %d characters)" % max_chars)
    return ""


def _outside_tag(fragment: str, index: int) -> bool:
    return fragment.rfind("<", 0, index) <= fragment.rfind(">", 0, index)


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment: block tags become line breaks, other tags vanish, entities are decoded
    (once: the result is text, never to be unescaped again)."""
    return collapse_whitespace(html.unescape(_ANY_TAG.sub("", _BLOCK_TAGS.sub("\n", fragment))))


def plain_text(text: str) -> str:
    """Text for a field that is plain text (an API's JSON, a page's escaped text): visible characters only,
    NFKC-normalised (``strip_hidden``), then anything that reads as markup removed.

    The markup is removed after the normalisation, because NFKC makes markup of look-alikes (fullwidth
    "＜script＞" becomes "<script>"). Removing one tag can join two halves into another ("<<b>img ...>"),
    so it repeats until nothing is left; entities are not decoded here (decode at most once, before).
    """
    text = strip_hidden(text)
    for _ in range(MARKUP_PASSES):
        stripped = _TAG_LIKE.sub("", text)
        if stripped == text:
            break
        text = stripped
    else:
        text = text.replace("<", "")
    return collapse_whitespace(text)


def citation_names(marker_body: str) -> list[str]:
    """The names in one marker's body: "title, source: 3" -> ["title", "source:3"]."""
    return [re.sub(r"^source:\s*", "source:", name.strip()) for name in re.split(r"[,;]", marker_body) if name.strip()]


def strip_citations(text: str) -> str:
    """``text`` without citation markers (and the spaces before them), for publishing."""
    return CITATION.sub("", text).strip()


def split_citations(text: str) -> list[Sentence]:
    """The sentences of ``text`` (plain or HTML), each with the citations that end it.

    Markers may come before or after the full stop ("copper [material]." or
    "copper. [material]"); list items and paragraphs end sentences too.
    """
    sentences: list[Sentence] = []
    for line in html_to_text(text).split("\n"):
        for piece in _sentences(_STOP_THEN_CITATIONS.sub(r"\2\1", line)):
            citations = [name for m in CITATION.finditer(piece) for name in citation_names(m.group(1))]
            body = strip_citations(piece)
            if body:
                sentences.append(Sentence(body, citations))
            elif sentences:
                sentences[-1].citations.extend(citations)
    return sentences


def _sentences(line: str) -> list[str]:
    """``line`` split after sentence-ending punctuation, not after common abbreviations."""
    pieces: list[str] = []
    for piece in _SENTENCE_BREAK.split(line):
        if pieces and pieces[-1].split()[-1].lower() in ABBREVIATIONS:
            pieces[-1] += " " + piece
        else:
            pieces.append(piece)
    return [piece.strip() for piece in pieces if piece.strip()]
