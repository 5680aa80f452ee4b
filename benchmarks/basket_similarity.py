"""Which co-occurrence normalisation finds a basket's next items: "bought together" for every shopper's last
training basket, never showing it, scored as the evaluation scores it (``all`` and ``new``).

    python benchmarks/basket_similarity.py [--split valid|test]

Every similarity is computed from all the training orders and summed over the basket's items (no neighbour
list is cut unless the row says so): plain counts (orders holding both), cosine (counts / (sqrt(orders holding i * orders holding
j) + shrink)), asymmetric cosine, a lift-like division by the partner's orders, and counts where each order
weighs ``size ** -p`` (an order of 40 lines says less about one pair than an order of 3), alone and with the
cosine's denominator. Ties by popularity. ``--split valid`` (the default) holds out each shopper's last
*training* basket: the choice of ``ml.ranker.item_neighbours``' weighting was made there
(docs/evaluation.md, learned ranking, third round), and that of ``ml.ranker.basket_table`` (each order
also weighted by its age; shrink; partners kept per item: fourth round).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learned_offline  # noqa: E402  (sets Django up; the same cached split)

from ragrec_django.evaluation import runner  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("valid", "test"), default="valid")
    args = parser.parse_args()
    products, split = learned_offline.load()
    if args.split == "valid":
        split = runner.temporal_split(split.train)
    keys = [p.key for p in products]
    index = {key: i for i, key in enumerate(keys)}
    rows, columns, sizes, times = [], [], [], []
    for baskets in runner.baskets_of(split.train).values():
        for basket in baskets:
            held = sorted({index[item] for item in basket.items})
            rows += [len(sizes)] * len(held)
            columns += held
            sizes.append(len(held))
            times.append(basket.at.timestamp())
    rows, columns, sizes = np.asarray(rows), np.asarray(columns), np.asarray(sizes, dtype=np.float64)
    age_days = (max(times) + 1.0 - np.asarray(times)) / 86400.0  # from the end of training
    shape = (len(sizes), len(keys))
    incidence = csr_matrix((np.ones(len(rows)), (rows, columns)), shape=shape)

    def together(weights: np.ndarray) -> np.ndarray:
        counts = np.asarray((incidence.T @ csr_matrix((weights[rows], (rows, columns)), shape=shape)).todense())
        np.fill_diagonal(counts, 0)
        return counts

    held = np.asarray(incidence.sum(axis=0)).ravel()
    visitors = sorted(split.test)
    targets_all = {v: set(split.test[v].items) for v in visitors}
    bought = {v: split.bought(v) for v in visitors}
    targets_new = {v: t - bought[v] for v, t in targets_all.items() if t - bought[v]}
    last = {v: sorted({index[i] for i in split.history[v][-1].items}) if split.history.get(v) else [] for v in visitors}

    def cut(similarity: np.ndarray, n: int) -> np.ndarray:
        """Each row's ``n`` largest similarities, the rest 0 (the partners an item keeps)."""
        kept = np.zeros_like(similarity)
        best = np.argpartition(-similarity, n, axis=1)[:, :n]
        every = np.arange(similarity.shape[0])[:, None]
        kept[every, best] = np.maximum(similarity[every, best], 0)
        return kept

    def lists_of(similarity: np.ndarray, depth: int = 40) -> dict[str, list[str]]:
        out = {}
        for visitor in visitors:
            basket = last[visitor]
            scores = similarity[basket].sum(axis=0) if basket else np.zeros(len(keys))
            scores[basket] = -np.inf
            order = np.lexsort((-held, -scores))[:depth]
            out[visitor] = [keys[c] for c in order if scores[c] > 0]
        return out

    plain = together(np.ones(len(sizes)))
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.sqrt(np.outer(held, held))
        variants = {
            "plain counts": plain,
            "cosine, shrink 0": np.nan_to_num(plain / cosine),
            "cosine, shrink 5": plain / (cosine + 5),
            "cosine, shrink 20": plain / (cosine + 20),
            "asymmetric cosine 0.75, shrink 5": plain / (held[:, None] ** 0.75 * held[None, :] ** 0.25 + 5),
            "counts / (partner's orders ** 0.5 + 1)": plain / (np.sqrt(held[None, :]) + 1),
        }
        for p, name in ((0.5, "size ** -0.5"), (1.0, "size ** -1")):
            weighted = together(sizes**-p)
            variants["orders weighted %s" % name] = weighted
            variants["orders weighted %s, cosine shrink 5" % name] = weighted / (cosine + 5)
        # fourth round: each order also weighted by its age, 0.5 ** (age / half life); shrink; partners kept per item
        sized = variants["orders weighted size ** -1, cosine shrink 5"]
        for n in (50, 100, 200, 400):
            variants["size ** -1, shrink 5, %d partners per item" % n] = cut(sized, n)
        for half_life in (30, 60, 90, 120, 180, 240):
            aged = together(sizes**-1.0 * 0.5 ** (age_days / half_life))
            for shrink in (5, 20) if half_life != 120 else (5, 10, 20, 40):
                variants["size ** -1, half life %d days, shrink %d" % (half_life, shrink)] = aged / (cosine + shrink)
            if half_life == 120:
                chosen = aged / (cosine + 20)
                for n in (100, 200, 300):
                    variants["size ** -1, half life 120 days, shrink 20, %d partners per item" % n] = cut(chosen, n)
                # tried, all partners: the orders holding i and j aged too (denominator); asymmetric cosine (0.6 on
                # the basket item); dividing by the partner's orders ** beta (shrink 5)
                aged_held = np.asarray(
                    csr_matrix(((0.5 ** (age_days / half_life))[rows], (rows, columns)), shape=shape).sum(axis=0)
                ).ravel()
                variants["half life 120, shrink 5, aged denominator"] = aged / (
                    np.sqrt(np.outer(aged_held, aged_held)) + 5
                )
                variants["half life 120, shrink 5, asymmetric cosine 0.6"] = aged / (
                    held[:, None] ** 0.6 * held[None, :] ** 0.4 + 5
                )
                for beta in (0.1, 0.25):
                    variants["half life 120, shrink 5, / partner's orders ** %g" % beta] = (
                        aged / (cosine + 5) / held[None, :] ** beta
                    )
        # tried, no age: other size exponents; each basket item's row scaled to 1
        for p in (0.75, 1.25, 1.5):
            variants["size ** -%g, cosine shrink 5" % p] = together(sizes**-p) / (cosine + 5)
        variants["size ** -1, shrink 5, rows scaled to max 1"] = sized / np.maximum(
            sized.max(axis=1, keepdims=True), 1e-12
        )
        variants["size ** -1, shrink 5, rows scaled to sum 1"] = sized / np.maximum(
            sized.sum(axis=1, keepdims=True), 1e-12
        )
    report = {}
    for name, similarity in variants.items():
        report[name] = {}
        for variant, targets, exclude in (("all", targets_all, None), ("new", targets_new, bought)):
            result = runner.score_lists(
                lists_of(similarity), targets, k_max=20, catalogue_size=len(keys), vectors=None, exclude=exclude
            )
            report[name][variant] = "%.4f ± %.4f / %.4f ± %.4f" % (
                result["recall"][9],
                result["se"]["recall"][9],
                result["ndcg"][9],
                result["se"]["ndcg"][9],
            )
        print(name, json.dumps(report[name], ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
