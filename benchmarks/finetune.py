"""Fine-tuning CLIP on the demo catalogue: held-out retrieval before and after, and training throughput.

    python benchmarks/finetune.py [--products 1200] [--minutes 6] [--device cpu] [--lock-text minilm]
                                  [--from-config small|FILE.json] [--pretrained TAG_OR_FILE --model NAME]
                                  [--epochs 30] [--batch-size 128] [--lr 5e-4] [--out DIR] [--json out.json]

Builds the demo catalogue in memory (``shop_demo.catalog.seeding`` specs and
``imaging`` pictures, the same 256x256 JPEGs ``seed_catalog`` writes; no
database), pairs each picture with the product title, and runs
``ragrec_django.ml.finetune.train_clip`` with a time budget: by default
LiT-style (the bundled MiniLM frozen as the text tower, the small image tower
trained from random init). It prints held-out text->image and image->text
recall@1/5/10 and MRR before and after training, the training throughput
(pairs/s; augmentation, forward, backward and optimizer step, evaluations
excluded) and the machine.

It also prints the *attribute ceiling*: a demo picture shows only the
category and the colour of a product (line, material and size are in the
title, not in the picture), so several held-out products can look alike. The
ceiling is the expected recall/MRR of a model that recognises category and
colour perfectly and ranks look-alikes at random.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0, help="Split, initialisation and shuffling seed.")
    parser.add_argument("--catalogue-seed", type=int, default=42, help="seeding.generate seed (the demo uses 42).")
    parser.add_argument("--minutes", type=float, default=6.0, help="Training time budget (evaluations included).")
    parser.add_argument(
        "--epochs", type=int, default=30, help="Upper bound; the time budget or early stopping ends first."
    )
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--lock-text", choices=("minilm", "none"), default="minilm")
    parser.add_argument("--from-config", default=None, help='"small" (default without --pretrained) or a JSON file.')
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--out", default=None, help="Checkpoint directory (default: a temporary one, deleted).")
    parser.add_argument("--json", help="Also write the figures to this file.")
    return parser.parse_args()


def _render(job):
    from shop_demo.catalog import imaging

    shape, colour, style = job
    return imaging.render_jpeg(shape, colour, style)


def build_catalogue(count: int, seed: int):
    """(pairs, specs by key): the demo products and their pictures, in memory."""
    from ragrec_django.ml.finetune import Pair
    from shop_demo.catalog import seeding

    specs = seeding.generate(count, seed=seed)
    jobs = [(spec.category.shape, spec.colour, spec.style) for spec in specs]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        images = list(pool.map(_render, jobs, chunksize=32))
    pairs = [Pair(key=spec.slug, image=image, text=spec.title) for spec, image in zip(specs, images)]
    return pairs, {spec.slug: spec for spec in specs}


def attribute_ceiling(pairs, specs, holdout: float, seed: int) -> dict:
    """Expected held-out text->image figures of a perfect category+colour recogniser that breaks ties at random."""
    from ragrec_django.ml.finetune import split_by_product

    _, held = split_by_product(pairs, holdout, seed)
    looks = [(specs[p.key].category.slug, specs[p.key].colour) for p in {p.key: p for p in held}.values()]
    counts = Counter(looks)
    groups = np.array([counts[look] for look in looks], dtype=np.float64)
    result = {"recall@%d" % k: float(np.mean(np.minimum(k, groups) / groups)) for k in (1, 5, 10)}
    result["mrr"] = float(np.mean([sum(1.0 / r for r in range(1, int(g) + 1)) / g for g in groups]))
    result["distinct_looks"] = len(counts)
    return result


def machine() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def main() -> None:
    args = parse_args()
    from ragrec_django.ml.finetune import train_clip
    from ragrec_django.ml.finetune_report import metrics_table

    started = time.perf_counter()
    host = machine()
    pairs, specs = build_catalogue(args.products, args.catalogue_seed)
    render_seconds = time.perf_counter() - started
    ceiling = attribute_ceiling(pairs, specs, args.holdout, args.seed)
    out = args.out or tempfile.mkdtemp(prefix="ragrec-finetune-bench-")
    result = train_clip(
        pairs,
        out,
        lock_text=args.lock_text,
        from_config=args.from_config,
        pretrained=args.pretrained,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        holdout=args.holdout,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        patience=args.patience,
        max_seconds=args.minutes * 60,
        progress=False,
    )
    report = result.report
    total_seconds = time.perf_counter() - started

    print(
        "Demo catalogue: %d products (%d pictures rendered in %.1f s), titles as texts."
        % (len(pairs), len(pairs), render_seconds)
    )
    data = report["data"]
    print("Held out %d products; trained on %d pairs." % (data["holdout_products"], data["train_pairs"]))
    print()
    print(metrics_table(report))
    print()
    print(
        "Attribute ceiling (perfect category+colour, %d looks): text->image R@1 %.3f, R@5 %.3f, R@10 %.3f, MRR %.3f"
        % (ceiling["distinct_looks"], ceiling["recall@1"], ceiling["recall@5"], ceiling["recall@10"], ceiling["mrr"])
    )
    print(
        "Training: %d steps in %d epochs (best %d, stopped: %s), %.1f s of steps, %.1f pairs/s; %.0f s in all."
        % (
            report["steps"],
            report["epochs_run"],
            report["best_epoch"],
            report["stopped"],
            report["train_seconds"],
            report["train_pairs_per_second"],
            total_seconds,
        )
    )
    print("Machine: %s" % json.dumps(host))
    print("Checkpoint: %s" % result.checkpoint)
    if args.json:
        figures = {
            "args": vars(args),
            "machine": host,
            "render_seconds": round(render_seconds, 2),
            "total_seconds": round(total_seconds, 2),
            "attribute_ceiling": ceiling,
            "report": report,
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2, default=str)
    if not args.out:
        import shutil

        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
