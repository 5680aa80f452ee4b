"""check_draft: what a reviewer must look at, and nothing the product data supports."""

from decimal import Decimal
from fractions import Fraction

import pytest

from ragrec_django.generation.checks import Flag, check_draft, colour_words, quantities, type_words

from .corpus import INJECTIONS, TAG_TEXT

SOCKET = {
    "title": "Copper impact socket 9/16 in",
    "material": "Copper",
    "colour": "Gray",
    "size": "9/16",
    "price": Decimal("12.50"),
    "attributes": {"length": "1,200 mm", "weight": "200 g", "warranty": "", "fit": "S, M and L"},
}
SOURCES = [{"id": 3, "title": "Steel socket", "text": "A steel socket."}]
SUPPORTED = (
    "A copper impact socket for 9/16 in bolts [title][size]. It is grey [colour]. "
    "It is 1200 mm long and weighs 200 g [attributes.length, weight]. It costs £12.50 [price]. "
    "Sizes S, M and L [fit]. Finished like our other sockets [source:3]."
)


def kinds(flags: list[Flag]) -> list[tuple[str, str]]:
    return [(flag.kind, flag.span) for flag in flags]


def test_a_fully_supported_draft_raises_no_flags():
    assert check_draft(SUPPORTED, SOCKET, SOURCES) == []


def test_copper_turned_steel_is_flagged():
    flags = check_draft("A steel impact socket [title][material].", SOCKET, SOURCES)
    assert flags == [Flag("unsupported_material", "draft says 'steel' but the product data never mentions it", "steel")]


def test_stainless_steel_is_not_supported_by_steel_but_steel_is_by_stainless_steel():
    flags = check_draft("Stainless steel [material].", {"material": "steel"}, [])
    assert kinds(flags) == [("unsupported_material", "Stainless steel")]
    assert check_draft("Made of steel [material].", {"material": "Stainless steel"}, []) == []


def test_a_mixed_number_never_matches_its_fraction():
    flags = check_draft("Fits 1-9/16 in bolts [size].", SOCKET, SOURCES)
    assert kinds(flags) == [("unsupported_number", "1-9/16")]
    flags = check_draft("Fits 9/16in bolts [size].", {"size": "1-9/16 in"}, [])
    assert kinds(flags) == [("unsupported_number", "9/16in")]
    assert check_draft('Fits 1 9/16" bolts [size].', {"size": "1-9/16 in"}, []) == []


def test_numbers_are_compared_by_value():
    product = {"title": "Jug", "capacity": "1.50 l", "price": 19.99, "stock": 1200, "wool": "50% wool"}
    draft = "Holds 1.5 l [capacity]. Costs $19.99 [price]. 1,200 in stock [stock]. It is 50 per cent wool [wool]."
    assert check_draft(draft, product, []) == []
    flags = check_draft("Holds 1.6 l [capacity]. It is 60% wool [wool]. Costs 20 [price].", product, [])
    assert kinds(flags) == [
        ("unsupported_number", "1.6 l"),
        ("unsupported_number", "60%"),
        ("unsupported_number", "20"),
    ]


def test_a_number_the_data_gives_in_another_unit_is_flagged():
    flags = check_draft("The blade is 16 mm wide [width].", {"width": "16 cm"}, [])
    assert flags == [Flag("unsupported_unit", "draft says '16 mm' but the product data gives it as 16 cm", "16 mm")]


def test_colours_use_synonyms_and_families():
    assert check_draft("A gray, navy and teal mug [colour].", {"colour": "Grey / Blue / turquoise"}, []) == []
    assert check_draft("A blue mug [colour].", {"colour": "Teal"}, []) == []
    flags = check_draft("A red and white mug [colour].", {"colour": "White"}, [])
    assert kinds(flags) == [("unsupported_colour", "red")]


def test_a_word_that_is_both_colour_and_material_is_flagged_once():
    assert kinds(check_draft("A silver mug [title].", {"title": "Mug"}, [])) == [("unsupported_material", "silver")]


def test_sizes_not_in_the_data_are_flagged():
    assert kinds(check_draft("Also in XL [fit].", SOCKET, SOURCES)) == [("unsupported_size", "XL")]


def test_banned_claims_are_flagged_case_insensitively():
    draft = "This ECO FRIENDLY mug is the Best in the World [title]. Clinically\u200b proven [title]."
    flags = check_draft(
        draft, {"title": "Mug"}, [], banned_claims=["eco-friendly", "best in the world", "clinically proven"]
    )
    assert kinds(flags) == [
        ("removed_hidden", "1 zero-width character at position 66 (U+200B)"),
        ("banned_claim", "ECO FRIENDLY"),
        ("banned_claim", "Best in the World"),
        ("banned_claim", "Clinically proven"),
    ]
    assert flags[1].message == "draft makes the banned claim 'eco-friendly'"
    assert check_draft(draft, {"title": "Mug"}, [])[1:] == []


