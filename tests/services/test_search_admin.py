"""The merchandiser's side of search in the admin: synonyms that apply at once, the search log, and the
search analytics page with its one-click "add synonym"."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from ragrec_django.models import SearchLog, SearchSynonym
from ragrec_django.services import recommend
from ragrec_django.services import search as search_service
from ragrec_django.services.recommend import Visitor
from shop_demo.catalog.models import Category, Product

pytestmark = pytest.mark.django_db
ANALYTICS = "admin:ragrec_django_search_analytics"


@pytest.fixture(autouse=True)
def _fresh_search_caches():
    search_service.forget_caches()


@pytest.fixture
def shop(db, settings):
    """Two products in the item mirror, searched by keyword only (no encoders needed)."""
    settings.RAGREC = {**settings.RAGREC, "SEARCH_WEIGHTS": {"keyword": 1.0, "text": 0.0, "image": 0.0}}
    category = Category.objects.create(name="Knitwear", slug="knitwear")
    for slug, title in (("sweater", "Grey wool sweater"), ("scarf", "Red wool scarf")):
        Product.objects.create(title=title, slug=slug, category=category, price="30.00", stock=2)
    from ragrec_django.services.encoding import sync_host_items

    sync_host_items(list(Product.objects.values_list("pk", flat=True)))


def test_a_synonym_added_in_the_admin_applies_to_the_next_search(admin_client, shop):
    assert recommend.search("jumper", k=3).items == []
    form = admin_client.get(reverse("admin:ragrec_django_searchsynonym_add"), {"term": "jumper"})
    assert 'value="jumper"' in form.content.decode()  # the analytics page's "add synonym" link fills it in
    response = admin_client.post(
        reverse("admin:ragrec_django_searchsynonym_add"),
        {"term": "jumper", "synonyms": "sweater, pullover", "two_way": "on", "is_active": "on"},
    )
    assert response.status_code == 302
    assert [r.item.title for r in recommend.search("jumper", k=3)] == ["Grey wool sweater"]
    rule = SearchSynonym.objects.get()
    assert str(rule) == "jumper ↔ sweater, pullover" and rule.synonym_list == ["sweater", "pullover"]
    admin_client.post(reverse("admin:ragrec_django_searchsynonym_delete", args=[rule.pk]), {"post": "yes"})
    assert recommend.search("jumper", k=3).items == []


def test_search_analytics_page(admin_client, shop):
    for session in ("a", "b"):
        recommend.search("wool", k=3, visitor=Visitor(session_key=session))
    recommend.search("cashmere", k=3, visitor=Visitor(session_key="a"))
    response = admin_client.get(reverse(ANALYTICS))
    assert response.status_code == 200
    html = response.content.decode()
    assert "3 searches" in html
    top = response.context["top"]
    assert [(row["query"], row["searches"]) for row in top] == [("wool", 2), ("cashmere", 1)]
    assert [row["query"] for row in response.context["zero"]] == ["cashmere"]
    assert reverse("admin:ragrec_django_searchsynonym_add") + "?term=cashmere" in html
    assert response.context["trend_plot"]
    assert admin_client.get(reverse(ANALYTICS), {"start": "2026-02-01", "end": "2026-01-01"}).status_code == 400
    assert admin_client.get(reverse("admin:ragrec_django_searchlog_changelist")).status_code == 200
    assert SearchLog.objects.count() == 3


def test_search_analytics_needs_the_search_log_permission(client, shop):
    user = get_user_model().objects.create_user("clerk", password="x", is_staff=True)
    client.force_login(user)
    assert client.get(reverse(ANALYTICS)).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_searchlog"))
    assert client.get(reverse(ANALYTICS)).status_code == 200
