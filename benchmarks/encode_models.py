"""Model-only encoding throughput of the ragrec ML layer.

Measures, after one warm-up batch:

* ``minilm``: TransformerTextEncoder on texts of exactly ``--tokens`` tokens;
* ``minilm-plain``: the same model in a plain transformers loop (tokenize a
  batch, forward, mean-pool, normalise) - the reference ``minilm`` must match;
* ``minilm-mixed``: TransformerTextEncoder on texts of 8..``--tokens`` tokens
  (where its length-sorted batching pays off);
* ``clip-image``: OpenClipEncoder image tower on random weights
  (``pretrained=None``) for already-preprocessed pixels (compute only);
* ``clip-image-jpeg``: OpenClipEncoder.encode_images on JPEG bytes (decode,
  preprocess and compute).

    python benchmarks/encode_models.py --device cpu --n-texts 256 --n-images 64
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ragrec_django.ml.clip import OpenClipEncoder  # noqa: E402
from ragrec_django.ml.devices import resolve_device, resolve_dtype  # noqa: E402
from ragrec_django.ml.testing import make_random_clip_checkpoint  # noqa: E402
from ragrec_django.ml.text import TransformerTextEncoder  # noqa: E402

WORDS = (
    "cotton shirt linen jacket wool sweater denim jeans leather boots canvas sneakers silk scarf steel kettle "
    "ceramic mug oak table walnut chair velvet sofa brass lamp glass vase bamboo tray copper pan cast iron "
    "skillet waterproof breathable slim fit relaxed organic recycled handmade vintage modern classic red blue "
    "green black white navy beige grey striped checked floral plain soft warm light durable machine washable"
).split()


def make_texts(tokenizer, count: int, min_tokens: int, max_tokens: int, seed: int = 0) -> list[str]:
    """Random product-like texts whose token counts (with [CLS]/[SEP]) lie in [min_tokens, max_tokens]."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        target = rng.randint(min_tokens, max_tokens)
        words = [rng.choice(WORDS) for _ in range(target)]
        ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"][: target - 2]
        texts.append(tokenizer.decode(ids))
    return texts


