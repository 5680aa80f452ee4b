"""Settings of the worker-topology tests: the demo's, with the workload queues on and a tiny CLIP.

``RAGREC_TEST_TINY_CLIP`` holds the OPTIONS of a checkpoint written by
``ragrec_django.ml.testing.make_tiny_clip_checkpoint`` (JSON): spaces "clip-text" (modality text,
queue ``gpu-text``) and "image" (modality image, queue ``gpu-image``) encode with it, so thousands of
items take seconds on a CPU; the production code path (open_clip, the image decoder) is unchanged.
"""

import json
import os

from shop_demo.settings import *  # noqa: F403
from shop_demo.settings import RAGREC

_TINY = {
    "BACKEND": "ragrec_django.ml.clip.OpenClipEncoder",
    "OPTIONS": {**json.loads(os.environ["RAGREC_TEST_TINY_CLIP"]), "device": "cpu"},
}

RAGREC = {
    **RAGREC,
    "ENCODERS": {**RAGREC["ENCODERS"], "tiny": _TINY},
    "SPACES": {
        **RAGREC["SPACES"],
        "clip-text": {"ENCODER": "tiny", "MODALITY": "text"},
        "image": {"ENCODER": "tiny", "MODALITY": "image"},
    },
    "TASK_QUEUES": {},  # the standard names: gpu-image, gpu-text, cpu
    "ENCODE_CHUNK_SIZE": int(os.environ.get("RAGREC_TEST_CHUNK_SIZE", "100")),
    "ENCODE_ITEMS_PER_SECOND": {"text": 200, "image": 100},  # the tiny model, on a busy CPU
}
