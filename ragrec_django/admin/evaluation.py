"""Back office: the last offline evaluation (``manage.py ragrec_evaluate``), its tables and plots.

A read-only page at ``admin/ragrec_django/evaluation/`` for staff who may view interactions. It
reads ``report.json`` and the PNG plots from ``RAGREC_EVALUATION_DIR`` (default
``<BASE_DIR>/var/evaluation``, where the command writes by default).
"""

from __future__ import annotations

import base64
import json

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse

from ..evaluation import report as reports
from .pages import add_admin_page

URL_NAME = "ragrec_django_evaluation"


def evaluation_view(request):
    if not request.user.has_perm("ragrec_django.view_interaction"):
        raise PermissionDenied
    directory = reports.default_out_dir()
    context = {**admin.site.each_context(request), "title": "Recommendation evaluation", "directory": directory}
    try:
        report = json.loads((directory / "report.json").read_text())
    except FileNotFoundError:
        report = None
    except (OSError, ValueError) as exc:
        context["error"] = "Could not read %s: %s" % (directory / "report.json", exc)
        report = None
    if report is not None:
        k = min(10, report["k_max"])
        variants = []
        for variant, data in report["variants"].items():
            plot = directory / ("metrics_%s.png" % variant)
            variants.append(
                {
                    "name": variant,
                    "description": data["description"],
                    "users": data["users"],
                    "rows": [
                        [cell if not isinstance(cell, float) else "%.4f" % cell for cell in row]
                        for row in reports.rows(report, variant, k)
                    ],
                    "plot": base64.b64encode(plot.read_bytes()).decode("ascii") if plot.is_file() else None,
                }
            )
        context.update(
            report=report,
            variants=variants,
            headings=["recommender", "kind", "visitors"] + reports._headings(report, k),
            report_json=json.dumps(
                {key: report[key] for key in ("dataset", "timings_s", "encoder", "machine")}, indent=2
            ),
        )
    return TemplateResponse(request, "admin/ragrec_django/evaluation.html", context)


add_admin_page("ragrec_django/evaluation/", evaluation_view, URL_NAME)
