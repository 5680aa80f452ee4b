"""The CPU image data path: JPEG bytes -> model input, and bytes -> vectors, before and after reduced-scale decoding.

    python benchmarks/decode.py [--core 1] [--rounds 5] [--small 48] [--large 8] [--workers 1,2] [--vit]
                                [--parts per-core,end-to-end,tolerance] [--json docs/benchmarks/decode.json]

Sources are photo-like JPEGs (``ml.testing.photo_jpeg``: "dead leaves" scenes with
texture, noise and lens blur, quality 90, 4:2:0) at 800x800 and 3000x2000, all
different, written once to a temporary folder; the tolerance part adds the real
photographs installed packages ship (``ml.testing.installed_sample_photos``).
Decode variants, switched per job (``jpeg_draft_size`` replaced, in threads and
decode processes alike):

* ``full``: no DCT scaling: the whole image is decoded, then resized (the path
  before reduced-scale decoding, and the reference for the tolerance);
* ``2x``: DCT scaling that keeps at least twice the model input (the path as of
  commit 4055bd2: 1/2 or more only for JPEGs at least four times the input);
* ``min``: the smallest DCT scale that still covers the resized size (now).

The machine this was written on is shared and busy, so every part measures its
cases in interleaved rounds (each round runs every case once) and reports the
median round, with the spread; each part runs in a fresh Python process.

* ``per-core``: ``load_pixels`` (decode, resize, centre crop to 224x224) in one
  process pinned to one core (``os.sched_setaffinity``): images/s by wall clock
  and by the process's CPU time (what one core delivers, less exposed to the
  other processes sharing that core);
* ``end-to-end``: ``OpenClipEncoder.encode_images`` on JPEG bytes (decode one batch
  ahead in ``--workers`` threads or processes, then the image tower), with the tiny
  CLIP (32x32 input, negligible model time: the data path alone) and, with
  ``--vit``, random ViT-B-32 weights (224x224), after a warm-up call that loads the
  model and starts the process pools (its time is reported);
* ``tolerance``: the cosine of each photo's embedding decoded at reduced scale to
  its full-size decode's, with the tiny CLIP and random ViT-B-32 weights, beside the
  cosine of the nearest *other* photo (random weights put all photos close, so the
  cosine is only meaningful next to that), and the mean pixel difference at the
  model's input size.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ragrec_django.ml import images  # noqa: E402

SIZES = {"800x800": (800, 800), "3000x2000": (3000, 2000)}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DRAFT_SIZES = {
    "full": lambda preprocessing, width, height: (width, height),
    "2x": lambda preprocessing, width, height: (2 * preprocessing.size[1], 2 * preprocessing.size[0]),
    "min": images.jpeg_draft_size,
}
PREPARE_ON_CPU = images._prepare_on_cpu


def use_variant(variant: str) -> None:
    """Make ``load_pixels`` ask ``Image.draft`` for ``variant``'s size, in this process."""
    images.jpeg_draft_size = DRAFT_SIZES[variant]


