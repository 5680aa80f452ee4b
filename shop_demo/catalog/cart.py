"""A session basket: product ids and quantities kept in the visitor's session (no database table)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .models import Product

SESSION_KEY = "shop_demo_cart"
MAX_QUANTITY = 20
MAX_LINES = 50


@dataclass
class Line:
    product: Product
    quantity: int

    @property
    def total(self) -> Decimal:
        return self.product.price * self.quantity


class Cart:
    """The basket of a request's session: ``{"<product pk>": quantity}``."""

    def __init__(self, session):
        self.session = session
        raw = session.get(SESSION_KEY) or {}
        self.quantities: dict[str, int] = {
            str(pk): int(qty) for pk, qty in raw.items() if str(pk).isdigit() and str(qty).isdigit() and int(qty) > 0
        }

    def __len__(self) -> int:
        """Number of items (quantities added up)."""
        return sum(self.quantities.values())

    def add(self, product: Product, quantity: int = 1) -> int:
        """Add ``quantity`` of ``product`` (capped at MAX_QUANTITY per line); return the line's new quantity."""
        key = str(product.pk)
        if key not in self.quantities and len(self.quantities) >= MAX_LINES:
            raise ValueError("Your basket is full: at most %d different products." % MAX_LINES)
        self.quantities[key] = min(MAX_QUANTITY, self.quantities.get(key, 0) + quantity)
        self.save()
        return self.quantities[key]

    def set(self, product_pk, quantity: int) -> None:
        key = str(product_pk)
        if key not in self.quantities:
            return
        if quantity <= 0:
            del self.quantities[key]
        else:
            self.quantities[key] = min(MAX_QUANTITY, quantity)
        self.save()

    def clear(self) -> None:
        self.quantities = {}
        self.save()

    def save(self) -> None:
        self.session[SESSION_KEY] = dict(self.quantities)
        self.session.modified = True

    def lines(self) -> list[Line]:
        """The basket's lines for products still on sale, in the order they were added."""
        products = Product.objects.active().select_related("category").in_bulk([int(pk) for pk in self.quantities])
        return [Line(products[int(pk)], qty) for pk, qty in self.quantities.items() if int(pk) in products]

    @staticmethod
    def total(lines: list[Line]) -> Decimal:
        return sum((line.total for line in lines), Decimal("0.00"))
