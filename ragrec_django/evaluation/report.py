"""An evaluation report as a text table, a JSON file, a Markdown table and PNG plots of metric vs k."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

#: Columns of the summary table: (heading, metric, uses k).
COLUMNS = [
    ("recall@{k}", "recall", True),
    ("nDCG@{k}", "ndcg", True),
    ("MRR@{kmax}", "mrr", False),
    ("hit@{k}", "hit_rate", True),
    ("cov@{k}", "coverage", True),
    ("div@{k}", "diversity", True),
]
PLOTTED = [("recall", "recall@k"), ("ndcg", "nDCG@k"), ("hit_rate", "hit rate@k"), ("coverage", "catalogue coverage@k")]


def default_out_dir() -> Path:
    """``settings.RAGREC_EVALUATION_DIR``, else ``<BASE_DIR or cwd>/var/evaluation``.

    ``ragrec_evaluate`` writes there by default and the admin page reads the report from there.
    """
    from django.conf import settings

    configured = getattr(settings, "RAGREC_EVALUATION_DIR", None)
    if configured:
        return Path(configured)
    return Path(getattr(settings, "BASE_DIR", None) or Path.cwd()) / "var" / "evaluation"


def _value(result: dict, metric: str, k: int, uses_k: bool):
    value = result.get(metric)
    if value is None:
        return None
    return value[k - 1] if uses_k else value


def rows(report: dict, variant: str, k: int = 10) -> list[list]:
    """[[name, kind, users, value, ...]] for one variant at cut-off ``k``."""
    table = []
    data = report["variants"][variant]
    for name, result in data["results"].items():
        kind = report["recommenders"][name]["kind"]
        table.append(
            [name, kind, result["users"]] + [_value(result, metric, k, uses_k) for _, metric, uses_k in COLUMNS]
        )
    return table


def _headings(report: dict, k: int) -> list[str]:
    return [h.format(k=k, kmax=report["k_max"]) for h, _, _ in COLUMNS]


def _fmt(value) -> str:
    return "-" if value is None else "%.4f" % value


def text_table(report: dict, k: int = 10) -> str:
    """Every variant as a plain-text table (stdout)."""
    lines = []
    for variant, data in report["variants"].items():
        lines.append("variant %r (%s): %d visitors" % (variant, data["description"], data["users"]))
        headings = ["recommender", "kind"] + _headings(report, k)
        lines.append("%-30s %-9s " % tuple(headings[:2]) + " ".join("%9s" % h for h in headings[2:]))
        for row in rows(report, variant, k):
            lines.append("%-30s %-9s " % (row[0], row[1]) + " ".join("%9s" % _fmt(v) for v in row[3:]))
        lines.append("")
    return "\n".join(lines)


def markdown_table(report: dict, variant: str, k: int = 10, *, with_se: bool = True) -> str:
    """A Markdown table of one variant; the best value of each column in bold, standard errors after ±."""
    headings = ["recommender", "kind"] + _headings(report, k)
    out = ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
    best = {}
    table = rows(report, variant, k)
    for column in range(3, 3 + len(COLUMNS)):
        values = [row[column] for row in table if row[column] is not None]
        best[column] = max(values) if values else None
    results = report["variants"][variant]["results"]
    for row in table:
        cells = [row[0], row[1]]
        errors = results[row[0]].get("se") or {}
        for column, (_, metric, uses_k) in zip(range(3, 3 + len(COLUMNS)), COLUMNS):
            text = _fmt(row[column])
            if row[column] is not None and row[column] == best[column]:
                text = "**%s**" % text
            if with_se and metric in errors:
                text += " ±%.4f" % (errors[metric][k - 1] if uses_k else errors[metric])
            cells.append(text)
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def paired_table(report: dict, variant: str) -> str:
    """A Markdown table of the paired comparison against ``for_you`` (fusion) in one variant: per recommender, the
    mean per-shopper difference of recall@k and nDCG@k ± its standard error (shoppers better / worse); "" without
    one (``for_you`` not evaluated, or a report from before it was kept)."""
    paired = report["variants"][variant].get("paired_vs_for_you") or {}
    if not paired:
        return ""
    metrics = list(next(iter(paired.values())))
    out = [
        "| recommender - `for_you` | " + " | ".join(metrics) + " |",
        "|" + "---|" * (len(metrics) + 1),
    ]
    for name, values in paired.items():
        cells = [
            "%+.4f ±%.4f (%d / %d)" % (v["mean_difference"], v["se"], v["better"], v["worse"])
            for v in (values[m] for m in metrics)
        ]
        out.append("| %s | %s |" % (name, " | ".join(cells)))
    return "\n".join(out)


def latency_table(report: dict) -> str:
    """Per-shopper call times of each recommender (ms; the whole call, as run)."""
    latency = report.get("latency_per_visitor") or {}
    if not latency:
        return ""
    out = ["| recommender | mean ms | p50 ms | p95 ms |", "|---|---|---|---|"]
    for name, values in latency.items():
        out.append("| %s | %.1f | %.1f | %.1f |" % (name, values["mean_ms"], values["p50_ms"], values["p95_ms"]))
    return "\n".join(out)


def per_shopper_csv(report: dict) -> str:
    """Every evaluated shopper's recall@k and nDCG@k per recommender and variant, one row per (variant, shopper)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header_written = False
    for variant, data in report["variants"].items():
        kept = data.get("per_shopper")
        if not kept:
            continue
        names = list(kept["values"])
        metrics = list(next(iter(kept["values"].values()))) if names else []
        if not header_written:
            writer.writerow(["variant", "visitor"] + ["%s %s" % (n, m) for n in names for m in metrics])
            header_written = True
        for i, visitor in enumerate(kept["visitors"]):
            writer.writerow([variant, visitor] + [kept["values"][n][m][i] for n in names for m in metrics])
    return buffer.getvalue()


