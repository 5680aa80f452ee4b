"""The offline generator keeps the materials and measurements the item's current description states (issue 21, item 11)."""

from ragrec_django.generation.checks import check_draft
from ragrec_django.ml.generation import GenerationRequest
from ragrec_django.ml.generators import FactsGenerator

MUG = {"id": "7", "title": "Blue mug", "category": "Mugs", "price": "9.50",
       "description": "A 400 ml ceramic mug, 9.5 cm tall. Costs £9.50, 20% off."}  # fmt: skip


def describe(facts):
    return FactsGenerator().generate(GenerationRequest(task="description", messages=[], facts=facts, sources=[]))


def test_materials_and_measurements_of_the_current_description_are_kept_and_cited():
    text = describe(MUG)
    assert "It is made from ceramic [description]." in text
    assert "It holds 400 ml [description]." in text
    assert "It measures 9.5 cm [description]." in text
    assert "20%" not in text and "£" not in text  # prices and percentages are not measurements


def test_the_draft_passes_the_grounding_checks():
    assert check_draft(describe(MUG), MUG, []) == []


def test_a_material_fact_wins_over_the_materials_of_older_text_but_measurements_are_kept():
    text = describe({"title": "Blue mug", "material": "stoneware", "description": "A ceramic mug, 400ml."})
    assert "ceramic" not in text and "stoneware [material]." in text
    assert "It holds 400ml [description]." in text


def test_without_a_description_nothing_is_added():
    text = describe({"title": "Blue mug", "category": "Mugs"})
    assert "[description]" not in text
