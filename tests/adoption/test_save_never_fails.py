"""A shop's own save never fails or waits on ragrec (issue 21, items 5 and 6).

After commit the saved item is mirrored and its encoding queued in one short try; an adapter error,
no celery package, no broker configured or a broker that is down is logged, the item is recorded,
and ``ragrec_reindex --stale`` encodes it later.
"""

import logging
import sys

import pytest
from django.core import checks
from django.core.management import call_command

from ragrec_django.checks import check_encode_on_save
from ragrec_django.models import Embedding, Item
from ragrec_django.services import pending
from shop_demo.catalog.models import Category, Product
from shop_demo.celery import app as celery_app

#: A broker address on this machine that refuses connections at once.
DEAD_BROKER = "redis://127.0.0.1:1/0"


@pytest.fixture
def auto_encode(settings, ragrec_encoders):
    settings.RAGREC = {**settings.RAGREC, "AUTO_ENCODE": True, "SPACES": {"text": ragrec_encoders["SPACES"]["text"]}}


@pytest.fixture
def broker(monkeypatch):
    """broker(url): point the demo's Celery app at ``url`` for this test."""

    def point_at(url):
        if url:
            monkeypatch.setenv("CELERY_BROKER_URL", url)  # read before the app's setting (tests/conftest.py sets it)
        else:
            monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
        monkeypatch.setattr(celery_app.conf, "broker_url", url)
        monkeypatch.setattr(celery_app.conf, "broker_write_url", url)

    return point_at


@pytest.fixture
def save_product(db, django_capture_on_commit_callbacks):
    category = Category.objects.create(name="Mugs", slug="mugs")

    def save(title="Yellow mug"):
        with django_capture_on_commit_callbacks(execute=True):
            product = Product.objects.create(
                title=title,
                slug=title.lower().replace(" ", "-"),
                description="A mug.",
                category=category,
                price="9.50",
                stock=3,
            )
        return product

    return save


def test_broker_down_the_save_succeeds_and_the_item_waits_for_reindex(auto_encode, broker, save_product, caplog):
    broker(DEAD_BROKER)
    with caplog.at_level(logging.WARNING, logger="ragrec_django.receivers"):
        product = save_product()
    assert Product.objects.filter(pk=product.pk).exists()
    assert Item.objects.get(key=str(product.pk)).title == "Yellow mug"  # mirrored all the same
    assert pending.pending_pks("text") == [str(product.pk)]
    assert "ragrec_reindex --stale" in caplog.text

    call_command("ragrec_reindex", "--sync", "--stale", "--space", "text")
    assert Embedding.objects.filter(item__key=str(product.pk), generation__space="text").exists()
    assert pending.pending_pks("text") == []


def test_an_adapter_error_is_logged_and_recorded_not_raised(auto_encode, settings, save_product, caplog):
    settings.RAGREC = {**settings.RAGREC, "ADAPTER": "tests.adoption.adapters.BrokenUrlAdapter"}
    with caplog.at_level(logging.ERROR, logger="ragrec_django.receivers"):
        product = save_product()
    assert Product.objects.filter(pk=product.pk).exists()
    assert pending.pending_pks("text") == [str(product.pk)]
    assert "get_absolute_url is broken" in caplog.text


def test_without_the_celery_package_saves_are_recorded_and_check_warns(auto_encode, monkeypatch, save_product, caplog):
    monkeypatch.setitem(sys.modules, "celery", None)  # `import celery` raises ImportError
    with caplog.at_level(logging.WARNING, logger="ragrec_django.receivers"):
        product = save_product()
    assert pending.pending_pks("text") == [str(product.pk)]
    assert "celery package is not installed" in caplog.text
    assert [m.id for m in check_encode_on_save()] == ["ragrec.W004"]


def test_without_a_broker_nothing_goes_to_celerys_default_address(auto_encode, broker, save_product):
    broker(None)
    product = save_product()
    assert pending.pending_pks("text") == [str(product.pk)]
    [warning] = check_encode_on_save()
    assert warning.id == "ragrec.W005" and warning.level == checks.WARNING and "CELERY_BROKER_URL" in warning.hint


def test_no_warning_with_a_broker_or_with_auto_encode_off(settings, auto_encode):
    assert check_encode_on_save() == []
    settings.RAGREC = {**settings.RAGREC, "AUTO_ENCODE": False}
    assert check_encode_on_save() == []


def test_a_queued_save_clears_an_earlier_record(auto_encode, broker, save_product, django_capture_on_commit_callbacks):
    broker(DEAD_BROKER)
    product = save_product()
    assert pending.pending_pks("text") == [str(product.pk)]
    broker("memory://")  # an in-process broker that takes the task
    with django_capture_on_commit_callbacks(execute=True):
        product.title = "Yellow mug, large"
        product.save()
    assert pending.pending_pks("text") == []
