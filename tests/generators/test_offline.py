"""FactsGenerator: deterministic text written only from the request's facts and sources, with citations."""

from __future__ import annotations

import json
import re

import pytest

from ragrec_django.ml.generation import GenerationError, GenerationRequest
from ragrec_django.ml.generators import FactsGenerator

MARKER = re.compile(r"\[([^\[\]]+)\]")
#: A sentence: text without brackets, one space, one or more markers, a full stop.
SENTENCE = re.compile(r"[^\[\]]+? (?:\[[^\[\]]+\])+\.")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
COLOURS = set(
    "red blue navy green black white grey gray yellow pink purple orange brown beige cream ivory teal gold silver khaki olive".split()
)
MATERIALS = set(
    "linen cotton wool silk leather denim polyester cashmere suede nylon velvet satin canvas bamboo hemp".split()
)
SIZES = set("xxs xs s m l xl xxl xxxl small medium large".split())
FACT_VOCABULARY = COLOURS | MATERIALS | SIZES

PRODUCTS = [
    {
        "title": "Linen Shirt",
        "category": "Shirts",
        "colour": "Navy",
        "material": "linen",
        "size": ["S", "M", "L"],
        "price": "49.90",
        "currency": "EUR",
        "attributes": {
            "fit": "regular",
            "pattern": "striped",
            "machine_washable": True,
            "features": ["two pockets", "hood"],
        },
        "id": "sku-1",
        "url": "https://shop.example/p/1",
        "description": "Old copy mentioning silk and 100 percent cashmere.",
    },
    {"title": "Wool Coat", "brand": "Acme", "category": "Coats", "material": "wool", "price": 199.5, "color": "black"},
    {"name": "Canvas Tote", "colour": ["cream", "olive"], "price": 25, "currency": "€", "size": "large"},
    {"title": "Silk Scarf", "material": "silk", "size": "M", "specs": {"length_cm": 180, "width_cm": 45}},
    {"title": "Trail Runner", "category": "Shoes", "price": "89.00"},
]
SOURCES = [
    {
        "id": "sku-2",
        "title": "Oxford Shirt",
        "text": "A crisp cotton shirt in white.",
        "fields": {"material": "cotton", "category": "Shirts", "price": "59.00"},
    },
    {
        "id": "sku-3",
        "title": "Chino Trousers",
        "text": "Linen chinos.",
        "fields": {"material": "linen", "colour": "khaki"},
    },
    {"id": "sku-4", "title": "Leather Belt", "text": "", "fields": {"material": "leather", "colour": "brown"}},
]


def describe(facts, sources=()) -> str:
    return FactsGenerator().generate(
        GenerationRequest(task="description", messages=[], facts=facts, sources=list(sources))
    )


def ask(text, candidates) -> str:
    return FactsGenerator().generate(
        GenerationRequest(task="assistant", messages=[], facts={"request": text}, sources=candidates)
    )


def words(text: str) -> set[str]:
    return set(re.findall(r"[^\W_]+", text.lower()))


def prose(text: str) -> str:
    """The text without its citation markers."""
    return MARKER.sub(" ", text)


def lookup(facts: dict, path: str):
    value = facts
    for part in path.split("."):
        value = value[part]
    return value


def test_version_and_options():
    assert FactsGenerator(**{}).version == "offline-facts:1"


def test_deterministic_but_varied():
    for facts in PRODUCTS:
        assert describe(facts, SOURCES) == describe(dict(facts), [dict(s) for s in SOURCES])
    # Different products get different phrasings (not one fixed template with the values swapped in).
    skeletons = {
        re.sub(
            r"\s+",
            " ",
            MARKER.sub(
                "",
                describe({"title": "Item %d" % i, "category": "Cat", "colour": "red", "price": i})
                .replace("Item %d" % i, "T")
                .replace(str(i), "N"),
            ),
        )
        for i in range(20)
    }
    assert len(skeletons) >= 4


