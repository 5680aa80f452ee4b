"""The demo shop's pages show the plugin's recommendations with their reasons, through the tags and services."""

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse

from ragrec_django.models import Interaction
from ragrec_django.services import recommend

pytestmark = pytest.mark.django_db


def section(html: str, title: str) -> str:
    """The HTML of the recommendation section titled ``title`` (empty when absent)."""
    heading = 'class="ragrec-title">%s</h' % title
    if heading not in html:
        return ""
    start = html.rindex("<section", 0, html.index(heading))
    return html[start : html.index("</section>", start)]


def test_product_page_shows_similar_and_bought_together_with_reasons(client, catalogue):
    mug = catalogue["Red ceramic coffee mug"]
    html = client.get(mug.get_absolute_url()).content.decode()
    similar = section(html, "Similar items")
    assert similar.count('class="ragrec-card"') == 4
    assert similar.count('<p class="ragrec-reason">Similar to Red ceramic coffee mug</p>') == 4
    assert ">Red ceramic coffee mug</span>" not in similar
    assert "£20.00" in similar and similar.count('href="/api/recommend/click/') == 4  # links through the click redirect
    together = section(html, "Frequently bought together")
    # No baskets yet: content-based complements, the best item of each other category.
    assert together.count('<p class="ragrec-reason">Goes with Red ceramic coffee mug</p>') == 3
    assert not any(
        ">%s</span>" % title in together for title in ("Blue ceramic coffee mug", "Green enamel camping mug")
    )


def test_product_page_records_a_view_for_the_session_or_the_user(client, catalogue):
    mug = catalogue["Red ceramic coffee mug"]
    client.get(mug.get_absolute_url())
    client.get(mug.get_absolute_url())
    session_key = client.session.session_key
    assert session_key
    views = Interaction.objects.filter(event="view")
    rows = [(v.item.key, v.session_key, v.user_id, v.source) for v in views]
    assert rows == [(str(mug.pk), session_key, None, "product_page")] * 2

    user = get_user_model().objects.create_user("ann")
    client.force_login(user)
    client.get(catalogue["Brass desk lamp"].get_absolute_url())
    assert Interaction.objects.filter(user=user, item__key=str(catalogue["Brass desk lamp"].pk)).count() == 1


def test_home_shows_for_you_and_trending_from_what_was_viewed(client, catalogue):
    html = client.get(reverse("catalog:home")).content.decode()
    assert not section(html, "For you") and not section(html, "Trending")  # nothing viewed yet anywhere

    client.get(catalogue["Red ceramic coffee mug"].get_absolute_url())
    client.get(catalogue["Brass desk lamp"].get_absolute_url())
    html = client.get(reverse("catalog:home")).content.decode()
    for_you = section(html, "For you")
    assert for_you.count('class="ragrec-card"') == 4
    assert "Because you viewed Red ceramic coffee mug" in for_you or "Because you viewed Brass desk lamp" in for_you
    trending = section(html, "Trending")
    assert trending.count('<p class="ragrec-reason">Trending now</p>') == 2
    assert ">Red ceramic coffee mug</span>" in trending and ">Brass desk lamp</span>" in trending

    newcomer = client_class_for(client)
    html = newcomer.get(reverse("catalog:home")).content.decode()
    assert not section(html, "For you")  # only trending to offer: shown once, under "Trending"
    assert section(html, "Trending").count('class="ragrec-card"') == 2


def client_class_for(client):
    return type(client)()


