"""Extra admin pages (not model pages) added to the default admin site's URLs."""

from __future__ import annotations

from datetime import date, timedelta

from django import forms
from django.contrib import admin
from django.urls import path
from django.utils import timezone

#: Days a report page shows by default, and the most it shows at once.
DEFAULT_DAYS = 14
MAX_DAYS = 366


def add_admin_page(route: str, view, name: str) -> None:
    """Serve ``view`` at ``admin/<route>`` (staff only, through ``admin_view``); adding the same name twice is a no-op."""
    get_urls = admin.site.get_urls
    if name in getattr(get_urls, "ragrec_pages", ()):
        return

    def with_page():
        return [path(route, admin.site.admin_view(view), name=name)] + get_urls()

    with_page.ragrec_pages = (*getattr(get_urls, "ragrec_pages", ()), name)
    admin.site.get_urls = with_page


class RangeForm(forms.Form):
    """The days a report page covers (inclusive), at most ``MAX_DAYS``."""

    start = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end < start:
                raise forms.ValidationError("The end day is before the start day.")
            if (end - start).days + 1 > MAX_DAYS:
                raise forms.ValidationError("Choose at most %d days." % MAX_DAYS)
        return data


def requested_range(request) -> tuple[RangeForm, date | None, date | None]:
    """The range form of a report page and the days it asks for: the last ``DEFAULT_DAYS`` without a query,
    ``(form, None, None)`` when the query is invalid (the page shows the form's errors with a 400)."""
    today = timezone.localdate()
    initial = {"start": today - timedelta(days=DEFAULT_DAYS - 1), "end": today}
    form = RangeForm(request.GET if request.GET else None, initial=initial)
    if not form.is_bound:
        return form, initial["start"], initial["end"]
    if not form.is_valid():
        return form, None, None
    return form, form.cleaned_data["start"], form.cleaned_data["end"]
