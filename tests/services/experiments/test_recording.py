"""Impressions recorded by the template tags and the API, the variant's config really served, clicks through
the redirect view and the events endpoint, and every refusal a clear 4xx."""

import logging
import uuid
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.template import Context, Template
from django.urls import reverse

from ragrec_django.models import Impression, Interaction, Item

from .conftest import session_in

pytestmark = pytest.mark.django_db

TRENDING_TAGS = "{% load ragrec %}{% ragrec_trending k=6 as recs %}{% ragrec_render recs %}"


def render(source, **context):
    return Template(source).render(Context(context))


def request_for(*, user=None, session_key=None):
    return SimpleNamespace(user=user or AnonymousUser(), session=SimpleNamespace(session_key=session_key))


def categories(keys):
    return {Item.objects.get(key=key).category for key in keys}


def click_urls(html):
    return [part.split('"', 1)[0] for part in html.split('class="ragrec-link" href="')[1:]]


# ---------------------------------------------------------------- template tags


def test_render_records_one_impression_with_the_items_in_order(shop):
    html = render(TRENDING_TAGS, request=request_for(session_key="shopper"))
    impression = Impression.objects.get()
    shown = [part.split('"', 1)[0] for part in html.split('data-ragrec-item="')[1:]]
    assert impression.item_keys == shown and len(shown) == 6
    assert (impression.recommender, impression.config, impression.experiment, impression.variant) == (
        "trending",
        "default",
        "",
        "",
    )
    assert (impression.session_key, impression.user_id, impression.channel) == ("shopper", None, "template")
    assert 'data-ragrec-impression="%s"' % impression.pk in html
    assert click_urls(html) == [reverse("ragrec_api:click", args=[impression.pk, key]) for key in shown]
    assert 'rel="nofollow"' in html


def test_empty_lists_record_nothing(db):
    assert render(TRENDING_TAGS).strip() == ""
    assert not Impression.objects.exists()


def test_tags_serve_the_visitors_variant(shop, experiment_settings):
    lamps, control = session_in("lamps"), session_in("control")
    render(TRENDING_TAGS, request=request_for(session_key=lamps))
    render(TRENDING_TAGS, request=request_for(session_key=control))
    by_variant = {i.variant: i for i in Impression.objects.all()}
    assert by_variant["lamps"].config == "lamps-only" and by_variant["lamps"].experiment == "ranking-test"
    assert categories(by_variant["lamps"].item_keys) == {"Lamps"}  # the variant's rules really ranked the list
    assert by_variant["control"].config == "default" and categories(by_variant["control"].item_keys) == {
        "Lamps",
        "Mugs",
    }
    # Naming a config opts out of the experiment.
    render(
        '{% load ragrec %}{% ragrec_trending config="default" as recs %}{% ragrec_render recs %}',
        request=request_for(session_key=lamps),
    )
    latest = Impression.objects.order_by("-created_at").first()
    assert (latest.config, latest.experiment, latest.variant) == ("default", "", "")
    assert categories(latest.item_keys) == {"Lamps", "Mugs"}


def test_custom_markup_records_once_with_click_url(shop):
    source = (
        "{% load ragrec %}{% ragrec_trending k=2 as recs %}{% ragrec_impression recs as shown %}[{{ shown }}]"
        '{% for r in recs %}<a href="{% ragrec_click_url recs r %}">{{ r.item.title }}</a>{% endfor %}'
    )
    html = render(source, request=request_for(session_key="s"))
    impression = Impression.objects.get()
    assert "[%s]" % impression.pk in html
    for key in impression.item_keys:
        assert '<a href="%s">' % reverse("ragrec_api:click", args=[impression.pk, key]) in html


def test_lists_made_by_a_view_are_recorded_when_rendered(shop):
    from ragrec_django.services import recommend

    cached = recommend.trending(k=3)  # e.g. a list a view caches and shows to everyone
    twice = "{% load ragrec %}{% ragrec_render results %}{% ragrec_render results title='Again' %}"
    html = render(twice, results=cached, request=request_for(session_key="s"))
    impression = Impression.objects.get()  # twice on one page: one impression, the same links
    assert impression.session_key == "s" and impression.recommender == "trending" and len(click_urls(html)) == 6
    assert set(click_urls(html)) == {reverse("ragrec_api:click", args=[impression.pk, k]) for k in impression.item_keys}
    render(twice, results=cached, request=request_for(session_key="t"))  # another page, another visitor
    assert sorted(Impression.objects.values_list("session_key", flat=True)) == ["s", "t"]


