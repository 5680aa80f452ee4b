"""Back office: search. Merchandiser synonyms ("jumper" also finds "sweater"), per-query rules (a redirect to a
page, pins, boosts and hidden items for one query), the search log, and a search analytics page at
``admin/ragrec_django/search-analytics/``: top queries, queries that found nothing by their words, queries whose
results are rarely clicked, and searches per day, each query with one-click "add synonym" and "add redirect"
(or "edit rule") links.

Synonym and rule changes apply without a restart: this process forgets its cached copies on save, the others
re-read them within ``storage.search.SYNONYMS_TTL_SECONDS``; each change is in the admin's history (Django's
log). A rule is checked by ``services.search.check_search_rule`` before it is saved (its message shows on the
field at fault).
Numbers come from ``services.search.report``. The page is for staff who may view the search log
(``ragrec_django.view_searchlog``).
"""

from __future__ import annotations

import base64
import io
import math
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import reverse

from ..exceptions import InvalidSearchRule
from ..models import SearchLog, SearchRule, SearchSynonym
from ..services import search as search_service
from ..storage import search as search_storage
from .pages import add_admin_page, requested_range

URL_NAME = "ragrec_django_search_analytics"
PERMISSION = "ragrec_django.view_searchlog"


class ForgetsMerchandising(admin.ModelAdmin):
    """Admin of a merchandising table: a save or delete makes this process forget its cached synonyms and rules."""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        search_storage.forget_synonyms()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        search_storage.forget_synonyms()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        search_storage.forget_synonyms()


@admin.register(SearchSynonym)
class SearchSynonymAdmin(ForgetsMerchandising):
    list_display = ["term", "synonyms", "two_way", "is_active", "updated_at"]
    list_filter = ["two_way", "is_active"]
    search_fields = ["term", "synonyms"]
    list_editable = ["is_active"]


class SearchRuleForm(forms.ModelForm):
    class Meta:
        model = SearchRule
        fields = ["query", "redirect_url", "rules", "is_active"]

    def clean_query(self):
        return search_service.normalised_query(self.cleaned_data["query"])

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            data["query"], data["redirect_url"], data["rules"] = search_service.check_search_rule(
                data.get("query", ""), data.get("redirect_url", ""), data.get("rules"), rule_id=self.instance.pk
            )
        except InvalidSearchRule as exc:
            self.add_error(exc.field, str(exc))
        return data


@admin.register(SearchRule)
class SearchRuleAdmin(ForgetsMerchandising):
    form = SearchRuleForm
    list_display = ["query", "redirect_url", "rules", "is_active", "updated_at"]
    list_filter = ["is_active"]
    search_fields = ["query", "redirect_url"]


@admin.register(SearchLog)
class SearchLogAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "query",
        "normalised",
        "result_count",
        "matched",
        "shown_query",
        "user",
        "session_key",
    ]
    list_filter = ["created_at"]
    search_fields = ["query", "normalised"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in SearchLog._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def search_analytics_view(request):
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    form, start, end = requested_range(request)
    context = {**admin.site.each_context(request), "title": "Search analytics", "form": form}
    if start is None:
        return TemplateResponse(request, "admin/ragrec_django/search_analytics.html", context, status=400)
    report = search_service.report(start, end)
    rules = search_service.query_rules()
    context.update(
        start=start,
        end=end,
        report=report,
        window_minutes=int(search_storage.ATTRIBUTION_WINDOW.total_seconds() // 60),
        top=[_row(row, rules) for row in report.top],
        zero=[_row(row, rules) for row in report.zero],
        low_ctr=[_row(row, rules) for row in report.low_ctr],
        searches=sum(day[1] for day in report.daily),
        trend_plot=_trend_plot(report) if report.daily else None,
    )
    return TemplateResponse(request, "admin/ragrec_django/search_analytics.html", context)


def _row(row: search_storage.QueryStats, rules: dict) -> dict:
    """A query's figures with its one-click links: add a synonym, and add a redirect (or edit its rule)."""
    rule = rules.get(search_service.normalised_query(row.query))
    return {
        "rule": (rule.redirect or "pins/boosts") if rule is not None else "",
        "edit_rule": reverse("admin:ragrec_django_searchrule_change", args=[rule.id]) if rule is not None else "",
        "add_redirect": reverse("admin:ragrec_django_searchrule_add") + "?" + urlencode({"query": row.query}),
        "query": row.query,
        "searches": row.searches,
        "zero": row.zero_results,
        "clicked": row.clicked,
        "carted": row.carted,
        "results": "%.1f" % row.results,
        "ctr": "-" if row.ctr is None else "%.0f%%" % (100 * row.ctr),
        "add_synonym": reverse("admin:ragrec_django_searchsynonym_add") + "?" + urlencode({"term": row.query}),
    }


def _trend_plot(report) -> str:
    from matplotlib.figure import Figure  # imported on use: no pyplot, no GUI backend, thread-safe

    days = [day for day, _, _ in report.daily]
    searches = [count for _, count, _ in report.daily]
    zero = [100 * nothing / count if count else math.nan for _, count, nothing in report.daily]
    figure = Figure(figsize=(10, 5), layout="constrained")
    shown, share = figure.subplots(2, 1, sharex=True)
    shown.plot(days, searches, marker="o", markersize=3)
    shown.set_ylabel("searches / day")
    shown.set_title("Searches per day")
    share.plot(days, zero, marker="o", markersize=3, color="tab:red")
    share.set_ylabel("found nothing by words (%)")
    for axes in (shown, share):
        axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


add_admin_page("ragrec_django/search-analytics/", search_analytics_view, URL_NAME)
