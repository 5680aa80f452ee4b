"""Reports of a fine-tuning run: ``report.json``, ``report.md`` and, with matplotlib installed, ``report.png``."""

from __future__ import annotations

import importlib.util
import json
import os

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_PNG = "report.png"
PLOT_SKIPPED = "matplotlib is not installed: no plot (pip install matplotlib to get report.png)."
#: The k of the recall@k figures that training reports.
RECALL_AT = (1, 5, 10)


def write_report(directory: str, report: dict, plot: bool = True) -> dict[str, str]:
    """Write the report files into the checkpoint ``directory``; return {kind: path}."""
    files = {"json": os.path.join(directory, REPORT_JSON), "markdown": os.path.join(directory, REPORT_MD)}
    report.pop("plot_note", None)
    path = _plot(report, os.path.join(directory, REPORT_PNG)) if plot else None
    if path:
        files["plot"] = path
        report["plot"] = path
    else:
        report["plot"] = None
        report["plot_note"] = PLOT_SKIPPED if plot else "not asked for (plot=False)."
    report["files"] = files
    _write_atomic(files["markdown"], markdown(report))
    _write_atomic(files["json"], json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    return files


def metrics_table(report: dict) -> str:
    """Markdown table of held-out recall@1/5/10 and MRR, before and after training."""
    lines = ["| held-out metric | before | after | change |", "| --- | ---: | ---: | ---: |"]
    for name, before, after in holdout_metrics_table(report):
        lines.append("| %s | %.3f | %.3f | %+.3f |" % (name, before, after, after - before))
    return "\n".join(lines)


def holdout_metrics_table(report: dict) -> list[tuple[str, float, float]]:
    """(metric, before, after) rows of a report, in display order."""
    rows = []
    for direction, label in (("text_to_image", "text->image"), ("image_to_text", "image->text")):
        for metric in ["recall@%d" % k for k in RECALL_AT] + ["mrr"]:
            rows.append(
                ("%s %s" % (label, metric), report["before"][direction][metric], report["after"][direction][metric])
            )
    return rows


def markdown(report: dict) -> str:
    data, config, device = report.get("data", {}), report.get("config", {}), report.get("device", {})
    architecture = config.get("from_config") if isinstance(config.get("from_config"), str) else "custom config"
    start = (
        "pretrained %s" % config.get("pretrained") if config.get("pretrained") else "random init (%s)" % architecture
    )
    lines = [
        "# CLIP fine-tuning report",
        "",
        "Checkpoint: `%s` (%s)" % (report.get("checkpoint"), report.get("format")),
        "",
        "Text tower: %s. Start: %s."
        % (
            "frozen %s + trained projection (LiT-style)" % config.get("text_model")
            if config.get("lock_text") == "minilm"
            else "trained",
            start,
        ),
        "",
        "Held out: %d of %d products (seed %s), one image and one text each; the other %d pairs trained."
        % (data.get("holdout_products", 0), data.get("products", 0), config.get("seed"), data.get("train_pairs", 0)),
        "Images that could not be used: %d." % data.get("skipped_images", 0),
        "",
        metrics_table(report),
        "",
    ]
    for warning in report.get("warnings") or ():
        lines += ["**Warning:** %s" % warning, ""]
    lines += [
        "Best epoch %s of %s run (%s, %s steps); stopped: %s. Training throughput: %s pairs/s on %s (autocast %s)."
        % (
            report.get("best_epoch"),
            report.get("epochs_run"),
            "batch %s, lr %s" % (config.get("batch_size"), config.get("lr")),
            report.get("steps"),
            report.get("stopped"),
            report.get("train_pairs_per_second"),
            device.get("gpu") or device.get("device"),
            device.get("autocast"),
        ),
        "",
        "## Per epoch",
        "",
        "| epoch | step | train loss | held-out t2i R@1 | t2i R@5 | t2i MRR | i2t MRR |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report.get("history", []):
        loss = "-" if row.get("train_loss") is None else "%.4f" % row["train_loss"]
        h = row["holdout"]
        lines.append(
            "| %d | %d | %s | %.3f | %.3f | %.3f | %.3f |"
            % (row["epoch"], row["step"], loss, h["t2i_r@1"], h["t2i_r@5"], h["t2i_mrr"], h["i2t_mrr"])
        )
    lines += ["", "## Encoder setting", "", "```python", _setting(report.get("encoder")), "```", ""]
    if report.get("plot"):
        lines += ["![training curves](%s)" % os.path.basename(report["plot"]), ""]
    else:
        lines += ["Plot: %s" % report.get("plot_note", PLOT_SKIPPED), ""]
    return "\n".join(lines)


def _setting(encoder: dict | None) -> str:
    if not encoder:
        return ""
    options = ",\n".join("        %r: %r" % item for item in encoder["OPTIONS"].items())
    return 'RAGREC["ENCODERS"]["clip"] = {\n    "BACKEND": %r,\n    "OPTIONS": {\n%s,\n    },\n}' % (
        encoder["BACKEND"],
        options,
    )


def _plot(report: dict, path: str) -> str | None:
    """Training loss and held-out MRR per epoch, when matplotlib is installed."""
    if importlib.util.find_spec("matplotlib") is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    history = report.get("history", [])
    trained = [row for row in history if row.get("train_loss") is not None]
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(10, 4))
    left.plot([r["epoch"] for r in trained], [r["train_loss"] for r in trained], marker="o")
    left.set(title="training loss", xlabel="epoch", ylabel="InfoNCE loss")
    epochs = [r["epoch"] for r in history]
    for key, label in (("t2i_mrr", "text->image MRR"), ("i2t_mrr", "image->text MRR"), ("t2i_r@1", "text->image R@1")):
        right.plot(epochs, [r["holdout"][key] for r in history], marker="o", label=label)
    right.set(title="held-out products", xlabel="epoch (0 = before training)", ylim=(0, 1))
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def _write_atomic(path: str, text: str) -> None:
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
