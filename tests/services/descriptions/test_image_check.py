"""Where CLIP is configured, a draft's stated colour or type is checked against the product photo.

What a photo shows is known here without asking the check: the tests' CLIP is taught in the test (a few
seconds on the CPU) on solid colour swatches captioned with their colour and on drawings of a mug and of a
bottle captioned with what they are. A red swatch is then red to it and a drawn mug a mug, so a draft
calling them blue or a bottle must be flagged, and one calling the swatch red must not.
"""

import copy
import io
import random

import pytest
from django.core.files.base import ContentFile
from PIL import Image, ImageDraw

from ragrec_django.conf import ragrec_settings
from ragrec_django.ml.testing import TINY_CLIP_CONFIG, TINY_CLIP_NAME
from ragrec_django.services import descriptions, encoding
from shop_demo.catalog.models import Category, Product

pytestmark = pytest.mark.django_db

#: The colours the check chooses among (RAGREC["COLOUR_CHECK_PALETTE"]'s default), as swatches.
SWATCHES = {
    "red": (210, 30, 30), "orange": (230, 120, 30), "yellow": (235, 210, 40), "green": (30, 170, 60),
    "blue": (30, 50, 210), "purple": (120, 40, 160), "pink": (240, 150, 190), "brown": (110, 70, 30),
    "black": (20, 20, 20), "white": (245, 245, 245), "grey": (150, 150, 150),
}  # fmt: skip
COLOUR_CAPTIONS = ["%s", "a %s mug", "a photo of a %s mugs", "a %s bottle"]
SHAPE_CAPTIONS = ["a %s", "a photo of a %s"]
TRAINING_STEPS = 250


def swatch(rgb, rng: random.Random | None = None) -> Image.Image:
    """A solid colour picture; with ``rng``, the colour jittered a little (training)."""
    if rng is not None:
        rgb = tuple(min(255, max(0, value + rng.randint(-15, 15))) for value in rgb)
    return Image.new("RGB", (64, 64), rgb)


def drawing(shape: str, rng: random.Random | None = None) -> Image.Image:
    """A black mug (wide body, handle) or bottle (narrow body, neck) on white; with ``rng``, shifted a little."""
    dx, dy = (rng.randint(-4, 4), rng.randint(-4, 4)) if rng is not None else (0, 0)
    picture = Image.new("RGB", (64, 64), "white")
    pen = ImageDraw.Draw(picture)
    if shape == "mug":
        pen.rectangle((14 + dx, 18 + dy, 42 + dx, 52 + dy), fill="black")
        pen.ellipse((36 + dx, 24 + dy, 54 + dx, 44 + dy), outline="black", width=5)
    else:
        pen.rectangle((24 + dx, 24 + dy, 40 + dx, 58 + dy), fill="black")
        pen.rectangle((29 + dx, 6 + dy, 35 + dx, 24 + dy), fill="black")
    return picture


