"""Personalised search offline on Online Retail: simulated queries, plain keyword search against the same results
re-ordered for the shopper (``ranking.personal_search``), paired.

    python benchmarks/personal_search.py --fit-model DIR [--test-model DIR] [--fit-shoppers N] [--test-shoppers N]
        [--items 2] [--json out.json]

Online Retail has no search log, so queries are simulated: for a held-out purchased item, a query of one or two
content words of its description (chosen at random, seeded), the shopper's events before the held-out basket as
the visitor. Plain search is keyword-only, in memory (BM25 over the descriptions' words, plurals folded; every
word must match, else any word; ties by item id): the hybrid search's keyword retriever stands in for it,
because the semantic retrievers need the MiniLM and CLIP encoders and the product texts encoded. Its first
``CANDIDATES`` results, scored as the service's reciprocal rank fusion scores a single list (1 / (60 + rank)),
are the candidate stage; personalised search re-orders them with ``rerank`` exactly as the service does.

* **Fitting the blend** (training period only): the evaluation's split applied to the training events once more
  (every shopper's last *training* basket held out, as ``learned_offline.py --split valid``), queries from
  those baskets, histories before them, and the "for you" model of ``--fit-model`` (``learned_offline.py --split
  valid --save-model DIR``: trained on the events before those baskets). ``fit_blend`` learns the weights.
* **Testing**: the evaluation's split (every shopper's last basket held out), queries from the held-out
  baskets, histories from all training events, the "for you" model of ``--test-model`` (default: the fitting
  one; ``learned_offline.py --split test --save-model DIR`` trains one on all training events, as a shop's
  nightly retraining would, the blend being kept).

Reported: recall@10 and MRR (over the 50 candidates; 0 when the item is not among them) of the purchased item,
plain and personalised, their paired difference with a standard error over shoppers (a shopper's queries
averaged first: they share a history), split by query length and by whether the shopper had bought the item
before; the blend's weights; the time personalisation adds per search (features, model, re-rank; in memory).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learned_offline  # noqa: E402  (sets up Django; the cached data set and split)

from ragrec_django.evaluation import runner  # noqa: E402
from ragrec_django.ml import ranker as trainer  # noqa: E402
from ragrec_django.ranking import learned  # noqa: E402
from ragrec_django.ranking import personal_search as blending  # noqa: E402
from ragrec_django.ranking.candidates import Candidate  # noqa: E402

RRF_K = 60.0
STOP = frozenset(
    "and the for with of in on to a an set box pack bag size small large mini big asst assorted design "
    "colour colours col".split()
)


def words(text: str) -> list[str]:
    """Lower-case words with plurals folded (a stand-in for PostgreSQL's English stemming)."""
    out = []
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if len(word) > 4 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


class KeywordIndex:
    """BM25 over product titles; a query's words must all match, else any of them."""

    def __init__(self, titles: dict[int, str], k1: float = 1.2, b: float = 0.75):
        self.ids = np.asarray(sorted(titles), dtype=np.int64)
        self.postings: dict[str, dict[int, int]] = defaultdict(dict)
        lengths = {}
        for item in self.ids.tolist():
            tokens = words(titles[item])
            lengths[item] = len(tokens)
            for token in tokens:
                self.postings[token][item] = self.postings[token].get(item, 0) + 1
        self.lengths = lengths
        self.mean_length = float(np.mean(list(lengths.values()))) if lengths else 1.0
        self.k1, self.b, self.n = k1, b, len(self.ids)

    def search(self, query: str, limit: int) -> list[int]:
        tokens = [t for t in dict.fromkeys(words(query)) if t in self.postings]
        if not tokens:
            return []
        sets = [set(self.postings[t]) for t in tokens]
        matched = set.intersection(*sets) or set.union(*sets)
        scores = {}
        for item in matched:
            total = 0.0
            for t in tokens:
                tf = self.postings[t].get(item, 0)
                if tf:
                    df = len(self.postings[t])
                    idf = math.log(1 + (self.n - df + 0.5) / (df + 0.5))
                    norm = tf + self.k1 * (1 - self.b + self.b * self.lengths[item] / self.mean_length)
                    total += idf * tf * (self.k1 + 1) / norm
            scores[item] = total
        return sorted(scores, key=lambda item: (-scores[item], item))[:limit]


def query_for(title: str, rng: random.Random) -> tuple[str, int]:
    """One or two content words of ``title`` (in their order), and how many."""
    content = [w for w in dict.fromkeys(re.findall(r"[a-z]+", title.lower())) if len(w) >= 3 and w not in STOP]
    if not content:
        return "", 0
    n = min(len(content), rng.choice((1, 2)))
    picked = sorted(rng.sample(range(len(content)), n))
    return " ".join(content[i] for i in picked), n


def personal_rows(log, model, visitor: str, at: float, head: list[int]) -> np.ndarray:
    """``personal_features`` of ``head`` for the visitor, as ``services.personal_search`` computes them."""
    candidates, history, signals = log.candidates_at(visitor, at, factors=model.factors, shown=head)
    features = learned.feature_matrix(candidates, history, signals)
    scores = model.predict(learned.serving_matrix(features, model.features))
    return blending.personal_features(scores, features)


def queries(split, ids, titles, shoppers, items_per_shopper, seed):
    """``(shopper, target item id, query, words, bought before)`` for a sample of the split's shoppers."""
    rng = random.Random(seed)
    visitors = sorted(split.test)
    if shoppers and shoppers < len(visitors):
        visitors = sorted(rng.sample(visitors, shoppers))
    out = []
    for visitor in visitors:
        basket = sorted({ids[item] for item in split.test[visitor].items if item in ids})
        bought = {ids[item] for item in split.bought(visitor) if item in ids}
        for item in rng.sample(basket, min(items_per_shopper, len(basket))):
            text, n = query_for(titles[item], rng)
            if text:
                out.append((visitor, item, text, n, item in bought))
    return out


def run(split, products, model, index, titles, ids, args, seed, blend=None):
    """Per query: the candidate stage, and (with ``blend``) both ranks of the target; without, fitting rows."""
    log, _, end = learned_offline.event_log(products, split.train)
    rows, results, timings = [], [], []
    chosen = queries(split, ids, titles, args.fit_shoppers if blend is None else args.test_shoppers, args.items, seed)
    for number, (visitor, target, text, n, before) in enumerate(chosen, start=1):
        head = index.search(text, blending.CANDIDATES)
        key = learned_offline.log_key(visitor)
        if blend is None:
            if target in head and len(head) > 1:
                personal = personal_rows(log, model, key, end, head)
                rows.append((np.column_stack([blending.relevance_features(len(head)), personal]), head.index(target)))
        else:
            plain = head.index(target) if target in head else None
            personal_rank = plain
            if len(head) > 1:
                started = time.perf_counter()
                personal = personal_rows(log, model, key, end, head)
                found = [Candidate(item, 1.0 / (RRF_K + r)) for r, item in enumerate(head, start=1)]
                order = [c.item_id for c in blending.rerank(found, personal, blend, bought=set()).candidates]
                timings.append(time.perf_counter() - started)
                personal_rank = order.index(target) if target in order else None
            results.append(
                {"visitor": visitor, "words": n, "before": before, "plain": plain, "personal": personal_rank}
            )
        if number % 500 == 0:
            print("  %d/%d queries" % (number, len(chosen)), flush=True)
    return rows, results, timings, len(chosen)


def metric(rank, name):
    if name == "recall@10":
        return float(rank is not None and rank < 10)
    return 1.0 / (rank + 1) if rank is not None else 0.0


def se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def summary(results) -> dict:
    """Means over shoppers (each shopper's queries averaged first) ± SE, plain and personalised, and paired."""
    per: dict[str, list] = defaultdict(list)
    for r in results:
        per[r["visitor"]].append(r)
    out = {"queries": len(results), "shoppers": len(per)}
    for name in ("recall@10", "mrr"):
        plain = np.asarray([np.mean([metric(r["plain"], name) for r in rs]) for rs in per.values()])
        personal = np.asarray([np.mean([metric(r["personal"], name) for r in rs]) for rs in per.values()])
        difference = personal - plain
        out[name] = {
            "plain": round(float(plain.mean()), 4) if len(plain) else None,
            "plain_se": round(se(plain), 4),
            "personal": round(float(personal.mean()), 4) if len(plain) else None,
            "personal_se": round(se(personal), 4),
            "paired_difference": round(float(difference.mean()), 4) if len(plain) else None,
            "paired_se": round(se(difference), 4),
            "shoppers_better": int((difference > 0).sum()),
            "shoppers_worse": int((difference < 0).sum()),
        }
    out["in_candidates"] = round(float(np.mean([r["plain"] is not None for r in results])), 4) if results else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit-model", required=True, help="A 'for you' artefact trained on the validation split.")
    parser.add_argument("--test-model", help="The 'for you' artefact scoring the test queries (default: --fit-model).")
    parser.add_argument("--fit-shoppers", type=int, default=1500)
    parser.add_argument("--test-shoppers", type=int, default=2000)
    parser.add_argument("--items", type=int, default=2, help="Queries per shopper (held-out items), at most.")
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--json", help="Write the report here.")
    parser.add_argument("--save-blend", help="Write the fitted blend's JSON here.")
    args = parser.parse_args()

    started = time.perf_counter()
    products, split = learned_offline.load()
    ids = {product.key: i + 1 for i, product in enumerate(products)}
    titles = {ids[p.key]: p.title for p in products}
    index = KeywordIndex(titles)
    fit_model = trainer.LearnedRanker.load(args.fit_model)
    test_model = trainer.LearnedRanker.load(args.test_model) if args.test_model else fit_model

    print("fitting the blend on the validation split (training period only)", flush=True)
    valid = runner.temporal_split(split.train)
    t = time.perf_counter()
    rows, _, _, asked = run(valid, products, fit_model, index, titles, ids, args, seed=1)
    blend = blending.fit_blend(rows, l2=args.l2)
    fit_s = time.perf_counter() - t
    blend.metadata.update({"fitted_on": "online-retail validation split", "for_you_model": fit_model.content_hash})
    print("  %d of %d queries had their item among the candidates; fitted in %.1f s" % (len(rows), asked, fit_s))
    if args.save_blend:
        Path(args.save_blend).write_text(blend.to_json())

    print("testing on the held-out baskets", flush=True)
    t = time.perf_counter()
    _, results, timings, _ = run(split, products, test_model, index, titles, ids, args, seed=2, blend=blend)
    test_s = time.perf_counter() - t
    ms = np.asarray(timings) * 1000
    report = {
        "plain_search": "keyword only, in memory: BM25 over the descriptions' words, plurals folded, all words "
        "else any word; first %d results" % blending.CANDIDATES,
        "fit": {"queries_asked": asked, "queries_used": len(rows), "seconds": round(fit_s, 1), "l2": args.l2},
        "blend_weights_standardised": dict(zip(blend.features, np.round(blend.weights, 4).tolist(), strict=True)),
        "blend_weights_per_unit": dict(
            zip(blend.features, np.round(blend.weights / blend.scale, 4).tolist(), strict=True)
        ),
        "for_you_models": {"fit": fit_model.content_hash[:12], "test": test_model.content_hash[:12]},
        "test": {
            "all": summary(results),
            "one_word": summary([r for r in results if r["words"] == 1]),
            "two_words": summary([r for r in results if r["words"] == 2]),
            "bought_before": summary([r for r in results if r["before"]]),
            "new_to_shopper": summary([r for r in results if not r["before"]]),
        },
        "added_ms_per_search": {
            "p50": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p95": round(float(np.percentile(ms, 95)), 2) if len(ms) else None,
            "mean": round(float(ms.mean()), 2) if len(ms) else None,
            "searches": len(ms),
        },
        "test_seconds": round(test_s, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
