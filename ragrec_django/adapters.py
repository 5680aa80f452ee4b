"""Host glue: how ragrec reads the shop's item model, without modifying it.

The default ``ItemAdapter`` works for a model with obvious field names
(``title``/``name``, ``description``, ``category``, ``price``, ``stock`` or
``in_stock``, ``image``, ``get_absolute_url``). A shop with other names
subclasses it and sets ``RAGREC["ADAPTER"]`` to the subclass::

    class ShopAdapter(ItemAdapter):
        def get_text(self, item):
            return f"{item.brand} {item.label}. {item.body}"
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import models

from .conf import ragrec_settings

TITLE_FIELDS = ("title", "name")
TEXT_FIELDS = ("description", "summary", "body")
CATEGORY_FIELDS = ("category",)
PRICE_FIELDS = ("price",)
STOCK_FIELDS = ("stock", "quantity", "in_stock", "is_in_stock", "available")
IMAGE_FIELDS = ("image", "photo", "picture")
ACTIVE_FIELDS = ("is_active", "active", "published", "is_published")
GROUP_FIELDS = ("parent", "parent_id", "group", "group_key")
ATTRIBUTE_FIELDS = ("colour", "color", "material", "size", "brand")
LANGUAGE_FIELDS = ("language", "lang", "locale")


def safe_link(url: str) -> str:
    """``url`` if it is a path on this site or an http(s) URL; "" otherwise (``javascript:``, ``data:``, ``//host``)."""
    url = (url or "").strip()
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("", "http", "https") or url.startswith(("//", "\\")):
        return ""
    return url


@dataclass
class ItemSnapshot:
    """What ranking needs to know about one item, in plain values."""

    key: str
    title: str
    category: str
    price: Decimal | None
    in_stock: bool
    is_eligible: bool
    url: str
    group_key: str
    text: str = ""
    is_promoted: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


class ItemAdapter:
    """Maps a host item to text, image, category, price, stock, URL and eligibility."""

    def get_item_model(self) -> type[models.Model]:
        label = ragrec_settings.ITEM_MODEL
        if not label:
            raise ImproperlyConfigured('Set RAGREC["ITEM_MODEL"] to your product model, e.g. "catalog.Product".')
        try:
            return apps.get_model(label)
        except (LookupError, ValueError) as exc:
            raise ImproperlyConfigured(
                'RAGREC["ITEM_MODEL"] = %r is not an installed model: %s' % (label, exc)
            ) from exc

    def get_queryset(self):
        """Items considered for encoding and recommendation."""
        return self.get_item_model()._default_manager.all()

    def get_key(self, item) -> str:
        return str(item.pk)

    def get_title(self, item) -> str:
        return _text(_first_attr(item, TITLE_FIELDS)) or str(item)

    def get_text(self, item) -> str:
        """Text embedded into text spaces: title, category, attributes and description."""
        parts = [self.get_title(item)]
        category = self.get_category(item)
        if category:
            parts.append("Category: %s." % category)
        attributes = self.get_attributes(item)
        if attributes:
            parts.append(" ".join("%s: %s." % (name.capitalize(), value) for name, value in attributes.items()))
        description = self.get_description(item)
        if description:
            parts.append(description)
        return " ".join(p for p in parts if p).strip()

    def get_description(self, item) -> str:
        return _text(_first_attr(item, TEXT_FIELDS))

    def set_description(self, item, text: str) -> None:
        """Publish an approved description to the item (RAGREC["PUBLISH_TO_ITEM"])."""
        for name in TEXT_FIELDS:
            if hasattr(item, name):
                setattr(item, name, text)
                item.save(update_fields=[name])
                return
        raise ImproperlyConfigured(
            "%s has no description field; override ItemAdapter.set_description or set PUBLISH_TO_ITEM False."
            % type(item).__name__
        )

    def get_attributes(self, item) -> dict[str, str]:
        values = {name: _text(getattr(item, name, None)) for name in ATTRIBUTE_FIELDS}
        return {name: value for name, value in values.items() if value}

    def get_image_bytes(self, item) -> bytes | None:
        """Raw bytes of the item's main image, or None when it has none."""
        image = _first_attr(item, IMAGE_FIELDS)
        if not image:
            return None
        if hasattr(image, "open"):
            with image.open("rb") as handle:
                return handle.read()
        raise ImproperlyConfigured(
            "%s.%s is not a file field; override ItemAdapter.get_image_bytes." % (type(item).__name__, "image")
        )

    def get_category(self, item) -> str:
        return _text(_first_attr(item, CATEGORY_FIELDS))

    def get_price(self, item) -> Decimal | None:
        value = _first_attr(item, PRICE_FIELDS)
        if value is None or value == "":
            return None
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return None

    def is_in_stock(self, item) -> bool:
        for name in STOCK_FIELDS:
            if hasattr(item, name):
                value = getattr(item, name)
                if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
                    return value > 0
                return bool(value)
        return True

    def is_eligible(self, item) -> bool:
        """Whether the item may be recommended at all (published, not hidden)."""
        for name in ACTIVE_FIELDS:
            if hasattr(item, name):
                return bool(getattr(item, name))
        return True

    def get_url(self, item) -> str:
        get_absolute_url = getattr(item, "get_absolute_url", None)
        return get_absolute_url() if callable(get_absolute_url) else ""

    def get_group_key(self, item) -> str:
        """Variant group: items of one group are shown once, not as near-duplicates."""
        for name in GROUP_FIELDS:
            if hasattr(item, name):
                value = getattr(item, name)
                if isinstance(value, models.Model):
                    value = value.pk
                return "" if value is None else str(value)
        return ""

    def is_promoted(self, item) -> bool:
        """Whether the shop promotes this item (it then shares the promotion quota with new items)."""
        return bool(getattr(item, "is_promoted", False))

    def get_language(self, item) -> str:
        """The language of the item's text as a code ("de", "zh", "pt-BR"), "" when unknown: its full-text
        configuration and tokeniser are those ``RAGREC["SEARCH_LANGUAGES"]`` gives that language (docs/search.md).
        By default the item's ``language``, ``lang`` or ``locale`` field."""
        return _text(_first_attr(item, LANGUAGE_FIELDS))

    def get_metadata(self, item) -> dict[str, Any]:
        """Facts about the item kept on the mirror: its attributes and, when known, its ``language``
        (``get_language``; an override should start from ``super().get_metadata(item)`` to keep it)."""
        metadata: dict[str, Any] = dict(self.get_attributes(item))
        language = self.get_language(item)
        if language:
            metadata["language"] = language
        return metadata

    def snapshot(self, item) -> ItemSnapshot:
        return ItemSnapshot(
            key=self.get_key(item),
            title=self.get_title(item)[:500],
            category=self.get_category(item)[:200],
            price=self.get_price(item),
            in_stock=self.is_in_stock(item),
            is_eligible=self.is_eligible(item),
            url=safe_link(self.get_url(item))[:500],
            group_key=self.get_group_key(item)[:64],
            text=self.get_text(item),
            is_promoted=self.is_promoted(item),
            metadata=self.get_metadata(item),
        )


def content_hash(data: str | bytes) -> str:
    """sha256 of what is encoded, used to skip unchanged items."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def get_adapter() -> ItemAdapter:
    adapter_class = ragrec_settings.ADAPTER
    if not (isinstance(adapter_class, type) and issubclass(adapter_class, ItemAdapter)):
        raise ImproperlyConfigured('RAGREC["ADAPTER"] must name a subclass of ragrec_django.adapters.ItemAdapter.')
    return adapter_class()


def _first_attr(item, names):
    for name in names:
        if hasattr(item, name):
            return getattr(item, name)
    return None


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, models.Model):
        return str(value)
    return str(value).strip()
