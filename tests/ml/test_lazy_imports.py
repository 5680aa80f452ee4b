"""Building encoders from settings (Django's system checks do it) must not import torch & co."""

import subprocess
import sys

SCRIPT = """
import sys

import ragrec_django.ml.batching
import ragrec_django.ml.devices
import ragrec_django.ml.images
from ragrec_django.ml.base import EncoderError
from ragrec_django.ml.clip import OpenClipEncoder
from ragrec_django.ml.testing import TINY_CLIP_CONFIG
from ragrec_django.ml.text import TransformerTextEncoder

text = TransformerTextEncoder(device="cuda:1", precision="BF16", max_length=16, batch_size=2)
clip = OpenClipEncoder(
    model="ragrec-tiny-clip",
    pretrained=None,
    config=TINY_CLIP_CONFIG,
    device="cpu",
    precision="fp16",
    batch_size=4,
    image_formats=["jpg", "png", "webp"],
    max_image_pixels=1000,
)
assert text.modalities == {"text"} and clip.modalities == {"text", "image"}
for bad in ({"device": "gpu"}, {"precision": "int8"}, {"image_formats": ["nope"]}):
    try:
        OpenClipEncoder(**bad)
    except EncoderError:
        continue
    raise AssertionError("accepted %r" % (bad,))
print(" ".join(name for name in ("torch", "torchvision", "transformers", "open_clip") if name in sys.modules))
"""


def test_importing_and_building_encoders_imports_no_torch():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], "imported while building encoders: %s" % result.stdout
