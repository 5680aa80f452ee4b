"""Adapters of the adoption tests."""

from ragrec_django.adapters import ItemAdapter


class BrokenUrlAdapter(ItemAdapter):
    """A shop adapter with a bug: reading an item's URL raises."""

    def get_url(self, item) -> str:
        raise RuntimeError("the shop's get_absolute_url is broken")
