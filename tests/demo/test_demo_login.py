"""The one-click "log in as a demo user" page: demo accounts only, and only while it is switched on."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

pytestmark = pytest.mark.django_db
URL = "/demo/login/"


@pytest.fixture
def people(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.SHOP_DEMO_ONE_CLICK_LOGIN = True
    call_command("seed_people", no_history=True, stdout=io.StringIO())


def test_page_lists_staff_and_shoppers_with_one_click_buttons(client, people):
    assert reverse("catalog:demo_login") == URL
    html = client.get(URL).content.decode()
    assert "Log in as alice" in html and "Log in as dina" in html
    assert "Log in as reviewer" in html and "Log in as manager" in html
    assert "<code>demo</code>" in html and "Likes mugs, plants, lamps" in html  # category slugs until seeded
    assert html.count('name="username"') == 32


def test_one_click_logs_a_shopper_in_and_goes_back(client, people):
    response = client.post(URL, {"username": "alice", "next": "/search/?q=mug"})
    assert response.status_code == 302 and response["Location"] == "/search/?q=mug"
    assert int(client.session["_auth_user_id"]) == get_user_model().objects.get(username="alice").pk
    home = client.get("/").content.decode()
    assert "Hello, Alice" in home and "Log out" in home and "demo-bar" not in home
    evil = client.post(URL, {"username": "bob", "next": "https://evil.example/"})
    assert evil["Location"] == "/"


def test_staff_land_in_the_admin(client, people):
    response = client.post(URL, {"username": "manager"})
    assert response["Location"] == reverse("admin:index")
    assert client.get(reverse("admin:index")).status_code == 200
    assert 'href="%s"' % reverse("admin:index") in client.get("/").content.decode()  # "Admin" in the header


def test_only_demo_accounts_can_be_used(client, people):
    User = get_user_model()
    User.objects.create_superuser("root", "root@example.com", "x")
    User.objects.filter(username="bob").update(email="bob@example.com")  # no longer a demo account
    for username in ("root", "bob", "nobody", ""):
        assert client.post(URL, {"username": username}).status_code == 404
    assert "_auth_user_id" not in client.session
    assert "Log in as bob" not in client.get(URL).content.decode()


def test_page_is_off_unless_switched_on(client, people, settings):
    settings.SHOP_DEMO_ONE_CLICK_LOGIN = False
    assert client.get(URL).status_code == 404
    assert client.post(URL, {"username": "alice"}).status_code == 404
    home = client.get("/").content.decode()
    assert "demo-bar" not in home and 'href="%s?next=/"' % reverse("admin:login") in home.replace("%2F", "/")


def test_header_links_to_the_demo_login_while_on(client, people):
    home = client.get("/").content.decode()
    assert 'class="demo-bar"' in home and 'href="/demo/login/?next=/"' in home.replace("%2F", "/")
