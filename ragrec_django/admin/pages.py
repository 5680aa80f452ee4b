"""Extra admin pages (not model pages) added to the default admin site's URLs."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path


def add_admin_page(route: str, view, name: str) -> None:
    """Serve ``view`` at ``admin/<route>`` (staff only, through ``admin_view``); adding the same name twice is a no-op."""
    get_urls = admin.site.get_urls
    if name in getattr(get_urls, "ragrec_pages", ()):
        return

    def with_page():
        return [path(route, admin.site.admin_view(view), name=name)] + get_urls()

    with_page.ragrec_pages = (*getattr(get_urls, "ragrec_pages", ()), name)
    admin.site.get_urls = with_page