def prepare_with(variant: str, data, policy, preprocessing):
    """``images._prepare_on_cpu`` under ``variant``; picklable, so decode processes run it too."""
    use_variant(variant)
    return PREPARE_ON_CPU(data, policy, preprocessing)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", type=int, default=1, help="CPU the per-core part is pinned to.")
    parser.add_argument("--rounds", type=int, default=5, help="Interleaved rounds per part (the median is reported).")
    parser.add_argument("--small", type=int, default=48, help="800x800 JPEGs (all different).")
    parser.add_argument("--large", type=int, default=8, help="3000x2000 JPEGs (all different).")
    parser.add_argument("--workers", default="1,2", help="Decode worker counts, end to end.")
    parser.add_argument("--vit", action="store_true", help="Also end to end with random ViT-B-32 weights.")
    parser.add_argument("--parts", default="per-core,end-to-end,tolerance")
    parser.add_argument("--json", help="Also write the figures to this file.")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one part, in a fresh process
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.measure:
        spec = json.loads(args.measure)
        part = {"per-core": measure_per_core, "end-to-end": measure_end_to_end, "tolerance": measure_tolerance}
        print(json.dumps(part[spec["part"]](spec)))
        return 0
    parts = args.parts.split(",")
    figures: dict = {"machine": machine(), "command": " ".join(["python"] + sys.argv)}
    with tempfile.TemporaryDirectory(prefix="ragrec-bench-decode-") as folder:
        sources = write_sources(Path(folder), args)
        common = {"sources": sources, "rounds": args.rounds}
        if "per-core" in parts:
            figures["per_core"] = run_fresh({"part": "per-core", "core": args.core, **common})
            print_per_core(figures["per_core"], args.core)
        if "end-to-end" in parts:
            models = {"tiny": {"tiny": True}}
            if args.vit:
                models["ViT-B-32"] = {"tiny": False}
            workers = [int(count) for count in args.workers.split(",")]
            figures["end_to_end"] = {
                model: run_fresh({"part": "end-to-end", "workers": workers, "folder": folder, **options, **common})
                for model, options in models.items()
            }
            print_end_to_end(figures["end_to_end"])
        if "tolerance" in parts:
            figures["tolerance"] = run_fresh({"part": "tolerance", **common})
            print_tolerance(figures["tolerance"])
    figures["machine"]["load_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def machine() -> dict:
    import PIL
    import torch
    from PIL import features

    return {
        "cpu": _lscpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "load_before": os.getloadavg(),
    }


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def write_sources(folder: Path, args) -> dict[str, list[str]]:
    from ragrec_django.ml.testing import photo_jpeg

    counts = {"800x800": args.small, "3000x2000": args.large}
    sources = {}
    for first_seed, (name, (width, height)) in zip((0, 1000), SIZES.items(), strict=True):
        paths = []
        for seed in range(first_seed, first_seed + counts[name]):
            path = folder / ("%s-%d.jpg" % (name, seed))
            path.write_bytes(photo_jpeg(width, height, seed=seed))
            paths.append(str(path))
        sources[name] = paths
    return sources


def run_fresh(spec: dict) -> dict:
    """Run one part in a new Python process; return its figures."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--measure", json.dumps(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError("part %r failed:\n%s" % (spec["part"], done.stderr[-4000:]))
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(rates: list[float]) -> dict:
    return {"median": round(statistics.median(rates), 1), "min": round(min(rates), 1), "max": round(max(rates), 1)}


def measure_per_core(spec: dict) -> dict:
    """Images/s of ``load_pixels`` per source and variant on one core, the variants interleaved in rounds."""
    os.sched_setaffinity(0, {spec["core"]})
    policy = images.ImagePolicy.build()
    preprocessing = images.Preprocessing.from_open_clip({"size": 224, "mean": CLIP_MEAN, "std": CLIP_STD})
    figures = {}
    for name, paths in spec["sources"].items():
        blobs = [Path(path).read_bytes() for path in paths]
        wall_rates, cpu_rates = {v: [] for v in DRAFT_SIZES}, {v: [] for v in DRAFT_SIZES}
        for round_ in range(spec["rounds"] + 1):
            for variant in DRAFT_SIZES:
                use_variant(variant)
                wall, cpu = time.perf_counter(), time.process_time()
                for data in blobs:
                    images.load_pixels(data, policy, preprocessing)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                if round_:  # round 0 warms up
                    wall_rates[variant].append(len(blobs) / wall)
                    cpu_rates[variant].append(len(blobs) / cpu)
        figures[name] = {
            variant: {
                "decoded_size": _decoded_size(blobs[0], preprocessing, variant),
                "images_per_round": len(blobs),
                "images_per_s_cpu": summary(cpu_rates[variant]),
                "images_per_s_wall": summary(wall_rates[variant]),
            }
            for variant in DRAFT_SIZES
        }
    return figures


def measure_end_to_end(spec: dict) -> dict:
    """Images/s of ``encode_images`` for each variant, pool and worker count, interleaved in rounds."""
    import torch

    from ragrec_django.ml.clip import OpenClipEncoder
    from ragrec_django.ml.testing import make_random_clip_checkpoint, make_tiny_clip_checkpoint

    folder = Path(spec["folder"])
    if spec["tiny"]:
        options, counts = make_tiny_clip_checkpoint(folder / "tiny", seed=0), {"800x800": 128, "3000x2000": 32}
    else:
        options, counts = (
            make_random_clip_checkpoint("ViT-B-32", folder / "vit", seed=0),
            {"800x800": 32, "3000x2000": 16},
        )
    cases = [(v, pool, w) for w in spec["workers"] for v in ("full", "min") for pool in ("threads", "processes")]
    encoders = {
        (pool, workers): OpenClipEncoder(
            **options, device="cpu", batch_size=32, decode_workers=workers, decode_pool=pool
        )
        for _, pool, workers in cases
    }
    sources = {name: [Path(path).read_bytes() for path in paths] for name, paths in spec["sources"].items()}
    start = time.perf_counter()
    for encoder in encoders.values():  # loads the model (once) and starts each process pool
        encoder.encode_images(sources["800x800"][:4])
    warm_up = time.perf_counter() - start
    rates = {(name, *case): [] for name in sources for case in cases}
    for _ in range(spec["rounds"]):
        for name, blobs in sources.items():
            batch = [blobs[i % len(blobs)] for i in range(counts[name])]
            for variant, pool, workers in cases:
                images._prepare_on_cpu = functools.partial(prepare_with, variant)
                start = time.perf_counter()
                result = encoders[pool, workers].encode_images(batch)
                rates[name, variant, pool, workers].append(len(batch) / (time.perf_counter() - start))
                assert not result.errors, result.errors
    images._prepare_on_cpu = PREPARE_ON_CPU
    return {
        "warm_up_s": round(warm_up, 2),
        "torch_threads": torch.get_num_threads(),
        "images_per_call": counts,
        "cases": [
            {"source": name, "path": variant, "pool": pool, "workers": workers, "images_per_s": summary(rate)}
            for (name, variant, pool, workers), rate in rates.items()
        ],
    }


def measure_tolerance(spec: dict) -> dict:
    """Cosines of reduced-scale against full-size decodes (the variant is switched in this process)."""
    import numpy as np
    import torch

    from ragrec_django.ml.clip import OpenClipEncoder
    from ragrec_django.ml.testing import installed_sample_photos, make_tiny_clip_checkpoint

    photos = {os.path.basename(path): Path(path).read_bytes() for path in installed_sample_photos()}
    for name, paths in spec["sources"].items():
        for path in paths[:3]:
            photos["scene %s #%s" % (name, path.rsplit("-", 1)[1].split(".")[0])] = Path(path).read_bytes()
    policy = images.ImagePolicy.build()
    figures = {"photos": list(photos), "models": {}}
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        encoders = {
            "tiny CLIP (32 px)": OpenClipEncoder(**make_tiny_clip_checkpoint(folder), device="cpu"),
            "ViT-B-32, random weights (224 px)": OpenClipEncoder(model="ViT-B-32", pretrained=None, device="cpu"),
        }
        for label, encoder in encoders.items():
            use_variant("min")
            reduced = encoder.encode_images(list(photos.values()), batch_size=8).vectors
            preprocessing = encoder.load().preprocessing
            pixels = [images.load_pixels(data, policy, preprocessing) for data in photos.values()]
            use_variant("full")
            full = encoder.encode_images(list(photos.values()), batch_size=8).vectors
            whole = [images.load_pixels(data, policy, preprocessing) for data in photos.values()]
            use_variant("min")
            same = np.sum(reduced * full, axis=1)
            others = full @ full.T
            np.fill_diagonal(others, -1)
            figures["models"][label] = {
                name: {
                    "decoded_size": _decoded_size(data, preprocessing, "min"),
                    "cosine_reduced_vs_full": round(float(cos), 6),
                    "cosine_nearest_other_photo": round(float(other), 6),
                    "mean_abs_pixel_difference": round(float(np.abs(a.astype(int) - b).mean()), 3),
                }
                for name, data, cos, other, a, b in zip(
                    photos, photos.values(), same, others.max(axis=1), pixels, whole, strict=True
                )
            }
    return figures


def _decoded_size(data: bytes, preprocessing, variant: str) -> list[int]:
    from PIL import Image

    probe = Image.open(io.BytesIO(data))
    if probe.format == "JPEG":
        probe.draft(None, DRAFT_SIZES[variant](preprocessing, *probe.size))
    return list(probe.size)


def print_per_core(figures: dict, core: int) -> None:
    print("\nper core (pinned to CPU %d): load_pixels to 224x224, images/s, median round [min-max]" % core)
    print("%-10s %-5s %-10s %22s %22s" % ("source", "path", "decoded", "CPU time", "wall clock"))
    for name, variants in figures.items():
        for variant, row in variants.items():
            cpu, wall = row["images_per_s_cpu"], row["images_per_s_wall"]
            print(
                "%-10s %-5s %-10s %8.1f [%5.1f-%5.1f] %8.1f [%5.1f-%5.1f]"
                % (
                    name,
                    variant,
                    "x".join(map(str, row["decoded_size"])),
                    cpu["median"],
                    cpu["min"],
                    cpu["max"],
                    wall["median"],
                    wall["min"],
                    wall["max"],
                )
            )


def print_end_to_end(figures: dict) -> None:
    for model, part in figures.items():
        print(
            "\nend to end, %s CLIP: encode_images(JPEG bytes) -> vectors, images/s, median round [min-max]"
            " (warm-up %.1f s, torch threads %d)" % (model, part["warm_up_s"], part["torch_threads"])
        )
        print("%-10s %-5s %-9s %7s %22s" % ("source", "path", "pool", "workers", "images/s"))
        for row in part["cases"]:
            rate = row["images_per_s"]
            print(
                "%-10s %-5s %-9s %7d %8.1f [%5.1f-%5.1f]"
                % (row["source"], row["path"], row["pool"], row["workers"], rate["median"], rate["min"], rate["max"])
            )


def print_tolerance(figures: dict) -> None:
    for label, rows in figures["models"].items():
        print("\ntolerance, %s: reduced-scale vs full-size decode" % label)
        print("%-24s %-10s %10s %14s %10s" % ("photo", "decoded", "cosine", "nearest other", "mean |d|"))
        for name, row in rows.items():
            print(
                "%-24s %-10s %10.6f %14.6f %10.3f"
                % (
                    name,
                    "x".join(map(str, row["decoded_size"])),
                    row["cosine_reduced_vs_full"],
                    row["cosine_nearest_other_photo"],
                    row["mean_abs_pixel_difference"],
                )
            )


if __name__ == "__main__":
    sys.exit(main())
