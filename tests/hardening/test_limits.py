"""One constant per input limit (``ragrec_django.limits``), and the code, the OpenAPI schema and the docs agree.

The reported case (issue 19): the assistant documented 500 characters and refused 320 ("longer than
300": its query went to the search's own limit). Here every limit is read from the constant and checked
in README.md's table, in each doc statement of a limit, in the schema and in a refusal at limit + 1.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

from ragrec_django import limits
from ragrec_django.exceptions import BadQuery
from ragrec_django.services import assistant, recommend

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]

#: Every sentence of the docs that states a limit: (file, pattern whose group 1 is the number, constant).
DOC_STATEMENTS = [
    ("docs/experiments.md", r"an anonymous visitor id, at most (\d+) characters", "SESSION_KEY_MAX_CHARS"),
    ("docs/reliability.md", r"the API takes up to (\d+) events per post", "EVENT_BATCH_MAX"),
    ("docs/production.md", r"a full batch of (\d+) events", "EVENT_BATCH_MAX"),
    ("README.md", r"searches with its first (\d+) characters", "SEARCH_QUERY_MAX_CHARS"),
    ("docs/search.md", r"The index holds the first ([\d,]+) characters of an item's text", "INDEXED_TEXT_MAX_CHARS"),
    ("docs/conversation.md", r"an optional note \(up to (\d+) characters\)", "TURN_FLAG_NOTE_MAX_CHARS"),
]
#: A number of characters, events or minutes stated in the docs; each must be one of DOC_STATEMENTS.
LIMIT_PHRASE = re.compile(
    r"\d[\d,]*\+? (?:random )?(?:characters|chars)\b|\d[\d,]* events per (?:post|batch|request)"
    r"|\d[\d,]* minutes in the future|batch of \d[\d,]* events|\d[\d,]* items per basket"
)
#: Phrases of that shape that are not limits of ragrec_django.
#: (a password's advice, a load generator's pace, a benchmark's corpus)
NOT_LIMITS = ("50+ random characters", "one batch of 500 events every 0.1 s", "119,600 characters of Chinese")


def readme_table() -> dict[str, int]:
    section = README.read_text().split("### Input limits", 1)[1].split("\n### ", 1)[0]
    return {name: int(value) for name, value in re.findall(r"^\| `([A-Z_]+)` \| (\d+) \|", section, flags=re.M)}


def test_readme_table_lists_every_limit_with_its_value():
    assert readme_table() == {name: getattr(limits, name) for name in limits.DOCUMENTED}


def test_every_limit_stated_in_the_docs_is_the_constant():
    for path, pattern, name in DOC_STATEMENTS:
        found = re.findall(pattern, (ROOT / path).read_text())
        assert found, "%s no longer says %r: update DOC_STATEMENTS" % (path, pattern)
        assert {int(value.replace(",", "")) for value in found} == {getattr(limits, name)}, (path, pattern)


def test_no_other_limit_is_stated_in_the_docs():
    """A new sentence stating a limit must be listed in DOC_STATEMENTS (and so checked)."""
    stated = {
        (path, m.group())
        for path, pattern, _ in DOC_STATEMENTS
        for m in re.finditer(pattern, (ROOT / path).read_text())
    }
    for doc in DOCS:
        text = doc.read_text()
        for match in LIMIT_PHRASE.finditer(text):
            line = text[text.rfind("\n", 0, match.start()) + 1 : text.find("\n", match.end())]
            if line.startswith("| `") or any(phrase in line for phrase in NOT_LIMITS):
                continue  # the tables: README's is checked above, the settings table holds settings
            path = str(doc.relative_to(ROOT))
            assert any(p == path and match.group() in whole for p, whole in stated), (
                "%s states a limit not checked by DOC_STATEMENTS: %r" % (path, line.strip())
            )


def test_the_openapi_schema_declares_the_constants(client, db):
    schema = client.get(reverse("ragrec_api:schema"), HTTP_ACCEPT="application/json").json()

    def query_parameter(path, name):
        parameters = schema["paths"]["/api/recommend/%s" % path]["get"]["parameters"]
        return next(p["schema"] for p in parameters if p["name"] == name)

    assert query_parameter("search/", "q")["maxLength"] == limits.SEARCH_QUERY_MAX_CHARS
    assert query_parameter("assistant/", "q")["maxLength"] == limits.ASSISTANT_REQUEST_MAX_CHARS
    assert query_parameter("for-you/", "session")["maxLength"] == limits.SESSION_KEY_MAX_CHARS
    assert query_parameter("trending/", "category")["maxLength"] == limits.CATEGORY_MAX_CHARS
    event = schema["components"]["schemas"]["TrackedEventRequest"]["properties"]
    assert event["item"]["maxLength"] == limits.ITEM_KEY_MAX_CHARS
    assert event["session_key"]["maxLength"] == limits.SESSION_KEY_MAX_CHARS
    assert event["order_id"]["maxLength"] == limits.ORDER_ID_MAX_CHARS
    assert event["source"]["maxLength"] == limits.EVENT_SOURCE_MAX_CHARS
    assert event["query"]["maxLength"] == limits.EVENT_QUERY_MAX_CHARS
    assert event["idempotency_key"]["maxLength"] == limits.IDEMPOTENCY_KEY_MAX_CHARS
    assert event["quantity"]["maximum"] == limits.EVENT_QUANTITY_MAX


def test_the_assistant_takes_every_character_it_documents(catalogue):
    """Issue 19: 320 characters were refused as "longer than 300"; the limit is the assistant's own."""
    words = ("a warm red ceramic coffee mug for a cold morning " * 20)[: limits.ASSISTANT_REQUEST_MAX_CHARS]
    assert len(words) == limits.ASSISTANT_REQUEST_MAX_CHARS
    answer = assistant.answer(words)
    assert answer.products and len(answer.filters["query"]) <= limits.SEARCH_QUERY_MAX_CHARS
    with pytest.raises(BadQuery, match="longer than %d characters" % limits.ASSISTANT_REQUEST_MAX_CHARS):
        assistant.answer(words + "x")


def test_search_refuses_one_character_over_its_limit(catalogue):
    assert recommend.search("mug " + "m" * (limits.SEARCH_QUERY_MAX_CHARS - 4), k=3) is not None
    with pytest.raises(BadQuery, match="longer than %d characters" % limits.SEARCH_QUERY_MAX_CHARS):
        recommend.search("m" * (limits.SEARCH_QUERY_MAX_CHARS + 1))


@pytest.mark.parametrize(
    "path, limit", [("search/", limits.SEARCH_QUERY_MAX_CHARS), ("assistant/", limits.ASSISTANT_REQUEST_MAX_CHARS)]
)
def test_the_api_refuses_one_character_over_and_says_the_limit(api, catalogue, path, limit):
    response = api.get("/api/recommend/%s" % path, {"q": "m" * (limit + 1)})
    assert response.status_code == 400
    assert "no more than %d characters" % limit in response.json()["q"][0]
