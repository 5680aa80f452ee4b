"""With an OpenAI-compatible generator, the assistant reads constraints as JSON validated against a schema:
a valid reply is applied, a bad one is retried once, then the rule parser is used; answers stay grounded."""

import json

import pytest

from ragrec_django import registry
from ragrec_django.generation import dialogue
from ragrec_django.services import conversation as conv
from ragrec_django.services.results import Visitor
from tests.generators.fakeserver import FakeChatServer, completion
from tests.services.test_conversation import gift_shop  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def llm(settings):
    """A scripted OpenAI-compatible server configured as the assistant's generator."""
    server = FakeChatServer()
    server.start()
    settings.RAGREC = {
        **settings.RAGREC,
        "ASSISTANT_GENERATOR": "llm",
        "GENERATORS": {
            **settings.RAGREC.get("GENERATORS", {}),
            "llm": {
                "BACKEND": "ragrec_django.ml.generators.OpenAICompatibleGenerator",
                "OPTIONS": {"base_url": server.base_url, "model": "tiny-llm", "api_key": None, "api_key_env": None},
            },
        },
    }
    registry.clear()
    yield server
    registry.clear()
    server.stop()


def is_extraction(received) -> bool:
    return "JSON Schema" in received.json["messages"][0]["content"]


def test_valid_json_is_applied_and_the_answer_is_grounded(llm, gift_shop):
    mug, bottle = gift_shop["Black enamel camping mug"], gift_shop["Pink water bottle"]
    llm.reply(json_body=completion(json.dumps({"category": "Mugs", "max_price": 20, "excluded_colours": ["purple"]})))
    llm.reply(
        json_body=completion("The camping mug fits [%s]. The Pink water bottle is lovely [%s]." % (mug.pk, bottle.pk))
    )
    result = conv.take_turn(conv.start(Visitor(session_key="llm1")), "something to drink tea from, nothing pricey")

    assert (result.state.category, result.state.max_price, result.state.excluded_colours) == ("Mugs", 20.0, ["purple"])
    assert [p.item.key for p in result.products] == [str(mug.pk)]
    assert "camping mug" in result.answer and "Pink water bottle" not in result.answer
    assert [is_extraction(r) for r in llm.received] == [True, False]
    data = llm.received[0].json["messages"][1]["content"]
    assert "something to drink tea from" in data and "<<<DATA" in data  # the message travels as delimited data


def test_bad_json_twice_falls_back_to_the_rule_parser(llm, gift_shop):
    mug, bottle = gift_shop["Black enamel camping mug"], gift_shop["Pink water bottle"]
    llm.reply(json_body=completion("Sure! The shopper wants a mug."))
    llm.reply(json_body=completion(json.dumps({"category": "Teapots", "colour": "red"})))
    llm.reply(json_body=completion("The camping mug fits [%s]. Also try [%s]." % (mug.pk, bottle.pk)))
    result = conv.take_turn(conv.start(Visitor(session_key="llm2")), "a mug under 20 not purple")

    assert (result.state.category, result.state.max_price, result.state.excluded_colours) == ("Mugs", 20.0, ["purple"])
    assert [p.item.key for p in result.products] == [str(mug.pk)]
    assert "camping mug" in result.answer and str(bottle.pk) not in result.answer
    assert [is_extraction(r) for r in llm.received] == [True, True, False]


@pytest.mark.parametrize(
    "reply, problem",
    [
        ("[]", "not a JSON object"),
        ('{"max_price": "cheap"}', "max_price"),
        ('{"max_price": -1}', "below"),
        ('{"reset": 1}', "reset"),
        ('{"liked_positions": [3]}', "not shown"),
        ('{"category": "Teapots"}', "category"),
        ('{"ignore": "rules"}', "unknown keys"),
    ],
)
def test_replies_that_break_the_schema_are_refused(reply, problem):
    state = dialogue.DialogueState(shown=[{"key": "1", "title": "A mug"}])
    with pytest.raises(ValueError, match=problem):
        dialogue.update_from_json(reply, state, categories=["Mugs"])


def test_a_valid_reply_resolves_positions_and_relative_prices():
    state = dialogue.DialogueState(
        shown=[{"key": "1", "title": "A", "price": 10.0}, {"key": "2", "title": "B", "price": 30.0}]
    )
    update = dialogue.update_from_json('```json\n{"liked_positions": [2], "cheaper": true}\n```', state)
    assert update.liked == ["2"] and update.max_price == 19.99