def jpeg(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def teach_clip(seed: int = 0):
    """The tiny CLIP architecture, trained contrastively on captioned swatches and drawings; returns the model."""
    import open_clip
    import torch

    rng = random.Random(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains many times faster on one thread of a busy machine
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _teach(open_clip.CLIP(**copy.deepcopy(TINY_CLIP_CONFIG)), rng)
    finally:
        torch.set_num_threads(threads)


def _teach(model, rng: random.Random):
    """``TRAINING_STEPS`` steps of CLIP's contrastive loss over batches of one captioned example per class."""
    import open_clip
    import torch
    import torch.nn.functional as F

    preprocess = open_clip.image_transform(TINY_CLIP_CONFIG["vision_cfg"]["image_size"], is_train=False)
    context = TINY_CLIP_CONFIG["text_cfg"]["context_length"]
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(TRAINING_STEPS):  # every other row of a batch is another class: a true negative
        pictures = [swatch(rgb, rng) for rgb in SWATCHES.values()] + [drawing(s, rng) for s in ("mug", "bottle")]
        captions = [rng.choice(COLOUR_CAPTIONS) % c for c in SWATCHES]
        captions += [rng.choice(SHAPE_CAPTIONS) % s for s in ("mug", "bottle")]
        images = F.normalize(model.encode_image(torch.stack([preprocess(p) for p in pictures])), dim=-1)
        texts = F.normalize(model.encode_text(open_clip.tokenize(captions, context_length=context)), dim=-1)
        logits = model.logit_scale.exp() * images @ texts.T
        targets = torch.arange(len(captions))
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def best_caption(model, picture: Image.Image, captions: list[str]) -> str:
    """The caption ``model`` matches best with ``picture`` (to check that the teaching took)."""
    import open_clip
    import torch

    preprocess = open_clip.image_transform(TINY_CLIP_CONFIG["vision_cfg"]["image_size"], is_train=False)
    context = TINY_CLIP_CONFIG["text_cfg"]["context_length"]
    with torch.no_grad():
        image = model.encode_image(preprocess(picture)[None])
        texts = model.encode_text(open_clip.tokenize(captions, context_length=context))
        scores = torch.nn.functional.cosine_similarity(image, texts)
    return captions[int(scores.argmax())]


@pytest.fixture(scope="module")
def taught_clip(tmp_path_factory):
    """OPTIONS of an OpenClipEncoder loading the taught CLIP (a safetensors file, as production loads it)."""
    from safetensors.torch import save_file

    model = teach_clip()
    colours = ["a %s mug" % colour for colour in SWATCHES]
    for colour, rgb in SWATCHES.items():
        assert best_caption(model, swatch(rgb), colours) == "a %s mug" % colour, "not taught"
    for shape in ("mug", "bottle"):
        assert best_caption(model, drawing(shape), ["a mug", "a bottle"]) == "a " + shape, "not taught"
    path = tmp_path_factory.mktemp("taught_clip") / "colours-and-shapes.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(path))
    return {"model": TINY_CLIP_NAME, "pretrained": str(path), "config": copy.deepcopy(TINY_CLIP_CONFIG)}


@pytest.fixture
def photographed(settings, taught_clip):
    """``photographed(title, picture)``: a product of category "Mugs" with that photo, encoded into "image"."""
    settings.RAGREC = {
        **settings.RAGREC,
        "ENCODERS": {"clip": {"BACKEND": "ragrec_django.ml.clip.OpenClipEncoder", "OPTIONS": {**taught_clip, "device": "cpu"}}},
        "SPACES": {"image": {"ENCODER": "clip", "MODALITY": "image"}},
    }  # fmt: skip
    assert set(SWATCHES) == set(ragrec_settings.COLOUR_CHECK_PALETTE)  # every colour the check may answer is taught
    category = Category.objects.create(name="Mugs", slug="mugs")

    def make(title: str, picture: Image.Image) -> Product:
        product = Product(title=title, slug=title.lower().replace(" ", "-"), category=category, price="9.00", stock=4)
        product.image.save(product.slug + ".jpg", ContentFile(jpeg(picture)), save=False)
        product.save()
        report = encoding.encode_items("image", [product.pk])
        assert (report.encoded, report.failed) == (1, {})
        return product

    return make


def image_flags(draft) -> list[dict]:
    return [flag for flag in draft.flags if flag["kind"] == "image_disagrees"]


def test_a_colour_the_photo_contradicts_is_flagged(photographed, llm):
    product = photographed("Ceramic coffee mug", swatch(SWATCHES["red"]))
    llm("This blue mug is a good buy [title].")
    [flag] = image_flags(descriptions.generate_draft(str(product.pk)))
    assert flag["span"] == "blue"
    assert flag["message"] == "draft says colour 'blue' but the photo looks like 'red' (CLIP)"


def test_the_colour_the_photo_shows_is_not_flagged(photographed, llm):
    product = photographed("Ceramic coffee mug", swatch(SWATCHES["red"]))
    llm("This red mug is a good buy [title].")
    assert image_flags(descriptions.generate_draft(str(product.pk))) == []


def test_a_type_the_photo_contradicts_is_flagged(photographed, llm):
    product = photographed("Ceramic coffee mug", drawing("mug"))
    llm("This bottle is a good buy [title].")
    [flag] = image_flags(descriptions.generate_draft(str(product.pk)))
    assert flag["span"] == "bottle"
    assert flag["message"] == "draft says type 'bottle' but the photo looks like 'mug' (CLIP)"


def test_no_image_space_means_no_image_check(product, llm):
    llm("This blue bottle is a good buy [title].")
    draft = descriptions.generate_draft(str(product.pk))
    assert not [flag for flag in draft.flags if flag["kind"] == "image_disagrees"]
