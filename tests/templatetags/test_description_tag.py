"""{% ragrec_description item %}: the current published description (for RAGREC["PUBLISH_TO_ITEM"] = False),
as escaped paragraphs; nothing when none is published."""

import pytest
from django.template import Context, Template

from ragrec_django.models import Item, PublishedDescription
from ragrec_django.services.encoding import sync_host_items
from shop_demo.catalog.models import Category, Product

pytestmark = pytest.mark.django_db


def render(source: str, **context) -> str:
    return Template("{% load ragrec %}" + source).render(Context(context))


@pytest.fixture
def mug(db):
    category = Category.objects.create(name="Mugs", slug="mugs")
    product = Product.objects.create(title="Red mug", slug="red-mug", category=category, price="8.00", stock=3)
    sync_host_items([product.pk])
    return product


def publish(product, text: str, *, current: bool = True) -> None:
    PublishedDescription.objects.create(item=Item.objects.get(key=str(product.pk)), text=text, is_current=current)


def test_renders_the_current_published_text_as_paragraphs(mug):
    publish(mug, "An old text.", current=False)
    publish(mug, "A red mug for coffee.\n\nHolds 350 ml\nand is dishwasher safe.")
    expected = "<p>A red mug for coffee.</p>\n\n<p>Holds 350 ml<br>and is dishwasher safe.</p>"
    assert render("{% ragrec_description product %}", product=mug) == expected
    assert render("{% ragrec_description key %}", key=str(mug.pk)) == expected  # a key or a mirror item too
    assert render("{% ragrec_description item %}", item=Item.objects.get(key=str(mug.pk))) == expected
    assert render("{% ragrec_description product as text %}[{{ text }}]", product=mug) == "[%s]" % expected


def test_renders_nothing_without_a_published_text(mug):
    assert render("{% ragrec_description product %}", product=mug) == ""
    publish(mug, "Only a former text.", current=False)
    assert render("[{% ragrec_description product %}]", product=mug) == "[]"
    assert render("[{% ragrec_description key %}]", key="no-such-item") == "[]"
    assert render("[{% ragrec_description None %}]") == "[]"


def test_markup_in_the_stored_text_is_escaped_never_rendered(mug):
    # Published text is plain text (markup was stripped at publish); anything that looks like markup is shown as text.
    publish(
        mug, '5 < 6 & "fine" <script>alert("x")</script><img src=x onerror=alert(1)>\n\n<p onclick="steal()">hi</p>'
    )
    html = render("{% ragrec_description product %}", product=mug)
    assert "<script" not in html and "<img" not in html and 'onclick="' not in html
    assert html == (
        "<p>5 &lt; 6 &amp; &quot;fine&quot; &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
        "&lt;img src=x onerror=alert(1)&gt;</p>\n\n<p>&lt;p onclick=&quot;steal()&quot;&gt;hi&lt;/p&gt;</p>"
    )
