"""End-to-end encoding throughput: stored product (text, JPEG file) -> rows in pgvector.

    python benchmarks/encode.py [--texts 1000] [--images 200] [--image-size 800] [--device auto]
                                [--clip-model ViT-B-32] [--precision auto] [--json out.json]

Creates a scratch database (``ragrec_bench``) on the configured server (the
embedded PostgreSQL unless DATABASE_URL is set), products with text and
JPEG images in a temporary MEDIA_ROOT, then times, after a warm-up:

* ``text e2e``: ``encode_items("text", pks)``: read products, build text,
  MiniLM, write halfvec rows (one upsert per 64 items);
* ``text model``: ``encode_texts`` on the same texts, in memory;
* ``image e2e``: ``encode_items("image", pks)``: read JPEG files, decode,
  preprocess, CLIP image tower (random weights of the named architecture:
  speed does not depend on the weights), write rows;
* ``image model``: the image tower on an already preprocessed tensor.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=800)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--clip-model", default="ViT-B-32")
    parser.add_argument("--text-batch", type=int, default=128)
    parser.add_argument("--image-batch", type=int, default=256)
    parser.add_argument("--json", help="Also write the figures to this file.")
    return parser.parse_args()


def jpeg(rng: np.random.Generator, size: int) -> bytes:
    """A photo-like JPEG: smooth gradient plus noise (so decoding costs what a real photo costs)."""
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack([x * rng.uniform(80, 255), y * rng.uniform(80, 255), (1 - x) * rng.uniform(80, 255)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> int:
    args = parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    media = tempfile.mkdtemp(prefix="ragrec-bench-media-")
    os.environ["SHOP_DEMO_MEDIA_ROOT"] = media
    import django

    django.setup()
    from django.conf import settings
    from django.core.files.base import ContentFile
    from django.db import connection

    connection.settings_dict["TEST"]["NAME"] = "ragrec_bench"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        from django.test import override_settings

        encoders = {
            "minilm": {
                "BACKEND": "ragrec_django.ml.text.TransformerTextEncoder",
                "OPTIONS": {"device": args.device, "precision": args.precision, "batch_size": args.text_batch},
            },
            "clip": {
                "BACKEND": "ragrec_django.ml.clip.OpenClipEncoder",
                "OPTIONS": {
                    "model": args.clip_model,
                    "pretrained": None,
                    "device": args.device,
                    "precision": args.precision,
                    "batch_size": args.image_batch,
                },
            },
        }
        spaces = {"text": {"ENCODER": "minilm", "MODALITY": "text"}, "image": {"ENCODER": "clip", "MODALITY": "image"}}
        ragrec = {**settings.RAGREC, "ENCODERS": encoders, "SPACES": spaces, "AUTO_ENCODE": False}
        with override_settings(RAGREC=ragrec, MEDIA_ROOT=media):
            figures = run(args, ContentFile)
    finally:
        connection.creation.destroy_test_db("ragrec_bench", verbosity=0)
    import torch

    device = "cuda: %s" % torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    machine = "%s, %d cores, %s" % (platform.processor() or platform.machine(), os.cpu_count(), device)
    print("\nmachine: %s; torch %s" % (machine, torch.__version__))
    print("%-12s %8s %12s" % ("case", "n", "items/s"))
    for name, (n, rate) in figures.items():
        print("%-12s %8d %12.1f" % (name, n, rate))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "args": vars(args), "figures": figures}, indent=2))
    return 0


def run(args, ContentFile) -> dict:
    import torch

    from ragrec_django import registry
    from ragrec_django.services import encoding
    from shop_demo.catalog.models import Category, Product

    rng = np.random.default_rng(0)
    category = Category.objects.create(name="Bench", slug="bench")
    n = max(args.texts, args.images)
    Product.objects.bulk_create(
        Product(
            title="Benchmark product %d" % i,
            slug="bench-%d" % i,
            description=("A sturdy everyday item with a matte finish, number %d. " % i) * 6,
            category=category,
            price="10.00",
            stock=1,
        )
        for i in range(n)
    )
    pks = list(Product.objects.order_by("pk").values_list("pk", flat=True))
    for product in Product.objects.filter(pk__in=pks[: args.images]):
        product.image.save("bench-%d.jpg" % product.pk, ContentFile(jpeg(rng, args.image_size)), save=True)

    figures = {}
    text_encoder = registry.get_encoder("minilm")
    texts = [Product.objects.get(pk=pk).title for pk in pks[:8]]
    text_encoder.encode_texts(texts)  # warm-up: load weights
    report, seconds = timed(lambda: encoding.encode_items("text", pks[: args.texts]))
    figures["text e2e"] = (report.encoded, report.encoded / seconds)
    from ragrec_django.adapters import get_adapter

    adapter = get_adapter()
    all_texts = [adapter.get_text(p) for p in adapter.get_queryset().filter(pk__in=pks[: args.texts])]
    _, seconds = timed(lambda: text_encoder.encode_texts(all_texts))
    figures["text model"] = (len(all_texts), len(all_texts) / seconds)

    if args.images:
        clip = registry.get_encoder("clip")
        loaded = clip.load()
        warm = [jpeg(rng, args.image_size) for _ in range(4)]
        clip.encode_images(warm)
        report, seconds = timed(lambda: encoding.encode_items("image", pks[: args.images]))
        figures["image e2e"] = (report.encoded, report.encoded / seconds)
        size = loaded.model.visual.image_size
        size = size if isinstance(size, int) else size[0]
        batch = torch.randn(min(args.images, args.image_batch), 3, size, size, device=loaded.device)

        def model_only():
            with torch.inference_mode(), clip._autocast(loaded.device):
                done = 0
                while done < args.images:
                    loaded.model.encode_image(batch)
                    done += len(batch)
            if loaded.device.type == "cuda":
                torch.cuda.synchronize()
            return done

        done, seconds = timed(model_only)
        figures["image model"] = (done, done / seconds)
    return figures


if __name__ == "__main__":
    sys.exit(main())
