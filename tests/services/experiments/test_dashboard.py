"""The admin's experiments dashboard: staff with the permission only, a date range, escaped output, plots."""

import base64
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from ragrec_django.models import Impression, Interaction, Item

pytestmark = pytest.mark.django_db

URL = "admin:ragrec_django_experiments"
XSS = '<script>alert("x")</script>'


@pytest.fixture
def traffic(shop, experiment_settings):
    items = list(Item.objects.all()[:2])
    now = timezone.now()
    for days_ago, variant, clicked in [
        (0, "control", True),
        (0, "lamps", False),
        (3, "lamps", True),
        (3, XSS, True),
        (40, "control", True),
    ]:
        impression = Impression.objects.create(
            recommender="trending",
            config="default",
            experiment="ranking-test",
            variant=variant,
            session_key="s%d" % days_ago,
            item_keys=[i.key for i in items],
            created_at=now - timedelta(days=days_ago),
        )
        if clicked:
            Interaction.objects.create(
                event="click",
                item=items[0],
                impression=impression,
                session_key="s%d" % days_ago,
                created_at=impression.created_at,
            )


def staff(name, *permissions):
    user = get_user_model().objects.create_user(name, password="pw", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="ragrec_django"))
    return user


def test_staff_with_the_permission_sees_the_table_and_plots(client, traffic):
    client.force_login(staff("analyst", "view_impression"))
    response = client.get(reverse(URL))
    assert response.status_code == 200
    html = response.content.decode()
    rows = html.split("<tbody>")[1].split("</tbody>")[0]
    assert rows.count("<tr") == 3  # control, lamps, the XSS variant: the 40-day-old list is outside the default range
    assert "control (baseline)" in rows and "ranking-test" in rows
    assert "50.00%" in rows  # lamps: 1 of 2 lists clicked
    assert "100.00%" in rows  # control: today's list was clicked
    images = [part.split('"', 1)[0] for part in html.split('src="data:image/png;base64,')[1:]]
    assert len(images) == 2  # all traffic, and the experiment
    assert all(base64.b64decode(png).startswith(b"\x89PNG") for png in images)
    assert 'Experiment "ranking-test"' in html and "lamps-only" in html  # the configured experiment's table


def test_date_range_is_chosen_and_validated(client, traffic):
    client.force_login(staff("analyst", "view_impression"))
    today = timezone.localdate()
    old = today - timedelta(days=40)
    html = client.get(reverse(URL), {"start": old.isoformat(), "end": old.isoformat()}).content.decode()
    rows = html.split("<tbody>")[1].split("</tbody>")[0]
    assert rows.count("<tr") == 1 and "100.00%" in rows
    empty = client.get(reverse(URL), {"start": "2001-01-01", "end": "2001-01-02"}).content.decode()
    assert "No recommendation lists were shown in this period." in empty and "data:image/png" not in empty
    for params, message in [
        ({"start": today.isoformat(), "end": old.isoformat()}, "The end day is before the start day."),
        ({"start": "2000-01-01", "end": "2010-01-01"}, "Choose at most 366 days."),
        ({"start": "yesterday", "end": "2010-01-01"}, "Enter a valid date."),
        ({"start": "2010-01-01"}, "This field is required."),
    ]:
        response = client.get(reverse(URL), params)
        assert response.status_code == 400 and message in response.content.decode()


def test_output_is_escaped(client, traffic):
    client.force_login(staff("analyst", "view_impression"))
    html = client.get(reverse(URL)).content.decode()
    assert XSS not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_refused_without_staff_or_permission(client, traffic):
    response = client.get(reverse(URL))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(get_user_model().objects.create_user("shopper", password="pw"))
    assert client.get(reverse(URL)).status_code == 302  # not staff: the admin login page
    client.force_login(staff("clerk"))
    assert client.get(reverse(URL)).status_code == 403  # staff, but may not view impressions


def test_invalid_settings_are_shown_not_a_500(client, traffic, settings):
    settings.RAGREC = {**settings.RAGREC, "EXPERIMENTS": {"broken": {"VARIANTS": {}}}}
    client.force_login(staff("analyst", "view_impression"))
    response = client.get(reverse(URL))
    assert response.status_code == 200 and "is invalid, so no experiment is running" in response.content.decode()


def test_impressions_admin_list_is_read_only(admin_client, traffic):
    assert admin_client.get(reverse("admin:ragrec_django_impression_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:ragrec_django_impression_add")).status_code == 403
    html = admin_client.get(reverse("admin:ragrec_django_interaction_changelist")).content.decode()
    assert XSS not in html
