"""The search page's controls: facet choices and sort order from the query string, and the links that change them.

A facet choice is ``filter=<facet>:<value>`` in the query string (as in the REST API), so every state of the
page is a plain link: choosing or removing a value, or sorting, needs no JavaScript.
"""

from __future__ import annotations

from urllib.parse import urlencode

from ragrec_django.services.search import SORTS, attributes

SORT_LABELS = {
    "relevance": "Best match",
    "price_asc": "Price: low to high",
    "price_desc": "Price: high to low",
    "newest": "Newest",
}
MAX_FILTERS = 20


def chosen_filters(query_string) -> list[tuple[str, str]]:
    """The ``filter=name:value`` choices of the request, in order, each once."""
    found = []
    for entry in query_string.getlist("filter")[:MAX_FILTERS]:
        name, separator, value = entry.partition(":")
        if separator and name.strip() and value.strip() and (name.strip(), value.strip()) not in found:
            found.append((name.strip(), value.strip()))
    return found


def chosen_sort(query_string) -> str:
    sort = query_string.get("sort", "relevance")
    return sort if sort in SORTS else "relevance"


def search_options(query_string) -> dict:
    """Keyword arguments of ``recommend.search`` for the page: sort, facet choices, every facet counted."""
    selected: dict[str, list[str]] = {}
    for name, value in chosen_filters(query_string):
        selected.setdefault(name, []).append(value)
    return {"sort": chosen_sort(query_string), "selected": selected, "facets": ["category", *attributes(), "price"]}


def page_url(query: str, filters: list[tuple[str, str]], sort: str) -> str:
    params = [("q", query)] + [("filter", "%s:%s" % pair) for pair in filters]
    if sort != "relevance":
        params.append(("sort", sort))
    return "?" + urlencode(params)


def controls(query: str, query_string, results) -> dict:
    """Template context: ``facets`` (each value with the link that toggles it), ``chosen`` (the choices, each
    with the link that removes it), ``sorts`` (label, link, current) and ``sort``."""
    filters, sort = chosen_filters(query_string), chosen_sort(query_string)
    facets = []
    for facet in getattr(results, "facets", None) or []:
        values = []
        for value in facet.values:
            pair = (facet.name, value.value)
            toggled = [f for f in filters if f != pair] if pair in filters else filters + [pair]
            values.append(
                {
                    "value": value.value,
                    "label": value.label,
                    "count": value.count,
                    "selected": pair in filters,
                    "url": page_url(query, toggled, sort),
                }
            )
        facets.append({"name": facet.name, "label": facet.label, "values": values})
    labels = {(f["name"], v["value"]): v["label"] for f in facets for v in f["values"]}
    chosen = [
        {
            "label": "%s: %s" % (name, labels.get((name, value), value)),
            "url": page_url(query, [f for f in filters if f != (name, value)], sort),
        }
        for name, value in filters
    ]
    sorts = [
        {"value": value, "label": SORT_LABELS[value], "url": page_url(query, filters, value), "current": value == sort}
        for value in SORTS
    ]
    return {"facets": facets, "chosen": chosen, "sorts": sorts, "sort": sort, "filters": filters}
