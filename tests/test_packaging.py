"""The wheel ships what a host project needs besides the code: templates, migrations, static files, py.typed.

Built with ``python -m build --wheel --no-isolation`` (about a second) from a copy of the package's sources,
so nothing is written into the working tree.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ragrec_django"


def shipped_data_files() -> set[str]:
    """Every non-Python file the package needs at run time, and its migrations, as paths inside the wheel."""
    files = {PACKAGE / "py.typed", *PACKAGE.glob("migrations/*.py")}
    for folder in ("templates", "static"):
        files.update(
            path for path in (PACKAGE / folder).rglob("*") if path.is_file() and "__pycache__" not in path.parts
        )
    return {path.relative_to(REPO).as_posix() for path in files}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("build")
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(PACKAGE, source / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("ragrec_django-*.whl")
    return built


def test_the_wheel_contains_templates_migrations_static_and_py_typed(wheel):
    expected = shipped_data_files()
    assert "ragrec_django/py.typed" in expected
    assert any(path.startswith("ragrec_django/templates/") for path in expected)
    assert "ragrec_django/migrations/0001_initial.py" in expected
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert expected - names == set()


def test_the_wheel_metadata_declares_the_extras_the_readme_names(wheel):
    with zipfile.ZipFile(wheel) as archive:
        (metadata_name,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode()
    extras = {line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Provides-Extra:")}
    assert {"ml", "api", "celery", "embedded", "eval", "rank", "release", "all"} <= extras
    assert "Description-Content-Type: text/markdown" in metadata
