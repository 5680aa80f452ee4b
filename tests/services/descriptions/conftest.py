"""Products, users with review/publish permissions, and an OpenAI-compatible server for description tests."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from shop_demo.catalog.models import Category, Product
from tests.generators.fakeserver import FakeChatServer, completion


@pytest.fixture
def product(db):
    category = Category.objects.create(name="Hardware", slug="hardware")
    return Product.objects.create(
        title="Copper pipe fitting",
        slug="copper-pipe-fitting",
        category=category,
        price="4.20",
        stock=9,
        colour="orange",
        material="copper",
        size="9/16 in",
        description="A copper fitting.",
    )


def user_with(*codenames, username):
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="ragrec_django", codename__in=codenames)
    )
    return get_user_model().objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def reviewer(db):
    return user_with("review_descriptiondraft", "view_descriptiondraft", "change_descriptiondraft", username="reviewer")


@pytest.fixture
def publisher(db):
    return user_with(
        "publish_descriptiondraft",
        "view_descriptiondraft",
        "change_descriptiondraft",
        "view_publisheddescription",
        username="publisher",
    )


@pytest.fixture
def chat_server():
    server = FakeChatServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def llm(settings, chat_server):
    """RAGREC's description generator pointed at the local chat-completions server; returns a reply function."""
    settings.RAGREC = {
        **settings.RAGREC,
        "GENERATORS": {
            "default": {"BACKEND": "ragrec_django.ml.generators.FactsGenerator"},
            "llm": {
                "BACKEND": "ragrec_django.ml.generators.OpenAICompatibleGenerator",
                "OPTIONS": {
                    "base_url": "http://127.0.0.1:%d/v1" % chat_server.port,
                    "model": "tiny-llm",
                    "max_retries": 0,
                },
            },
        },
        "DESCRIPTION_GENERATOR": "llm",
    }

    def reply(text):
        chat_server.reply(json_body=completion(text))

    reply.server = chat_server
    return reply