def plot(report: dict, out_dir: Path) -> list[Path]:
    """One PNG per variant: recall, nDCG, hit rate and coverage against k. [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    paths = []
    ks = list(range(1, report["k_max"] + 1))
    styles = {"service": "-", "baseline": "--", "ablation": ":", "prototype": ":"}
    names = list(report["recommenders"])
    palette = plt.get_cmap("tab20").colors if len(names) > 10 else plt.get_cmap("tab10").colors
    colours = {
        name: palette[(2 * i) % 20 + (2 * i) // 20] if len(names) > 10 else palette[i] for i, name in enumerate(names)
    }
    for variant, data in report["variants"].items():
        figure, axes = plt.subplots(2, 2, figsize=(12, 9))
        for axis, (metric, title) in zip(axes.flat, PLOTTED):
            for name, result in data["results"].items():
                kind = report["recommenders"][name]["kind"]
                axis.plot(
                    ks,
                    result[metric],
                    styles.get(kind, "-"),
                    color=colours.get(name),
                    marker="o",
                    markersize=2.5,
                    linewidth=1.4,
                    label=name,
                )
            axis.set_title(title)
            axis.set_xlabel("k")
            axis.set_xticks([1, 5, 10, 15, 20] if report["k_max"] == 20 else ks[:: max(1, len(ks) // 5)])
            axis.grid(alpha=0.3)
        axes.flat[0].legend(fontsize=8, loc="upper left")
        figure.suptitle(
            "%s, variant %r: %s (%d visitors; solid: services, dashed: baselines, dotted: ablations)"
            % (report["dataset"]["name"], variant, data["description"], data["users"]),
            fontsize=9,
        )
        figure.tight_layout()
        path = out_dir / ("metrics_%s.png" % variant)
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


def write(report: dict, out_dir: str | Path, k: int = 10) -> dict[str, Path]:
    """report.json, results.md, per_shopper.csv.gz and the plots in ``out_dir``; returns what was written.

    The per-shopper values go to ``per_shopper.csv.gz`` only (report.json keeps their paired comparison)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / "report.json", "markdown": out / "results.md"}
    summary = {
        **report,
        "variants": {
            variant: {key: value for key, value in data.items() if key != "per_shopper"}
            for variant, data in report["variants"].items()
        },
    }
    written["json"].write_text(json.dumps(summary, indent=2) + "\n")
    sections = []
    for variant, data in report["variants"].items():
        sections.append(
            "### Variant `%s`: %s (%d visitors)\n\n%s\n"
            % (variant, data["description"], data["users"], markdown_table(report, variant, k))
        )
        paired = paired_table(report, variant)
        if paired:
            sections.append(
                "Paired against `for_you` (fusion), variant `%s`: mean per-shopper difference at k = %d ± its "
                "standard error (shoppers better / worse)\n\n%s\n"
                % (variant, data.get("per_shopper", {}).get("k", k), paired)
            )
    latency = latency_table(report)
    if latency:
        sections.append("### Per-shopper call time\n\n%s\n" % latency)
    written["markdown"].write_text("\n".join(sections))
    rows = per_shopper_csv(report)
    if rows:
        written["per_shopper"] = out / "per_shopper.csv.gz"
        # mtime=0: the same report gives the same bytes
        written["per_shopper"].write_bytes(gzip.compress(rows.encode(), mtime=0))
    for path in plot(report, out):
        written[path.stem] = path
    return written