def timed(function, repeats: int) -> float:
    """Best wall time of ``repeats`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def plain_minilm_loop(tokenizer, model, texts, batch_size, max_length, device):
    """Reference: tokenize a batch, forward, mean-pool, normalise - no sorting, no extras."""
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            tokens = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            hidden = model(**tokens).last_hidden_state.float()
            mask = tokens["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            outputs.append(F.normalize(pooled, dim=-1).cpu())
    return torch.cat(outputs).numpy()


def random_jpegs(count: int, size: tuple[int, int], seed: int = 0) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(count):
        # Smooth random colour fields compress like photos, unlike white noise.
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        blobs.append(buffer.getvalue())
    return blobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="auto, fp32, fp16 or bf16")
    parser.add_argument("--n-texts", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per text, [CLS]/[SEP] included")
    parser.add_argument("--text-batch", type=int, default=128)
    parser.add_argument("--n-images", type=int, default=64)
    parser.add_argument("--image-batch", type=int, default=32)
    parser.add_argument("--image-size", default="800x600", help="JPEG size WxH for clip-image-jpeg")
    parser.add_argument("--clip-model", default="ViT-B-32")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per case; the best is kept")
    parser.add_argument("--only", default="minilm,minilm-plain,minilm-mixed,clip-image,clip-image-jpeg")
    parser.add_argument("--json", dest="json_path", help="also write the results to this JSON file")
    args = parser.parse_args()

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.precision, device)
    cases = set(args.only.split(","))
    rows = []
    agreement = None

    def record(case: str, count: int, seconds: float, unit: str) -> None:
        rows.append(
            {
                "case": case,
                "n": count,
                "seconds": round(seconds, 3),
                "per_second": round(count / seconds, 1),
                "unit": unit,
            }
        )

    if cases & {"minilm", "minilm-plain", "minilm-mixed"}:
        encoder = TransformerTextEncoder(device=args.device, precision=args.precision, batch_size=args.text_batch)
        loaded = encoder.load()
        texts = make_texts(loaded.tokenizer, args.n_texts, args.tokens, args.tokens)
        encoder.encode_texts(texts[: args.text_batch])  # warm-up
        if "minilm" in cases:
            record("minilm", len(texts), timed(lambda: encoder.encode_texts(texts), args.repeats), "texts")
        if "minilm-plain" in cases:
            run = lambda: plain_minilm_loop(  # noqa: E731
                loaded.tokenizer, loaded.model, texts, args.text_batch, encoder.max_length, device
            )
            record("minilm-plain", len(texts), timed(run, args.repeats), "texts")
            sample = texts[: args.text_batch]
            reference = plain_minilm_loop(
                loaded.tokenizer, loaded.model, sample, args.text_batch, encoder.max_length, device
            )
            gap = np.abs(reference - encoder.encode_texts(sample)).max()
            print("minilm vs plain loop: max abs difference %.2e" % gap, file=sys.stderr)
        if "minilm-mixed" in cases:
            mixed = make_texts(loaded.tokenizer, args.n_texts, 8, args.tokens, seed=1)
            record("minilm-mixed", len(mixed), timed(lambda: encoder.encode_texts(mixed), args.repeats), "texts")

    if cases & {"clip-image", "clip-image-jpeg"}:
        # Random weights from one file: the fp32 reference below loads the same model.
        weights = make_random_clip_checkpoint(args.clip_model, tempfile.mkdtemp(prefix="encode-models-clip-"))
        clip = OpenClipEncoder(**weights, device=args.device, precision=args.precision, batch_size=args.image_batch)
        loaded = clip.load()
        height, width = loaded.preprocessing.size
        if "clip-image" in cases:
            pixels = torch.randn(args.n_images, 3, height, width, device=device)

            def compute():
                with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                    for start in range(0, args.n_images, args.image_batch):
                        loaded.model.encode_image(pixels[start : start + args.image_batch])

            compute()  # warm-up
            record("clip-image", args.n_images, timed(compute, args.repeats), "images")
        if "clip-image-jpeg" in cases:
            jpeg_w, jpeg_h = (int(v) for v in args.image_size.lower().split("x"))
            blobs = random_jpegs(args.n_images, (jpeg_w, jpeg_h))
            clip.encode_images(blobs[: args.image_batch])  # warm-up
            record("clip-image-jpeg", len(blobs), timed(lambda: clip.encode_images(blobs), args.repeats), "images")
            if dtype != torch.float32:
                reference = OpenClipEncoder(
                    **weights, device=args.device, precision="fp32", batch_size=args.image_batch
                )
                sample = blobs[: args.image_batch]
                cosines = (clip.encode_images(sample).vectors * reference.encode_images(sample).vectors).sum(axis=1)
                agreement = {
                    "images": len(sample),
                    "cosine_min": round(float(cosines.min()), 6),
                    "cosine_median": round(float(np.median(cosines)), 6),
                }
                print("clip-image-jpeg %s vs fp32 (same weights): %s" % (args.precision, agreement), file=sys.stderr)

    print("device=%s dtype=%s torch_threads=%d" % (device, str(dtype).replace("torch.", ""), torch.get_num_threads()))
    print("%-16s %6s %9s %10s" % ("case", "n", "seconds", "per second"))
    for row in rows:
        print("%-16s %6d %9.3f %10.1f %s/s" % (row["case"], row["n"], row["seconds"], row["per_second"], row["unit"]))
    if args.json_path:
        report = {"device": str(device), "dtype": str(dtype), "args": vars(args), "results": rows}
        if agreement:
            report["clip_image_agreement_with_fp32"] = agreement
        Path(args.json_path).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