@pytest.mark.parametrize("facts", PRODUCTS, ids=lambda f: f.get("title") or f.get("name"))
@pytest.mark.parametrize("with_sources", [False, True], ids=["alone", "with-sources"])
def test_every_sentence_is_cited_and_every_citation_holds(facts, with_sources):
    sources = SOURCES if with_sources else []
    text = describe(facts, sources)
    sentences = SENTENCE.findall(text)
    assert "".join(sentences) == text, "uncited text in %r" % text
    sentences = [sentence.strip() for sentence in sentences]
    assert len(sentences) >= 2
    source_ids = {s["id"]: s for s in sources}
    for sentence in sentences:
        for marker in MARKER.findall(sentence):
            if marker.startswith("source:"):
                assert source_ids[marker[len("source:") :]]["title"] in sentence
                continue
            value = lookup(facts, marker)  # a real fact key (KeyError otherwise)
            for item in value if isinstance(value, list) else [value]:
                if not isinstance(item, bool):
                    assert str(item) in sentence, "%r cites %s but does not say %r" % (sentence, marker, item)


@pytest.mark.parametrize("facts", PRODUCTS, ids=lambda f: f.get("title") or f.get("name"))
def test_uses_only_facts_and_sources(facts):
    text = describe(facts, SOURCES)
    # What the text may rest on: the facts it writes from (not the skipped free-text description) and source titles.
    allowed = {k: v for k, v in facts.items() if k not in ("description", "url", "id")}
    allowed_text = json.dumps(allowed, default=str) + " " + " ".join(s["title"] for s in SOURCES)
    for number in NUMBER.findall(MARKER.sub("", text)):
        assert number in allowed_text, "invented number %s in %r" % (number, text)
    invented = (words(prose(text)) & FACT_VOCABULARY) - words(allowed_text)
    assert not invented, "invented %s in %r" % (invented, text)
    assert "sku-1" not in MARKER.sub("", text) and "https" not in text  # identifiers and links stay out
    assert "cashmere" not in text  # the material fact wins over the old free text's materials


def test_minimal_facts_still_give_a_sentence():
    assert describe({"title": "Plain Mug"}) in {
        "Meet Plain Mug [title].",
        "Introducing Plain Mug [title].",
        "This is Plain Mug [title].",
    }
    assert describe({"category": "Mugs"}) == "It belongs to the Mugs range [category]."
    text = describe({"title": "Plain Mug"}, SOURCES[:1])
    assert "Plain Mug [title]." in text and "Oxford Shirt" in text and "[source:sku-2]" in text


def test_nothing_to_describe_is_an_error():
    with pytest.raises(GenerationError):
        describe({})
    with pytest.raises(GenerationError):
        describe({"id": "x", "url": "https://example.com", "title": "   "})


def test_sources_shared_values_and_self_mentions():
    text = describe({"title": "Linen Shirt", "material": "linen"}, SOURCES)
    assert "Like Chino Trousers, it is made from linen [material][source:sku-3]." in text
    # The product itself among the retrieved sources is not "related" to itself; sources without a title are skipped.
    text = describe({"title": "Oxford Shirt"}, [SOURCES[0], {"id": "x", "fields": {}}])
    assert "source:" not in text


def test_square_brackets_in_values_cannot_fake_a_marker():
    text = describe({"title": "Mug [limited]", "colour": "red]["})
    assert MARKER.findall(text) == ["title", "colour"]
    assert "Mug (limited)" in text


def test_uncitable_keys_are_left_out_and_source_ids_are_made_marker_safe():
    text = describe(
        {"title": "Mug", "Care instructions": "hand wash", "glaze": "matte"}, [{"id": "sku 9/x", "title": "Bowl"}]
    )
    assert "hand wash" not in text and "Its glaze is matte [glaze]." in text
    assert "[source:sku-9-x]" in text


def test_unknown_task_is_an_error():
    with pytest.raises(GenerationError, match="cannot do task"):
        FactsGenerator().generate(GenerationRequest(task="poem", messages=[], facts={"title": "x"}))


