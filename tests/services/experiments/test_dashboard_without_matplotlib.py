"""Without matplotlib (the ``eval`` extra) the experiments page shows its tables and a note, not a 500 (issue 21)."""

import sys

import pytest
from django.urls import reverse

from ragrec_django.admin.experiments import PLOTS_NEED_MATPLOTLIB

from .test_dashboard import URL, staff, traffic  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def test_the_table_without_plots_and_a_note(client, traffic, monkeypatch):  # noqa: F811
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # find_spec and import both fail, as when not installed
    client.force_login(staff("analyst", "view_impression"))
    response = client.get(reverse(URL))
    html = response.content.decode()
    assert response.status_code == 200
    assert "trending" in html and "data:image/png" not in html
    assert PLOTS_NEED_MATPLOTLIB.replace('"', "&quot;") in html