def test_uncited_sentences_are_flagged():
    flags = check_draft(
        "A copper mug [title]. It keeps tea hot for hours. <ul><li>Red</li></ul>",
        {"title": "Copper mug", "colour": "red"},
        [],
    )
    assert kinds(flags) == [("uncited_sentence", "It keeps tea hot for hours."), ("uncited_sentence", "Red")]


def test_bad_citations_are_flagged():
    draft = (
        "A mug [title, colour_name]. From a catalogue [source:9]. Guaranteed [warranty]. "
        "Fine [source:3] [attributes.weight]."
    )
    flags = check_draft(draft, SOCKET, SOURCES)
    assert kinds(flags) == [
        ("bad_citation", "[colour_name]"),
        ("bad_citation", "[source:9]"),
        ("bad_citation", "[warranty]"),
    ]
    assert flags[0].message == "cites the field 'colour_name', which the product does not have"
    assert flags[1].message == "cites source '9', which was not provided"
    assert flags[2].message == "cites the field 'warranty', which is empty"


def test_removed_links_images_and_hidden_text_are_flagged():
    draft = (
        "A mug [title]. " + INJECTIONS["md_image"] + " " + INJECTIONS["js_link"] + " " + INJECTIONS["script"] + TAG_TEXT
    )
    flags = check_draft(draft, {"title": "Mug"}, [])
    assert [flag.kind for flag in flags] == [
        "removed_hidden",
        "removed_image",
        "removed_link",
        "removed_markup",
        "uncited_sentence",
    ]
    assert flags[1].message == "sanitising removed an image: http://evil.example/x.png"
    assert flags[4].span == "claim your prize"


def test_a_truncated_draft_is_flagged():
    draft = " ".join("A mug [title]." for _ in range(20))
    assert [flag.kind for flag in check_draft(draft, {"title": "Mug"}, [], max_chars=60)] == ["removed_text"]


def test_colour_and_type_words():
    assert colour_words("Gray trainers with navy\u200b laces and an off white sole") == ["grey", "blue", "white"]
    assert type_words("Gray trainers, a T-shirt and a frying pan") == ["shoes", "shirt", "pan"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1-9/16 inch", [(Fraction(25, 16), "in")]),
        ("1-9/16 in", [(Fraction(25, 16), None)]),
        ("9/16in", [(Fraction(9, 16), "in")]),
        ('1 9/16"', [(Fraction(25, 16), "in")]),
        ("£1,299.00", [(Fraction(1299), "£")]),
        ("30 x 40cm", [(Fraction(30), None), (Fraction(40), "cm")]),
        ("12.5%", [(Fraction(25, 2), "%")]),
        ("12 in red", [(Fraction(12), None)]),
        ("3XL, v2 and 2nd", []),
    ],
)
def test_quantities(text, expected):
    assert [(q.value, q.unit) for q in quantities(text)] == expected


def test_odd_product_values_do_not_break_the_check():
    product = {"title": "Mug", "weight": float("nan"), "in_stock": True, "dims": [10, {"h": Decimal("8.5")}]}
    assert kinds(check_draft("A mug 10 by 8.5 [title]. It weighs 1 [weight].", product, [])) == [
        ("unsupported_number", "1")
    ]


def test_source_ids_are_read_as_the_prompt_wrote_them():
    sources = [{"title": "no id"}, {"id": "a]b"}]
    assert check_draft("A mug [source:1]. Another [source:a-b].", {"title": "Mug"}, sources) == []


def test_the_title_of_a_cited_source_is_not_a_claim_about_the_product():
    sources = [{"id": "x 9", "title": "Steel Socket 1/2 in"}]
    draft = "It is made of copper [material]. It pairs with Steel Socket 1/2 in [source:x-9]."
    assert check_draft(draft, SOCKET, sources) == []
    flags = check_draft("Like Steel Socket 1/2 in, it is steel [source:x-9].", SOCKET, sources)
    assert kinds(flags) == [("unsupported_material", "steel")]
    assert kinds(check_draft("It pairs with Steel Socket 1/2 in [title].", SOCKET, sources)) == [
        ("unsupported_material", "Steel"),
        ("unsupported_number", "1/2"),
    ]


def test_a_draft_in_the_offline_backends_style_passes():
    product = {
        "title": "Linen Shirt",
        "category": "Shirts",
        "colour": "Navy",
        "material": "linen",
        "size": "S, M, L",
        "price": "49.99",
        "currency": "GBP",
        "attributes": {"fit": "Relaxed", "weight": "180 g"},
    }
    draft = (
        "Linen Shirt is part of the Shirts range [title][category]. It comes in Navy and is made from linen "
        "[colour][material]. It comes in size S, M, L [size]. It costs 49.99 GBP [price][currency]. Its fit is "
        "Relaxed, and its weight is 180 g [attributes.fit][attributes.weight]. Like Oxford Shirt, it is made "
        "from linen [material][source:sku-2]."
    )
    assert check_draft(draft, product, [{"id": "sku-2", "title": "Oxford Shirt"}]) == []