def test_search_page_uses_hybrid_search_with_corrections_and_reasons(client, catalogue):
    response = client.get(reverse("catalog:search"), {"q": "cofee mugg"})
    assert response.status_code == 200
    html = response.content.decode()
    corrected = response.context["corrected_query"]
    assert corrected in ("coffee mug", "coffee mugs")
    assert "Showing results for “<strong>%s</strong>”. You searched for “cofee mugg”." % corrected in html
    results = section(html, "Best matches")
    assert results.count('class="ragrec-card"') == 4  # every mug ("mug" names the category: a filter), best first
    assert results.count("Matches &#x27;%s&#x27;" % corrected) == 4
    first_two = [p.title for p in response.context["products"][:2]]
    assert set(first_two) == {"Red ceramic coffee mug", "Blue ceramic coffee mug"}
    assert "4 best matches" in html


def test_search_page_survives_a_database_error_in_search(client, catalogue, monkeypatch):
    def failing_search(*args, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    monkeypatch.setattr(recommend, "search", failing_search)
    response = client.get(reverse("catalog:search"), {"q": "kettle"})
    assert response.status_code == 200  # the page falls back to matching words
    assert [p.title for p in response.context["products"]] == [
        "Copper stovetop tea kettle",
        "Glass kettle with tea infuser",
        "Stainless steel electric kettle",
    ]


def test_search_page_has_an_accessible_photo_form(client, db):
    html = client.get(reverse("catalog:search")).content.decode()
    assert '<form class="photo-form" action="/search/photo/" method="post" enctype="multipart/form-data">' in html
    assert '<label for="photo-image">' in html and 'id="photo-image" type="file" name="image" accept="image/*"' in html
    assert "csrfmiddlewaretoken" in html


def photo_of(product) -> bytes:
    with product.image.open("rb") as handle:
        return handle.read()


def test_search_by_photo_shows_look_alikes(client, catalogue):
    upload = SimpleUploadedFile(
        "kettle.jpg", photo_of(catalogue["Copper stovetop tea kettle"]), content_type="image/jpeg"
    )
    response = client.post(reverse("catalog:search_photo"), {"image": upload})
    assert response.status_code == 200
    html = response.content.decode()
    results = section(html, "Items like your photo")
    assert results.index(">Copper stovetop tea kettle</span>") < results.index(
        'class="ragrec-reason"'
    )  # the first card
    assert '<p class="ragrec-reason">Looks like your photo</p>' in results
    assert 'role="alert"' not in html


@pytest.mark.parametrize(
    "data, status, message",
    [
        ({}, 400, "Choose a photo to search with."),
        ({"image": SimpleUploadedFile("x.jpg", b"GIF89a not really")}, 400, "That file is not a photo we can read."),
        ({"image": SimpleUploadedFile("x.jpg", b"")}, 400, "The photo you sent is an empty file."),
    ],
)
def test_bad_photo_uploads_get_clear_messages(client, catalogue, data, status, message):
    response = client.post(reverse("catalog:search_photo"), data)
    assert response.status_code == status
    html = response.content.decode()
    assert '<p id="photo-image-error" class="form-error" role="alert">%s' % message in html
    assert 'aria-invalid="true"' in html and "Items like your photo" not in html


def test_oversized_photo_is_refused(client, settings, catalogue):
    settings.RAGREC = {**settings.RAGREC, "MAX_UPLOAD_BYTES": 1024 * 1024}
    big = SimpleUploadedFile("big.jpg", photo_of(catalogue["Brass desk lamp"]) + b"\0" * (1024 * 1024))
    response = client.post(reverse("catalog:search_photo"), {"image": big})
    assert response.status_code == 413
    assert "The photo is too large: please send one of at most 1 MB." in response.content.decode()
    huge = SimpleUploadedFile("huge.jpg", b"\0" * (3 * 1024 * 1024))
    assert client.post(reverse("catalog:search_photo"), {"image": huge}).status_code == 413


def test_photo_search_without_an_image_index_says_so(client, db):
    response = client.post(reverse("catalog:search_photo"), {"image": SimpleUploadedFile("x.jpg", b"whatever")})
    assert response.status_code == 503
    assert "Search by photo is not available yet" in response.content.decode()
    assert client.get(reverse("catalog:search_photo")).status_code == 302
