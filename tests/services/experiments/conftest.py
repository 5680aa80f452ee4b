"""Fixtures of the measurement tests: a small shop (no encoding needed: trending and history recommenders),
experiments settings, and visitors known to land in a given variant."""

from __future__ import annotations

import itertools

import pytest
from django.core.cache import caches
from rest_framework.test import APIClient

from ragrec_django.conf import ragrec_settings
from ragrec_django.services import experiments
from ragrec_django.services.encoding import sync_host_items
from ragrec_django.services.events import EventInput, record_events
from shop_demo.catalog.models import Category, Product

SHOP = {
    "Mugs": ["Red mug", "Blue mug", "Green mug"],
    "Lamps": ["Brass lamp", "Floor lamp", "Reading lamp"],
}
EXPERIMENT = {
    "ranking-test": {
        "RECOMMENDERS": ["trending", "recently_viewed"],
        "VARIANTS": {
            "control": {"CONFIG": "default", "WEIGHT": 50},
            "lamps": {"CONFIG": "lamps-only", "WEIGHT": 50},
        },
    }
}


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    caches[ragrec_settings.API_THROTTLE_CACHE].clear()
    yield
    caches[ragrec_settings.API_THROTTLE_CACHE].clear()


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def shop(db):
    """Products by title, mirrored, each viewed once (so all are trending), mugs a little more."""
    products = {}
    for category_name, titles in SHOP.items():
        category = Category.objects.create(name=category_name, slug=category_name.lower())
        for title in titles:
            products[title] = Product.objects.create(
                title=title, slug=title.lower().replace(" ", "-"), category=category, price="10.00", stock=5
            )
    sync_host_items([p.pk for p in products.values()])
    views = [EventInput(event="view", item=str(p.pk), session_key="crowd") for p in products.values()]
    views += [EventInput(event="view", item=str(products[t].pk), session_key="crowd-2") for t in SHOP["Mugs"]]
    record_events(views)
    return products


@pytest.fixture
def experiment_settings(settings):
    settings.RAGREC = {
        **settings.RAGREC,
        "SERVING_CONFIGS": {"default": {}, "lamps-only": {"categories": ["Lamps"]}},
        "EXPERIMENTS": EXPERIMENT,
    }
    return settings.RAGREC


def session_in(variant: str, experiment: str = "ranking-test", skip: int = 0) -> str:
    """A session key whose visitor is in ``variant`` (found by trying keys; assignment is deterministic)."""
    spec = experiments.configured_experiments()
    chosen = next(e for e in spec if e.name == experiment)
    found = (
        key
        for key in ("visitor-%d" % n for n in itertools.count())
        if chosen.variant_for(experiments.visitor_key(experiments.Visitor(session_key=key))).name == variant
    )
    return next(itertools.islice(found, skip, None))
