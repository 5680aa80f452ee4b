"""Fixtures of the fault tests: a private PostgreSQL and Redis per run, Django subprocesses pointed at them.

Nothing here touches the shared servers (Redis on 127.0.0.1:6379, the embedded PostgreSQL
in var/postgres): faults are injected into servers these fixtures start and remove.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from private_servers import (  # noqa: E402
    PrivatePostgres,
    PrivateRedis,
    ProcessGroup,
    django_env,
    manage,
)

from tests.helpers import audit  # noqa: E402

TEMPLATE_DB = "reliability_template"


@pytest.fixture(scope="session")
def private_pg(tmp_path_factory):
    """A PostgreSQL cluster of this test run, with a migrated template database.

    The template has the audit triggers of ``tests.helpers.audit``: every committed write of an embedding
    or an event is logged, so "encoded exactly once" is one committed write per (generation, item) and
    "stored exactly once" one committed insert per idempotency key.
    """
    # Not under pytest's temporary folder: PostgreSQL runs as the pgserver user when we are root, and
    # every pytest session (other engineers' too) resets /tmp/pytest-of-<user> to mode 0700.
    root = Path(tempfile.mkdtemp(prefix="ragrec-reliability-pg-"))
    root.chmod(0o755)
    pg = PrivatePostgres(root).start()
    try:
        pg.create_database(TEMPLATE_DB)
        manage(django_env(pg.url(TEMPLATE_DB), workdir=tmp_path_factory.mktemp("migrate")), "migrate", "-v0")
        with pg.connect(TEMPLATE_DB) as conn:
            conn.execute(audit.INSTALL_SQL)
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def fresh_db(private_pg, request):
    """A new database copied from the migrated template; returns its name."""
    name = "rel_" + re.sub(r"\W+", "_", request.node.name)[:50].lower()
    private_pg.create_database(name, template=TEMPLATE_DB)
    return name


@pytest.fixture
def private_redis(tmp_path):
    redis = PrivateRedis(tmp_path / "redis", persistent=True).start()
    yield redis
    redis.stop()


@pytest.fixture
def processes(tmp_path, request):
    group = ProcessGroup(tmp_path / "logs")
    yield group
    group.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(group.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, "rep_" + report.when, report)
    return report
