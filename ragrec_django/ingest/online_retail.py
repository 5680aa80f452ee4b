"""The UCI Online Retail data set as an import preset (``ragrec_import --preset online-retail``).

Customers become session ids, invoices baskets, lines purchases at Europe/London time; lines
without a customer, cancellations, returns, bulk lines and non-product codes are filtered out
(counted by reason).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .importer import Preset

#: Stock codes of the Online Retail data set that are charges, fees or adjustments, not products.
NON_PRODUCTS = frozenset({"POST", "DOT", "C2", "M", "m", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK"})


def _non_product(code: str) -> bool:
    return code in NON_PRODUCTS or code.startswith("gift_0001")


def _drop_interaction(raw: Mapping[str, str]) -> str | None:
    if not (raw.get("CustomerID") or "").strip():
        return "no customer id"
    if (raw.get("InvoiceNo") or "").strip().upper().startswith("C"):
        return "cancellation (invoice C...)"
    if _non_product((raw.get("StockCode") or "").strip()):
        return "non-product code (postage, fees, discounts, vouchers...)"
    quantity = (raw.get("Quantity") or "").strip()
    if re.fullmatch(r"-?\d+", quantity):
        if int(quantity) <= 0:
            return "quantity <= 0 (returns)"
        if int(quantity) > 10_000:
            return "quantity above 10,000 (bulk lines, two of three cancelled)"
    return None


def _drop_product(raw: Mapping[str, str]) -> str | None:
    if _non_product((raw.get("StockCode") or "").strip()):
        return "non-product code (postage, fees, discounts, vouchers...)"
    return None


def _float_id(value: str) -> str:
    """Customer ids written as floats ("17850.0") -> "17850"."""
    return value[:-2] if value.endswith(".0") and value[:-2].isdigit() else value


ONLINE_RETAIL = Preset(
    name="online-retail",
    description=(
        "UCI Online Retail (InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, "
        "Country; products.csv: StockCode, Description, median_unit_price). Customers become session ids "
        "('17850.0' -> '17850'), invoices baskets, lines purchases at Europe/London time. Drops lines without "
        "a customer, cancellations (InvoiceNo 'C...'), Quantity <= 0, quantities above 10,000 and non-product "
        "codes (%s, gift_0001_*)." % ", ".join(sorted(NON_PRODUCTS))
    ),
    interaction_map={
        "session": "CustomerID",
        "item": "StockCode",
        "timestamp": "InvoiceDate",
        "order": "InvoiceNo",
        "quantity": "Quantity",
    },
    product_map={"id": "StockCode", "title": "Description", "price": "median_unit_price"},
    interactions_file="online_retail.csv",
    products_file="products.csv",
    drop_interaction=_drop_interaction,
    drop_product=_drop_product,
    clean={"session": _float_id},
    timezone="Europe/London",
)