# -- assistant -----------------------------------------------------------------------

CANDIDATES = [
    {
        "id": "p1",
        "title": "Scarlet Wrap Dress",
        "text": "",
        "fields": {"price": "45.00", "category": "Dresses", "colour": "red"},
    },
    {
        "id": "p2",
        "title": "Midi Dress",
        "text": "",
        "fields": {"price": "39.00", "category": "Dresses", "colour": "blue"},
    },
    {
        "id": "p3",
        "title": "Evening Gown",
        "text": "",
        "fields": {"price": "120.00", "category": "Dresses", "colour": "red"},
    },
    {
        "id": "p4",
        "title": "Red Sandals",
        "text": "",
        "fields": {"price": "30.00", "category": "Shoes", "colour": "red"},
    },
    {"id": "p5", "title": "Sun Hat", "text": "", "fields": {"price": "15.00", "category": "Hats", "colour": "white"}},
]


def cited_ids(text: str) -> list[str]:
    return MARKER.findall(text)


def test_assistant_recommends_up_to_three_within_budget_and_cites_ids():
    text = ask("a red dress under 50", CANDIDATES)
    ids = cited_ids(text)
    assert ids == ["p1", "p2", "p4"]  # p3 is over the budget; at most three, in the given order
    titles = {c["id"]: c["title"] for c in CANDIDATES}
    for sentence in re.findall(r"[^.\[]*(?:\.\d+[^.\[]*)*\[[^\]]+\]\.", text):
        [cid] = cited_ids(sentence)
        assert titles[cid] in sentence
    assert "Scarlet Wrap Dress is from the Dresses range you asked about, comes in red as requested" in text
    assert "within your budget of 50" in text or "under your budget of 50" in text
    allowed = json.dumps(CANDIDATES) + " a red dress under 50"
    for number in NUMBER.findall(MARKER.sub("", text)):
        assert number in allowed
    assert (words(prose(text)) & FACT_VOCABULARY) <= words(allowed)
    assert ask("a red dress under 50", CANDIDATES) == text  # deterministic


def test_assistant_puts_candidates_matching_more_of_the_request_first():
    text = ask("blue dresses", CANDIDATES)
    assert cited_ids(text) == ["p2", "p1", "p3"]
    assert text.split(". ", 1)[1].startswith(
        "Midi Dress is from the Dresses range you asked about, comes in blue as requested"
    )


def test_assistant_without_a_budget_states_fields():
    text = ask("something for the beach", CANDIDATES[3:])
    assert cited_ids(text) == ["p4", "p5"]
    assert "Sun Hat" in text and "costs 15.00" in text and "Hats" in text


def test_assistant_only_cites_given_ids_and_skips_unusable_candidates():
    candidates = [{"id": "", "title": "No id"}, {"id": "q1"}, {"id": 7, "title": "Seven", "fields": {"price": 9}}]
    text = ask("anything", candidates)
    assert cited_ids(text) == ["7"] and "Seven" in text and "No id" not in text


def test_assistant_with_no_sources_says_nothing_matched():
    assert ask("a purple raincoat", []) == "Sorry, nothing matched your request for \u201ca purple raincoat\u201d."
    assert "nothing matched" in ask("", [])


def test_assistant_when_everything_is_over_budget():
    text = ask("dress below 10", CANDIDATES[:3])
    assert text == "Nothing matched within your budget of 10. The closest is Midi Dress at 39.00 [p2]."


@pytest.mark.parametrize(
    "text, budget",
    [
        ("dress under 50", "50"),
        ("a sofa under $1,200", "1,200"),
        ("max €45.50 please", "45.50"),
        ("lamp below 30.", "30"),
        ("up to 3 items", None),
        ("delivered within 2 days", None),
        ("under 10 kg", None),
        ("under 50% polyester", None),
    ],
)
def test_budget_is_read_from_the_request(text, budget):
    from ragrec_django.ml.generators.offline import _BUDGET

    match = _BUDGET.search(text)
    assert (match.group(1) if match else None) == budget
