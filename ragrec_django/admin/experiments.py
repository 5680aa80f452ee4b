"""Back office: online measurement. Impressions, clicks, CTR and conversions per recommender and per
A/B variant, with 95% intervals, z-tests against each experiment's baseline, and plots over time.

A read-only page at ``admin/ragrec_django/experiments/`` for staff who may view impressions
(``ragrec_django.view_impression``). The date range (``start``, ``end``: days in the current time
zone, both included; the last 14 days by default, at most 366) is chosen with a form; a bad range
is shown as a form error. Numbers come from ``services.experiments.report`` (its docstring, and
docs/experiments.md, define what is counted and the attribution rule); plots are PNGs drawn with
matplotlib on the server and inlined, so the page needs no JavaScript. Without matplotlib (the ``eval``
extra) the page shows the tables and a note instead of the plots.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import math
from collections import defaultdict

from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.template.response import TemplateResponse

from ..services import experiments
from .pages import add_admin_page, requested_range

URL_NAME = "ragrec_django_experiments"
PLOTS_NEED_MATPLOTLIB = 'Plots need matplotlib: pip install "ragrec-django[eval]".'
PERMISSION = "ragrec_django.view_impression"


def experiments_view(request):
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    form, start, end = requested_range(request)
    context = {**admin.site.each_context(request), "title": "Recommendations: online measurement", "form": form}
    if start is None:
        return TemplateResponse(request, "admin/ragrec_django/experiments.html", context, status=400)
    result = experiments.report(start, end)
    try:
        configured = experiments.configured_experiments()
        settings_error = ""
    except ImproperlyConfigured as exc:
        configured, settings_error = [], str(exc)
    context.update(
        start=start,
        end=end,
        report=result,
        rows=[_row(r) for r in result.summary],
        settings_error=settings_error,
        configured=[
            {
                "name": e.name,
                "recommenders": ", ".join(sorted(e.recommenders)) if e.recommenders else "all",
                "variants": [
                    {"name": v.name, "config": v.config, "weight": "%g" % v.weight, "baseline": i == 0}
                    for i, v in enumerate(e.variants)
                ],
            }
            for e in configured
        ],
        window_hours=int(result.window.total_seconds() // 3600),
    )
    if importlib.util.find_spec("matplotlib") is None:
        context.update(overview_plot=None, experiment_plots=[], plot_note=PLOTS_NEED_MATPLOTLIB if result.daily else "")
    else:
        context.update(
            overview_plot=_overview_plot(result) if result.daily else None, experiment_plots=_experiment_plots(result)
        )
    return TemplateResponse(request, "admin/ragrec_django/experiments.html", context)


# ---------------------------------------------------------------- table


def _percent(value) -> str:
    return "-" if value is None else "%.2f%%" % (100 * value)


def _interval(interval) -> str:
    return "" if interval is None else "%.2f–%.2f%%" % (100 * interval[0], 100 * interval[1])


def _test(test) -> str:
    if test is None:
        return ""
    text = "%+.2f pts, p = %.3f" % (100 * test.difference, test.p_value)
    if not test.reliable:
        text += " (few events)"
    return text


def _row(row: experiments.SummaryRow) -> dict:
    counts = row.counts
    return {
        "recommender": row.recommender,
        "experiment": row.experiment,
        "variant": row.variant,
        "is_baseline": row.is_baseline,
        "impressions": counts.impressions,
        "clicked": counts.clicked,
        "clicks": counts.clicks,
        "converted": counts.converted,
        "conversions": counts.conversions,
        "ctr": _percent(counts.ctr),
        "ctr_interval": _interval(counts.ctr_interval),
        "conversion_rate": _percent(counts.conversion_rate),
        "conversion_interval": _interval(counts.conversion_interval),
        "ctr_test": _test(row.ctr_test),
        "conversion_test": _test(row.conversion_test),
        "significant": bool(row.ctr_test and row.ctr_test.significant())
        or bool(row.conversion_test and row.conversion_test.significant()),
    }


# ---------------------------------------------------------------- plots


def _label(text: str) -> str:
    return text.replace("$", r"\$") or "(none)"  # no mathtext from names


def _series(report, daily_rows, key):
    """{label: ([days], [impressions], [ctr %], [conversion %])} summed per day for rows grouped by ``key``."""
    by_label: dict[str, dict] = defaultdict(lambda: defaultdict(experiments.Counts))
    for row in daily_rows:
        by_label[key(row)][row.day].add(row.counts)
    series = {}
    for label, days in sorted(by_label.items()):
        xs = report.days
        counts = [days.get(day, experiments.Counts()) for day in xs]
        series[label] = (
            xs,
            [c.impressions for c in counts],
            [100 * c.ctr if c.ctr is not None else math.nan for c in counts],
            [100 * c.conversion_rate if c.conversion_rate is not None else math.nan for c in counts],
        )
    return series


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(rows: int):
    from matplotlib.figure import Figure  # imported on use: no pyplot, no GUI backend, thread-safe

    figure = Figure(figsize=(10, 3.2 * rows), layout="constrained")
    return figure, figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]


def _overview_plot(report) -> str:
    series = _series(report, report.daily, key=lambda row: row.recommender)
    figure, (shown, ctr, conversion) = _figure(3)
    for label, (xs, impressions, ctrs, conversions) in series.items():
        shown.plot(xs, impressions, marker="o", markersize=3, label=_label(label))
        ctr.plot(xs, ctrs, marker="o", markersize=3, label=_label(label))
        conversion.plot(xs, conversions, marker="o", markersize=3, label=_label(label))
    shown.set_ylabel("impressions / day")
    ctr.set_ylabel("CTR (%)")
    conversion.set_ylabel("conversion rate (%)")
    shown.set_title("All traffic, per recommender")
    shown.legend(loc="upper left", fontsize="small", ncols=3)
    for axes in (shown, ctr, conversion):
        axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    return _png(figure)


def _experiment_plots(report) -> list[dict]:
    plots = []
    names = sorted({row.experiment for row in report.daily if row.experiment})
    for name in names:
        rows = [row for row in report.daily if row.experiment == name]
        series = _series(report, rows, key=lambda row: row.variant)
        figure, (ctr, conversion) = _figure(2)
        for label, (xs, _impressions, ctrs, conversions) in series.items():
            ctr.plot(xs, ctrs, marker="o", markersize=3, label=_label(label))
            conversion.plot(xs, conversions, marker="o", markersize=3, label=_label(label))
        ctr.set_title("Experiment %s, per variant" % _label(name))
        ctr.set_ylabel("CTR (%)")
        conversion.set_ylabel("conversion rate (%)")
        ctr.legend(loc="upper left", fontsize="small", ncols=3)
        for axes in (ctr, conversion):
            axes.grid(alpha=0.3)
        figure.autofmt_xdate()
        plots.append({"name": name, "png": _png(figure)})
    return plots


add_admin_page("ragrec_django/experiments/", experiments_view, URL_NAME)
