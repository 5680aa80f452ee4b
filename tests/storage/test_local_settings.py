"""Statements with their own ``SET LOCAL`` in one round trip (``storage.database.run_with_local_settings``,
``insert_analytics_row``): the settings apply to the statement, never to the session, with either path."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from ragrec_django.models import Impression, SearchLog
from ragrec_django.storage import database

pytestmark = pytest.mark.django_db(transaction=True)

SETTING = "SELECT current_setting('work_mem'), %s::text"


def session_setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        return cursor.fetchone()[0]


@pytest.mark.parametrize("in_transaction", [False, True])
def test_the_settings_apply_to_the_statement_and_end_with_it(in_transaction):
    before = session_setting("work_mem")
    tricky = "it's 100% ; SET work_mem = '5MB'"  # a parameter is bound, never run
    with transaction.atomic() if in_transaction else _nothing():
        assert database.one_round_trip("default") is not in_transaction
        with CaptureQueriesContext(connection) as captured:
            rows = database.run_with_local_settings("SET LOCAL work_mem = '7MB';", SETTING, [tricky], "default")
        assert rows == [("7MB", tricky)]
        assert len(captured.captured_queries) == (4 if in_transaction else 1)  # SAVEPOINT, SET, SELECT, RELEASE
    assert session_setting("work_mem") == before


def test_server_side_binding_takes_the_transaction_path(settings):
    options = connection.settings_dict.setdefault("OPTIONS", {})
    options["server_side_binding"] = True
    try:
        assert not database.one_round_trip("default")
    finally:
        del options["server_side_binding"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Impression(recommender="trending", item_keys=["a"]),
        lambda: SearchLog(query="mugs", normalised="mugs", result_count=3, matched=3),
    ],
)
def test_an_analytics_row_is_inserted_in_one_statement_with_its_id(make):
    row = make()
    with CaptureQueriesContext(connection) as captured:
        database.insert_analytics_row(row)
    assert len(captured.captured_queries) == 1
    assert "synchronous_commit = off" in captured.captured_queries[0]["sql"]
    assert row.pk is not None and not row._state.adding
    assert type(row).objects.filter(pk=row.pk).exists()
    assert session_setting("synchronous_commit") == "on"


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
