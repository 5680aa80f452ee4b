"""Per-query latency of text-query encoding for search, on one CPU (or GPU) process.

    python benchmarks/query_encoding.py [--queries 300] [--threads 1,2] [--precision fp32,bf16] [--checkpoint DIR]
                                        [--device cpu] [--json out.json]

A search query is encoded for the "text" space (MiniLM) and for the "image"
space (the text side of its CLIP encoder). Measured, one query at a time,
every query string distinct (the services' query-embedding cache would answer
repeats), after a warm-up:

* ``text space (MiniLM)``: ``TransformerTextEncoder.encode_texts([q])``, bundled all-MiniLM-L6-v2;
* ``image space, open_clip ViT-B-32 text tower``: ``OpenClipEncoder.encode_texts([q])`` with random
  weights (``pretrained=None``: the cost of the pretrained model, which cannot be downloaded here);
  its tokenizer pads every query to 77 tokens;
* ``image space, LiT (MiniLM + projection), cold``: ``LockedTextClipEncoder.encode_texts([q])`` for a
  query the text space has not encoded: one MiniLM forward pass + the projection;
* ``image space, LiT, after the text space``: the same right after the text space encoded the query,
  as ``services.recommend.search`` does: both encoders share the loaded MiniLM and its memo of single
  queries, so only the projection runs;
* ``search query, both spaces``: text space + image space for one query, with each image encoder.

With several ``--precision`` values every figure is taken for each, and the lower precisions'
query vectors are compared with fp32's (cosine; for MiniLM also how much of the top 10 among 3,000
phrases stays the same). bf16 on the CPU keeps the weights in bf16 (see ``ml.devices.weights_precision``).

Also checks that the LiT encoder and the text space share one loaded MiniLM (one copy in memory).
``--checkpoint`` is a LiT checkpoint folder (default: the demo's, var/models/demo-lit, else a
throwaway one trained for one step: the text side's cost does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Phrases the MiniLM top-10 agreement between precisions is measured against.
AGREEMENT_CORPUS = 3000

WORDS = {
    "colour": "red orange yellow green teal blue navy purple pink brown black white grey beige".split(),
    "material": "ceramic linen cotton leather suede canvas oak walnut brass steel glass wool nylon".split(),
    "noun": "mug t-shirt sneakers backpack lamp chair watch bottle hat plant umbrella headphones".split(),
    "extra": "for the office|with a wide brim|size m|under 40 pounds|for a gift|waterproof|large|small".split("|"),
}


def make_queries(count: int, seed: int = 0) -> list[str]:
    """Distinct shopper-like queries of 2 to 8 words (at most about 21,000 exist)."""
    if count > 18_000:
        raise ValueError("Ask for at most 18,000 distinct queries.")
    rng = random.Random(seed)
    queries, seen = [], set()
    while len(queries) < count:
        parts = [rng.choice(WORDS["colour"])]
        if rng.random() < 0.5:
            parts.append(rng.choice(WORDS["material"]))
        parts.append(rng.choice(WORDS["noun"]))
        if rng.random() < 0.4:
            parts.append(rng.choice(WORDS["extra"]))
        query = " ".join(parts)
        if query not in seen:
            seen.add(query)
            queries.append(query)
    return queries


def latency(function, queries: list[str], warm: list[str]) -> dict:
    for query in warm:
        function(query)
    times = []
    for query in queries:
        start = time.perf_counter()
        function(query)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 3),
        "p90_ms": round(times[int(0.9 * (len(times) - 1))], 3),
        "mean_ms": round(statistics.fmean(times), 3),
        "n": len(times),
    }


def precision_agreement(encoders: dict, precisions: list[str], corpus: list[str], queries: list[str]) -> dict:
    """How far each lower precision's query vectors are from fp32's: cosine, and for MiniLM (real
    weights) the share of the fp32 query's top 10 among ``corpus`` that the other query also finds."""
    import numpy as np

    if "fp32" not in encoders:
        return {}
    reference = encoders["fp32"]
    documents = reference["text"].encode_texts(corpus)
    agreement = {}
    for precision in precisions:
        if precision == "fp32":
            continue
        row = {}
        for name, label in (("text", "MiniLM"), ("vit", "ViT-B-32 text tower (random weights)")):
            if reference[name] is None:
                continue
            full = reference[name].encode_texts(queries)
            low = encoders[precision][name].encode_texts(queries)
            cosines = (full * low).sum(axis=1)
            row[label] = {
                "cosine_min": round(float(cosines.min()), 6),
                "cosine_median": round(float(np.median(cosines)), 6),
            }
            if name == "text":
                top = lambda vectors: np.argsort(-(vectors @ documents.T), axis=1)[:, :10]  # noqa: E731
                overlap = [len(set(a) & set(b)) / 10 for a, b in zip(top(full), top(low))]
                row[label]["top10_overlap_mean"] = round(float(np.mean(overlap)), 4)
                row[label]["corpus"] = len(corpus)
        agreement[precision] = row
    return agreement


