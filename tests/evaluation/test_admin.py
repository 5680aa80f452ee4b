"""The admin page showing the last evaluation report."""

import json

import pytest
from django.urls import reverse

import ragrec_django.admin.evaluation  # noqa: F401  (registers the page until ragrec_django.admin imports it)
from ragrec_django.evaluation import report as reports

pytestmark = pytest.mark.django_db

REPORT = {
    "created_at": "2026-01-01T00:00:00+00:00",
    "k_max": 2,
    "encoder": "fake",
    "machine": "test",
    "timings_s": {},
    "dataset": {
        "name": "tiny",
        "evaluated_visitors": 3,
        "eligible_visitors": 3,
        "items": 8,
        "sample": False,
        "seed": 0,
    },
    "recommenders": {"popularity": {"kind": "baseline", "description": ""}},
    "variants": {
        "all": {
            "description": "every item",
            "users": 3,
            "results": {
                "popularity": {
                    "users": 3,
                    "recall": [0.1667, 0.3333],
                    "ndcg": [0.3, 0.4],
                    "hit_rate": [0.3, 0.6],
                    "precision": [0.3, 0.3],
                    "mrr": 0.5,
                    "coverage": [0.125, 0.25],
                    "diversity": [None, 0.7],
                    "empty_lists": 0,
                }
            },
        }
    },
}


def test_page_shows_the_last_report(admin_client, settings, tmp_path):
    settings.RAGREC_EVALUATION_DIR = str(tmp_path)
    url = reverse("admin:ragrec_django_evaluation")
    assert url == "/admin/ragrec_django/evaluation/"
    response = admin_client.get(url)
    assert response.status_code == 200 and b"No evaluation report" in response.content

    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    assert reports.default_out_dir() == tmp_path
    response = admin_client.get(url)
    assert response.status_code == 200
    content = response.content.decode()
    assert "popularity" in content and "0.3333" in content and "recall@2" in content


def test_page_needs_staff(client, settings, tmp_path):
    settings.RAGREC_EVALUATION_DIR = str(tmp_path)
    response = client.get("/admin/ragrec_django/evaluation/")
    assert response.status_code == 302 and "/login/" in response["Location"]
