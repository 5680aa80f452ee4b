"""A small synthetic "fashion shop" export, kept apart from Online Retail: other column names, a day-first
time format, a product file with department, description, price, image and style (variant group), and
order numbers that restart at 1001 for every customer (so customers share order ids, as in many shops).

Deterministic (``random.Random(seed)``): customers favour one or two departments, re-buy basics, and
buy articles of a look together.
"""

from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta
from pathlib import Path

DEPARTMENTS = {
    "Knitwear": ["wool jumper", "cashmere cardigan", "cable knit sweater", "ribbed turtleneck"],
    "Denim": ["slim jeans", "straight jeans", "denim jacket", "denim skirt"],
    "Shoes": ["leather boots", "canvas sneakers", "suede loafers", "running shoes"],
    "Basics": ["cotton t-shirt", "ankle socks", "boxer briefs", "vest top"],
    "Outerwear": ["rain coat", "puffer jacket", "wool coat", "trench coat"],
}
COLOURS = ["black", "navy", "cream"]

#: The column mapping a shop engineer would give (``--map`` / ``--product-map``).
MAP = ["session=customer_ref", "item=article", "timestamp=purchased_on", "order=basket_no", "quantity=units"]
PRODUCT_MAP = [
    "id=article_id",
    "title=product_name",
    "category=department",
    "description=detail_desc",
    "price=price_eur",
    "image=image_url",
    "group=style_code",
]
TIME_FORMAT = "%d/%m/%Y %H:%M"


def articles() -> list[dict]:
    rows = []
    for department, styles in DEPARTMENTS.items():
        for s, style in enumerate(styles):
            code = "%s-%02d" % (department[:3].upper(), s)
            for colour in COLOURS:
                rows.append(
                    {
                        "article_id": "%s-%s" % (code, colour[:2].upper()),
                        "product_name": "%s %s" % (colour.title(), style),
                        "department": department,
                        "detail_desc": "A %s %s from our %s range." % (colour, style, department.lower()),
                        "price_eur": "%.2f" % (9.99 + 10 * s + len(department)),
                        "image_url": "https://img.example/%s.jpg" % code.lower(),
                        "style_code": code,
                    }
                )
    return rows


def orders(seed: int = 7, customers: int = 90) -> list[dict]:
    rng = random.Random(seed)
    catalogue = articles()
    by_department: dict[str, list[dict]] = {}
    for article in catalogue:
        by_department.setdefault(article["department"], []).append(article)
    start = datetime(2024, 1, 8, 9, 0)
    rows = []
    for c in range(customers):
        customer = "C%04d" % (100 + c)
        liked = rng.sample(sorted(DEPARTMENTS), 2)
        basics = rng.sample(by_department["Basics"], 2)
        day = rng.randrange(0, 40)
        for n in range(rng.randint(2, 5)):
            basket = "%d" % (1001 + n)  # per-customer numbering: every customer has an order 1001
            at = start + timedelta(days=day, hours=rng.randrange(0, 10), minutes=rng.randrange(60))
            picked = {a["article_id"]: a for a in rng.sample(by_department[rng.choice(liked)], 2)}
            if rng.random() < 0.6:
                basic = rng.choice(basics)
                picked[basic["article_id"]] = basic
            if rng.random() < 0.3:
                other = rng.choice(catalogue)
                picked[other["article_id"]] = other
            for article in picked.values():
                rows.append(
                    {
                        "customer_ref": customer,
                        "article": article["article_id"],
                        "purchased_on": at.strftime(TIME_FORMAT),
                        "basket_no": basket,
                        "units": str(rng.randint(1, 3)),
                    }
                )
            day += rng.randint(7, 30)
    rows.sort(key=lambda r: (datetime.strptime(r["purchased_on"], TIME_FORMAT), r["customer_ref"]))
    return rows


def write(folder: Path, *, seed: int = 7, customers: int = 90) -> tuple[Path, Path]:
    """The export's two files in ``folder``: (orders, products)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, rows in (("orders_export.csv", orders(seed, customers)), ("articles.csv", articles())):
        path = folder / name
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        files.append(path)
    return files[0], files[1]
