"""The shopping assistant answers from retrieved products only, with the offline and an HTTP generator."""

import pytest

from ragrec_django.services import assistant
from ragrec_django.services.recommend import BadQuery
from shop_demo.catalog.models import Product
from tests.generators.fakeserver import FakeChatServer, completion

pytestmark = pytest.mark.django_db


def test_offline_answer_respects_the_budget_and_cites_retrieved_products(catalogue):
    Product.objects.filter(title="Blue ceramic coffee mug").update(price="9.00")
    from ragrec_django.services.encoding import sync_host_items

    sync_host_items([p.pk for p in catalogue.values()])
    result = assistant.answer("a ceramic coffee mug under 10")
    assert result.filters["max_price"] == "10"
    assert [p.item.title for p in result.products] == ["Blue ceramic coffee mug"]
    assert "Blue ceramic coffee mug" in result.answer and "[" not in result.answer
    assert result.generator_version == "offline-facts:1" and result.prompt_version == "assistant-v1"


def test_nothing_in_budget_is_said_plainly(catalogue):
    result = assistant.answer("a lamp under 1")
    assert result.products == []
    assert result.answer


@pytest.mark.parametrize("request_text", ["", "   ", "x" * 501])
def test_bad_requests_are_refused(catalogue, request_text):
    with pytest.raises(BadQuery):
        assistant.answer(request_text)


@pytest.fixture
def llm_server(settings):
    server = FakeChatServer()
    server.start()
    settings.RAGREC = {
        **settings.RAGREC,
        "GENERATORS": {
            "llm": {
                "BACKEND": "ragrec_django.ml.generators.OpenAICompatibleGenerator",
                "OPTIONS": {"base_url": "http://127.0.0.1:%d/v1" % server.port, "model": "m", "max_retries": 0},
            }
        },
        "DESCRIPTION_GENERATOR": "llm",
        "ASSISTANT_GENERATOR": "llm",
    }
    yield server
    server.stop()


def test_products_the_model_invents_or_was_not_given_are_dropped(catalogue, llm_server):
    mug = str(catalogue["Red ceramic coffee mug"].pk)
    lamp = catalogue["Brass desk lamp"]
    llm_server.reply(
        json_body=completion(
            "Try the Red ceramic coffee mug [%s]. The Brass desk lamp is lovely too. Or product 999999 [999999]." % mug
        )
    )
    result = assistant.answer("a red coffee mug", k=3)
    prompt = llm_server.received[-1].json["messages"][-1]["content"]
    assert mug in prompt and str(lamp.pk) not in prompt  # the lamp was not retrieved for this request
    assert [p.item.key for p in result.products] == [mug]
    assert result.answer == "Try the Red ceramic coffee mug."
    assert len(result.dropped) == 2


@pytest.mark.parametrize(
    "markup",
    [
        "&amp;amp;lt;img src=x onerror=alert(1)&amp;amp;gt;",
        "&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;",
        "＜script＞alert(1)＜/script＞",
        "<<b>img src=x onerror=alert(1)>",
        "&lt;iframe src=javascript:alert(1)&gt;&lt;/iframe&gt;",
    ],
)
def test_the_answer_is_plain_text_whatever_the_generator_writes(catalogue, llm_server, markup):
    """Issue 19: entities were decoded once per step, so a thrice-escaped tag came out live."""
    mug = str(catalogue["Red ceramic coffee mug"].pk)
    llm_server.reply(json_body=completion("Try the Red ceramic coffee mug %s, it is lovely [%s]." % (markup, mug)))
    result = assistant.answer("a red coffee mug", k=3)
    assert [p.item.key for p in result.products] == [mug]
    assert "<" not in result.answer.replace("&lt;", "") and "Red ceramic coffee mug" in result.answer


def test_a_long_request_searches_with_its_first_words(catalogue):
    """The request's own limit (500) holds; the search gets at most its limit (300) of the query words."""
    result = assistant.answer(("red ceramic coffee mug " * 25)[:500])
    assert result.products and len(result.filters["query"]) <= 300