@pytest.mark.django_db(transaction=True)
def test_impressions_commit_asynchronously_only_in_their_own_transaction():
    from django.db import transaction
    from django.test.utils import CaptureQueriesContext

    from ragrec_django.services import experiments
    from ragrec_django.services.recommend import Visitor

    visitor = Visitor(session_key="s-async")
    with CaptureQueriesContext(connection) as own:
        assert experiments.record_impression("trending", "default", ["a", "b"], visitor) is not None
    with CaptureQueriesContext(connection) as nested, transaction.atomic():
        assert experiments.record_impression("trending", "default", ["c"], visitor) is not None
    assert any("synchronous_commit = off" in q["sql"] for q in own.captured_queries)
    assert not any("synchronous_commit" in q["sql"] for q in nested.captured_queries)
    assert Impression.objects.filter(session_key="s-async").count() == 2


def test_a_database_error_while_recording_never_breaks_the_page(shop, caplog):
    with connection.cursor() as cursor:  # a real failure of the INSERT, from PostgreSQL itself
        cursor.execute(
            "CREATE FUNCTION ragrec_test_refuse() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'impressions are switched off'; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            "CREATE TRIGGER ragrec_test_refuse BEFORE INSERT ON ragrec_django_impression "
            "FOR EACH ROW EXECUTE FUNCTION ragrec_test_refuse()"
        )
    with caplog.at_level(logging.ERROR):
        html = render(
            TRENDING_TAGS + "{% ragrec_trending k=1 as again %}{{ again|length }}", request=request_for(session_key="s")
        )
    assert html.count('class="ragrec-card"') == 6 and html.endswith("1")  # rendered; the next query still works
    assert "could not record an impression of trending" in caplog.text and "impressions are switched off" in caplog.text
    assert click_urls(html)[0].startswith("/product/")  # plain links when there is no impression to click through
    assert "data-ragrec-impression" not in html


# ---------------------------------------------------------------- click redirect


def test_click_redirect_records_the_click_and_goes_to_the_item(client, shop):
    session = client.session
    session.save()
    html = render(TRENDING_TAGS, request=request_for(session_key=session.session_key))
    impression = Impression.objects.get()
    url = click_urls(html)[1]
    response = client.get(url)
    item = Item.objects.get(key=impression.item_keys[1])
    assert response.status_code == 302 and response["Location"] == item.url == shop[item.title].get_absolute_url()
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    click = Interaction.objects.get(event="click")
    assert (click.impression_id, click.item_id, click.source) == (impression.pk, item.id, "trending")
    assert click.session_key == session.session_key
    assert (
        client.head(url).status_code == 302 and Interaction.objects.filter(event="click").count() == 1
    )  # HEAD: no click


def test_click_of_a_visitor_without_session_is_the_impressions_visitor(client, shop):
    html = render(TRENDING_TAGS, request=request_for(session_key="shown-to"))
    client.get(click_urls(html)[0])
    assert Interaction.objects.get(event="click").session_key == "shown-to"


def test_click_redirect_refuses_unknown_impressions_items_and_foreign_urls(client, shop):
    html = render(TRENDING_TAGS, request=request_for(session_key="s"))
    impression = Impression.objects.get()
    shown, other = impression.item_keys[0], str(shop["Red mug"].pk)
    response = client.get(reverse("ragrec_api:click", args=[uuid.uuid4(), shown]))
    assert response.status_code == 404 and b"Unknown impression" in response.content
    assert client.get("/api/recommend/click/not-a-uuid/%s/" % shown).status_code == 404
    impression.item_keys = [k for k in impression.item_keys if k != other]
    impression.save()
    response = client.get(reverse("ragrec_api:click", args=[impression.pk, other]))
    assert response.status_code == 404 and b"was not shown in impression" in response.content
    for foreign in ("https://evil.example/phish", "//evil.example/phish", "javascript:alert(1)", ""):
        Item.objects.filter(key=shown).update(url=foreign)
        response = client.get(click_urls(html)[0])
        assert response.status_code == 400 and b"no page on this site" in response.content
        assert "Location" not in response
    assert not Interaction.objects.filter(event="click").exists()
    assert client.post(click_urls(html)[1]).status_code == 405


