"""signals.description_published and description_rolled_back: sent after commit with the documented arguments."""

import pytest

from ragrec_django import signals
from ragrec_django.models import DescriptionDraft, PublishedDescription
from ragrec_django.services import descriptions

pytestmark = pytest.mark.django_db


@pytest.fixture
def received():
    calls = []

    def receiver(sender, signal, **kwargs):
        calls.append({"signal": signal, "sender": sender, **kwargs})

    for signal in (signals.description_published, signals.description_rolled_back):
        signal.connect(receiver)
    yield calls
    for signal in (signals.description_published, signals.description_rolled_back):
        signal.disconnect(receiver)


def test_publishing_and_rolling_back_are_announced(
    product, reviewer, publisher, received, django_capture_on_commit_callbacks
):
    draft = descriptions.generate_draft(str(product.pk))
    descriptions.approve(draft, reviewer, text="An approved text.")
    with django_capture_on_commit_callbacks(execute=True):
        publication = descriptions.publish(draft, publisher)
        assert received == []  # nothing before the transaction commits
    assert received == [
        {
            "signal": signals.description_published,
            "sender": DescriptionDraft,
            "draft": draft,
            "publication": publication,
            "user": publisher,
        }
    ]
    assert received[0]["draft"].status == "published" and publication.is_current

    original = PublishedDescription.objects.get(item__key=str(product.pk), text="A copper fitting.")
    with django_capture_on_commit_callbacks(execute=True):
        restored = descriptions.rollback(original, publisher)
    assert received[1:] == [
        {
            "signal": signals.description_rolled_back,
            "sender": PublishedDescription,
            "publication": restored,
            "restored_from": original,
            "user": publisher,
        }
    ]
    assert restored.is_current and restored.text == "A copper fitting."
