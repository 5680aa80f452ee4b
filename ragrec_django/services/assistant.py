"""A grounded shopping assistant: natural-language request -> retrieved products -> cited answer.

Filters are parsed from the request ("under 100", colours), candidates come
from the hybrid search, and the generator answers citing candidates by id.
Every citation is validated: a sentence citing an id that was not retrieved,
or naming a catalogue product that was not retrieved, is dropped, so the
answer only ever recommends products the shop actually found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from .. import registry, storage
from ..conf import ragrec_settings
from ..exceptions import BadQuery
from ..generation.prompt import (
    ASSISTANT_PROMPT_VERSION,
    build_assistant_request,
    parse_budget_and_filters,
)
from ..generation.sanitise import html_to_text, plain_text, sanitise_output, split_citations
from ..limits import ASSISTANT_REQUEST_MAX_CHARS, SEARCH_QUERY_MAX_CHARS
from .inputs import checked_text
from .recommend import Recommendation, search

EMPTY_REQUEST = "Tell the assistant what you are looking for."


@dataclass
class AssistantAnswer:
    request: str
    answer: str
    products: list[Recommendation]
    filters: dict
    generator_version: str
    prompt_version: str = ASSISTANT_PROMPT_VERSION
    dropped: list[str] = field(default_factory=list)


def answer(request_text: str, *, k: int = 8, config: str = "default") -> AssistantAnswer:
    """Answer a shopper's request from retrieved products only.

    ``BadQuery`` for a request that is empty, longer than ``ASSISTANT_REQUEST_MAX_CHARS`` or not usable text
    (``services.inputs.checked_text``). The answer is plain text (``plain_text``: no markup, whatever the
    products' data or the generator wrote).
    """
    request_text = checked_text(
        request_text, what="The request", max_chars=ASSISTANT_REQUEST_MAX_CHARS, empty=EMPTY_REQUEST
    )
    parsed = parse_budget_and_filters(request_text)
    query = _search_query(" ".join([*parsed.get("colours", []), parsed.get("query") or ""])) or _search_query(
        request_text
    )
    if not query:
        raise BadQuery(EMPTY_REQUEST)
    price = {name: Decimal(str(parsed[name])) for name in ("min_price", "max_price") if name in parsed}
    found = search(query, k=k, config=config, **price)
    by_key = {rec.item.key: rec for rec in found}
    sources = [_source(rec) for rec in found]
    generator = registry.get_generator(ragrec_settings.ASSISTANT_GENERATOR)
    raw = generator.generate(build_assistant_request(request_text, sources))
    kept, cited, dropped = _validated_sentences(sanitise_output(raw).html, set(by_key))
    return AssistantAnswer(
        request=request_text,
        answer=" ".join(kept) if kept else "Sorry, nothing in the shop matched that request.",
        products=[by_key[key] for key in cited],
        filters={"query": query, **{name: str(value) for name, value in price.items()}},
        generator_version=generator.version,
        dropped=dropped,
    )


def _search_query(text: str) -> str:
    """The words to search for: plain text (no markup, even after NFKC), at most ``SEARCH_QUERY_MAX_CHARS``
    characters, cut at a word boundary (a long request is allowed; the search takes its first words)."""
    query = plain_text(text)
    if len(query) > SEARCH_QUERY_MAX_CHARS:
        cut = query[: SEARCH_QUERY_MAX_CHARS + 1]
        query = cut.rsplit(" ", 1)[0] if " " in cut else cut[:SEARCH_QUERY_MAX_CHARS]
    return query.strip()


def _source(rec: Recommendation) -> dict:
    item = rec.item
    fields = {"category": item.category, "in_stock": item.in_stock, **item.metadata}
    if item.price is not None:
        fields["price"] = str(item.price)
    return {"id": item.key, "title": item.title, "text": item.text[:400], "fields": fields}


def _validated_sentences(html: str, retrieved: set[str]) -> tuple[list[str], list[str], list[str]]:
    """Sentences kept (plain text, markers removed), ids cited in order, and why sentences were dropped."""
    kept, cited, dropped = [], [], []
    named = storage.products_named_in(html_to_text(html))  # to catch products the model invents a link to
    for sentence in split_citations(html):
        ids = [c.removeprefix("source:") for c in sentence.citations]
        unknown = [i for i in ids if i not in retrieved]
        strangers = [key for key, title in named if title.lower() in sentence.text.lower() and key not in retrieved]
        if unknown or strangers:
            dropped.append("%s (cites %s)" % (sentence.text[:80], ", ".join(unknown + strangers)))
            continue
        kept.append(plain_text(sentence.text))  # already text (split_citations decoded it): never unescaped again
        cited.extend(i for i in ids if i not in cited)
    return kept, cited, dropped
