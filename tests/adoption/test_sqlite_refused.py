"""SQLite is refused before the first migration, with the "needs PostgreSQL" message (issue 21, item 7)."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SETTINGS = """
SECRET_KEY = "test"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "ragrec_django"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": %(db)r}}
RAGREC = {"ITEM_MODEL": "auth.User", "AUTO_ENCODE": False}
USE_TZ = True
"""


@pytest.fixture
def sqlite_project(tmp_path):
    (tmp_path / "sqlite_settings.py").write_text(SETTINGS % {"db": str(tmp_path / "db.sqlite3")})

    def manage(*args):
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
            "DJANGO_SETTINGS_MODULE": "sqlite_settings",
        }
        env.pop("DATABASE_URL", None)
        return subprocess.run(
            [sys.executable, "-m", "django", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    return manage, tmp_path / "db.sqlite3"


def ragrec_tables(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ragrec%'"
        ).fetchall()
    return [name for (name,) in rows]


def test_check_with_the_database_reports_it(sqlite_project):
    manage, _ = sqlite_project
    plain = manage("check")
    assert plain.returncode == 0, plain.stderr  # database checks run only when asked for
    result = manage("check", "--database", "default")
    assert result.returncode != 0
    assert (
        "ragrec.E007" in result.stderr
        and "needs PostgreSQL with pgvector; the default database is sqlite" in result.stderr
    )


@pytest.mark.parametrize("skip_checks", [False, True], ids=["migrate", "migrate --skip-checks"])
def test_migrate_refuses_before_creating_a_table(sqlite_project, skip_checks):
    manage, db = sqlite_project
    result = manage("migrate", *(["--skip-checks"] if skip_checks else []))
    assert result.returncode != 0
    assert "ragrec_django needs PostgreSQL with pgvector; the default database is sqlite" in result.stderr
    assert "Traceback" not in result.stderr
    assert ragrec_tables(db) == []