# ---------------------------------------------------------------- API


def test_api_responses_carry_their_impression(api, shop):
    body = api.get(reverse("ragrec_api:trending"), {"k": 4, "session": "app-user"}).json()
    impression = Impression.objects.get()
    assert body["impression_id"] == str(impression.pk) and (body["experiment"], body["variant"]) == ("", "")
    assert impression.item_keys == [r["id"] for r in body["results"]]
    assert (impression.channel, impression.session_key, impression.recommender) == ("api", "app-user", "trending")
    empty = api.get(reverse("ragrec_api:recently-viewed"), {"session": "nobody"}).json()
    assert empty["results"] == [] and empty["impression_id"] is None and Impression.objects.count() == 1


def test_api_serves_the_variant_config_and_a_named_config_opts_out(api, shop, experiment_settings):
    lamps, control = session_in("lamps"), session_in("control")
    body = api.get(reverse("ragrec_api:trending"), {"session": lamps}).json()
    assert (body["config"], body["experiment"], body["variant"]) == ("lamps-only", "ranking-test", "lamps")
    assert {r["category"] for r in body["results"]} == {"Lamps"}
    body = api.get(reverse("ragrec_api:trending"), {"session": control}).json()
    assert (body["config"], body["variant"]) == ("default", "control") and {r["category"] for r in body["results"]} == {
        "Lamps",
        "Mugs",
    }
    body = api.get(reverse("ragrec_api:trending"), {"session": lamps, "config": "default"}).json()
    assert (body["config"], body["experiment"], body["variant"]) == ("default", "", "")
    assert Impression.objects.get(pk=body["impression_id"]).experiment == ""
    user = get_user_model().objects.create_user("ann")
    api.force_authenticate(user)
    body = api.get(reverse("ragrec_api:trending")).json()
    impression = Impression.objects.get(pk=body["impression_id"])
    assert impression.user_id == user.pk and impression.variant == body["variant"] != ""


def test_api_session_parameter_is_validated(api, shop):
    response = api.get(reverse("ragrec_api:trending"), {"session": "x" * 65})
    assert response.status_code == 400 and "session" in response.json()


def test_clicks_posted_with_an_impression_id(api, shop):
    body = api.get(reverse("ragrec_api:trending"), {"k": 3, "session": "app"}).json()
    shown = body["results"][1]["id"]
    url = reverse("ragrec_api:events") + "?session=app"
    response = api.post(url, {"event": "click", "item": shown, "impression_id": body["impression_id"]}, format="json")
    assert response.status_code == 201, response.content
    click = Interaction.objects.get(event="click")
    assert (str(click.impression_id), click.item.key, click.source, click.session_key) == (
        body["impression_id"],
        shown,
        "trending",
        "app",
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"impression_id": str(uuid.UUID(int=1))}, "unknown impression 00000000-0000-0000-0000-000000000001"),
        ({"impression_id": "nonsense"}, "impression_id: Must be a valid UUID."),
        ({"item": "NOT_SHOWN"}, "was not shown in impression"),
        ({"event": "view"}, "impression_id is only for click events"),
    ],
)
def test_bad_clicks_are_400_and_nothing_is_stored(api, shop, change, message):
    body = api.get(reverse("ragrec_api:trending"), {"k": 3, "session": "app"}).json()
    event = {
        "event": "click",
        "item": body["results"][0]["id"],
        "impression_id": body["impression_id"],
        "session_key": "app",
    }
    if change.get("item") == "NOT_SHOWN":
        change = {"item": str(next(p.pk for p in shop.values() if str(p.pk) not in [r["id"] for r in body["results"]]))}
    response = api.post(reverse("ragrec_api:events"), {**event, **change}, format="json")
    assert response.status_code == 400
    assert message in " ".join(response.json()["errors"]["0"])
    assert not Interaction.objects.filter(event__in=["click", "view"], session_key="app").exists()
