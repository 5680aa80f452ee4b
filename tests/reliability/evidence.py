"""Reading what happened: Celery worker logs, the audit table, the broker's queues."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import audit

TASK_LINE = re.compile(
    r"Task ragrec_django\.tasks\.encode_items_task\[(?P<id>[^\]]+)\] succeeded in [\d.e-]+s: (?P<result>\{.*\})"
)


def task_results(*log_paths) -> dict[str, list[dict]]:
    """{task id: [result dict, ...]} of the encode tasks that succeeded, from Celery worker logs."""
    results: dict[str, list[dict]] = {}
    for path in log_paths:
        for match in TASK_LINE.finditer(Path(path).read_text()):
            results.setdefault(match["id"], []).append(ast.literal_eval(match["result"]))
    return results


def embedding_writes(pg, db) -> dict[str, int]:
    """{"generation:item": committed writes} from the audit table."""
    with pg.connect(db) as conn:
        return audit.writes(conn.cursor(), "embedding")


def event_writes(pg, db) -> dict[str, int]:
    """{idempotency key: committed writes} of events from the audit table."""
    with pg.connect(db) as conn:
        return audit.writes(conn.cursor(), "event")


def active_embeddings(pg, db) -> tuple[int, int]:
    """(rows, distinct items) of the active generation of space "text"."""
    with pg.connect(db) as conn:
        return conn.execute(
            "SELECT count(*), count(DISTINCT e.item_id) FROM ragrec_django_embedding e "
            "JOIN ragrec_django_spacegeneration g ON g.id = e.generation_id "
            "WHERE g.space = 'text' AND g.status = 'active'"
        ).fetchone()


def count(pg, db, table: str, where: str = "TRUE") -> int:
    return pg.scalar(db, "SELECT count(*) FROM %s WHERE %s" % (table, where))


def broker_is_drained(redis) -> bool:
    """No message waiting in the default queue, none delivered and not yet acknowledged."""
    client = redis.client()
    return client.llen("celery") == 0 and client.hlen("unacked") == 0