def lit_checkpoint(path: str | None) -> tuple[str, str]:
    if path:
        return path, "given"
    from shop_demo.democlip import demo_checkpoint

    demo = demo_checkpoint(ROOT / "var" / "models" / "demo-lit")
    if demo is not None:
        return str(demo), "the demo's"
    from ragrec_django.ml.finetune import train_clip
    from tests.finetune.helpers import shape_pairs

    out = tempfile.mkdtemp(prefix="query-encoding-lit-")
    result = train_clip(
        shape_pairs(styles=1),
        out,
        lock_text="minilm",
        from_config="small",
        epochs=1,
        max_steps=1,
        batch_size=16,
        device="cpu",
        progress=False,
        plot=False,
    )
    return result.checkpoint, "throwaway (1 step)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300, help="Timed queries per measurement (distinct strings).")
    parser.add_argument("--warm", type=int, default=30)
    parser.add_argument("--threads", default="1,2", help="torch intra-op thread counts to measure.")
    parser.add_argument("--checkpoint", default=None, help="LiT checkpoint folder.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", help="Comma-separated encoder precisions (fp32,bf16).")
    parser.add_argument("--skip-open-clip", action="store_true", help="Do not measure the ViT-B-32 text tower.")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    from ragrec_django.ml.clip import OpenClipEncoder
    from ragrec_django.ml.loading import loaded_keys
    from ragrec_django.ml.locked_clip import LockedTextClipEncoder
    from ragrec_django.ml.testing import make_random_clip_checkpoint
    from ragrec_django.ml.text import TransformerTextEncoder

    checkpoint, origin = lit_checkpoint(args.checkpoint)
    precisions = [p for p in args.precision.split(",") if p]
    # Random ViT-B-32 weights from one file, so that every precision's encoder loads the same model.
    vit_weights = (
        None
        if args.skip_open_clip
        else make_random_clip_checkpoint("ViT-B-32", tempfile.mkdtemp(prefix="query-encoding-vit-"))
    )
    encoders = {
        precision: {
            "text": TransformerTextEncoder(device=args.device, precision=precision),
            "lit": LockedTextClipEncoder(checkpoint=checkpoint, device=args.device, precision=precision),
            "vit": None
            if vit_weights is None
            else OpenClipEncoder(**vit_weights, device=args.device, precision=precision),
        }
        for precision in precisions
    }
    first = encoders[precisions[0]]
    first["text"].load(), first["lit"].load(), first["lit"].text_encoder.load()
    shared = first["lit"].text_encoder.load() is first["text"].load()
    minilm_copies = sum(1 for key in loaded_keys() if key[0] == "transformers")

    # Every measurement gets its own distinct queries (the LiT/MiniLM memo must not answer from an earlier one).
    thread_counts = [int(t) for t in args.threads.split(",") if t]
    pool = iter(
        make_queries(
            len(precisions) * len(thread_counts) * 6 * (args.queries + args.warm) + AGREEMENT_CORPUS + args.queries,
            seed=1,
        )
    )

    def fresh(n: int) -> list[str]:
        return [next(pool) for _ in range(n)]

    def both(text, image_encoder):
        def run(query):
            text.encode_texts([query])
            image_encoder.encode_texts([query])

        return run

    results = {}
    for precision in precisions:
        text, lit, vit = encoders[precision]["text"], encoders[precision]["lit"], encoders[precision]["vit"]
        for threads in thread_counts:
            torch.set_num_threads(threads)
            row = {}
            row["text space (MiniLM)"] = latency(
                lambda q: text.encode_texts([q]), fresh(args.queries), fresh(args.warm)
            )
            if vit is not None:
                row["image space, open_clip ViT-B-32 text tower"] = latency(
                    lambda q: vit.encode_texts([q]), fresh(args.queries), fresh(args.warm)
                )
            row["image space, LiT (MiniLM + projection), cold"] = latency(
                lambda q: lit.encode_texts([q]), fresh(args.queries), fresh(args.warm)
            )
            queries = fresh(args.queries)
            for query in queries:
                text.encode_texts([query])
            row["image space, LiT, after the text space"] = latency(lambda q: lit.encode_texts([q]), queries, [])
            if vit is not None:
                row["search query, both spaces: MiniLM + ViT-B-32"] = latency(
                    both(text, vit), fresh(args.queries), fresh(args.warm)
                )
            row["search query, both spaces: MiniLM + LiT"] = latency(
                both(text, lit), fresh(args.queries), fresh(args.warm)
            )
            results["precision=%s threads=%d" % (precision, threads)] = row
    agreement = precision_agreement(encoders, precisions, fresh(AGREEMENT_CORPUS), fresh(args.queries))

    machine = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "device": args.device,
        "checkpoint": "%s (%s)" % (checkpoint, origin),
        "lit_shares_the_text_space_minilm": shared,
        "minilm_copies_loaded": minilm_copies,
    }
    if agreement:
        machine["agreement_with_fp32"] = agreement
    print(json.dumps(machine, indent=2))
    for label, row in results.items():
        print("\n%s" % label)
        print("  %-48s %10s %10s %10s" % ("", "median ms", "p90 ms", "mean ms"))
        for name, figures in row.items():
            print("  %-48s %10.2f %10.2f %10.2f" % (name, figures["median_ms"], figures["p90_ms"], figures["mean_ms"]))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
