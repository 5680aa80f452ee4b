"""How ragrec_django reads the shop's products.

The default ``ItemAdapter`` already finds title, description, category (its
name, via ``Category.__str__``), price, stock, image, ``is_active`` and
``get_absolute_url``. Only three things differ here:

* the queryset joins the category, so snapshots do not query it per product;
* the group key is read from ``parent_id`` (no query), and a parent product
  is its own group, so a parent and its variants form one group;
* the metadata carries the slug next to colour, material and size.
"""

from __future__ import annotations

from typing import Any

from ragrec_django.adapters import ItemAdapter


class ProductAdapter(ItemAdapter):
    def get_queryset(self):
        return super().get_queryset().select_related("category")

    def get_group_key(self, item) -> str:
        group = item.parent_id or item.pk
        return "" if group is None else str(group)

    def get_metadata(self, item) -> dict[str, Any]:
        metadata = super().get_metadata(item)
        metadata["slug"] = item.slug
        return metadata
