"""A gunicorn ``gthread`` worker that shares the requests out evenly between the worker processes.

With several workers on one listening socket, the kernel hands each new connection to whichever
worker's ``accept`` wins, and a keep-alive connection then stays with that worker for good: four
clients on two workers end up split 2:2 or 3:1 by chance, and with 3:1 one process answers three
clients in turn while the other answers one (docs/benchmarks.md, "how the workers hold the
connections"). ``BalancedThreadWorker`` fixes both halves:

* **accept only while least loaded.** The workers publish their requests in flight and their open
  connections in a small table of shared memory (created in the gunicorn master, inherited by every
  worker at fork). A worker listens for new connections only while no live sibling has fewer requests
  in flight (ties: fewer connections); a busy worker leaves them in the kernel's queue for an idle one.
  Behind a proxy that opens a connection per request (nginx's default), this alone balances every
  request;
* **move kept-alive connections off a crowded worker.** When a request arrives on a worker holding more
  than one connection above the least crowded sibling, its answer says ``Connection: close``; the client
  reconnects for its next request, and the accept rule above gives that connection to the least loaded
  worker.

A worker that dies leaves its row behind; rows whose process is gone are ignored. With one worker, or
more workers than rows, it behaves as gunicorn's own ``gthread`` worker. Use it with::

    gunicorn -k ragrec_django.balanced_worker.BalancedThreadWorker --threads 8 -w <cores> ...

(``shop_demo/gunicorn.conf.py`` does.)
"""

from __future__ import annotations

import mmap
import multiprocessing
import os

from gunicorn.workers.gthread import ThreadWorker

#: Rows of the shared table: one per live worker process.
TABLE_ROWS = 64
#: Columns of a row (64-bit integers): the process id, requests in flight, open connections.
PID, IN_FLIGHT, CONNECTIONS = range(3)
_COLUMNS = 3
#: How often (seconds) a worker looks again whether it should listen, when nothing of its own happened.
RECHECK_SECONDS = 0.05


class _LoadTable:
    """Requests in flight and open connections of every worker, in memory shared across the fork."""

    def __init__(self, rows: int = TABLE_ROWS):
        self.rows = rows
        self._memory = mmap.mmap(-1, rows * _COLUMNS * 8)  # anonymous and shared: the children see the writes
        self._cells = memoryview(self._memory).cast("q")
        self._claiming = multiprocessing.Lock()

    def claim(self, pid: int) -> int | None:
        """The row for process ``pid``: a free one, or one whose process is gone (None: the table is full)."""
        with self._claiming:
            for row in range(self.rows):
                owner = self._cells[row * _COLUMNS + PID]
                if owner == 0 or owner == pid or not _alive(owner):
                    self.write(row, in_flight=0, connections=0)
                    self._cells[row * _COLUMNS + PID] = pid
                    return row
        return None

    def release(self, row: int) -> None:
        self._cells[row * _COLUMNS + PID] = 0

    def write(self, row: int, *, in_flight: int, connections: int) -> None:
        base = row * _COLUMNS
        self._cells[base + IN_FLIGHT] = in_flight
        self._cells[base + CONNECTIONS] = connections

    def live_rows(self) -> dict[int, tuple[int, int]]:
        """{row: (in flight, connections)} of every live worker."""
        found = {}
        for row in range(self.rows):
            base = row * _COLUMNS
            pid = self._cells[base + PID]
            if pid and _alive(pid):
                found[row] = (self._cells[base + IN_FLIGHT], self._cells[base + CONNECTIONS])
        return found

    def snapshot(self) -> dict[int, tuple[int, int]]:
        """{process id: (in flight, connections)} of every live worker."""
        return {self._cells[row * _COLUMNS + PID]: load for row, load in self.live_rows().items()}

    def siblings(self, row: int) -> list[tuple[int, int]]:
        """(in flight, connections) of every other live worker."""
        return [load for other, load in self.live_rows().items() if other != row]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class BalancedThreadWorker(ThreadWorker):
    """gunicorn's ``gthread`` worker, listening only while least loaded and moving surplus keep-alive connections."""

    #: Created in the master with the first worker, before any fork; shared by all the master's workers.
    table: _LoadTable | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if BalancedThreadWorker.table is None:
            BalancedThreadWorker.table = _LoadTable()
        self.row: int | None = None
        self.in_flight = 0

    def init_process(self):
        self.row = self.table.claim(os.getpid())
        if self.row is None:
            self.log.warning("More than %d workers: worker %s does not share the load out.", TABLE_ROWS, os.getpid())
        super().init_process()

    def least_loaded(self) -> bool:
        """Whether no live sibling has fewer requests in flight (or as many and fewer connections)."""
        if self.row is None:
            return True
        mine = (self.in_flight, self.nr_conns)
        return all(mine <= theirs for theirs in self.table.siblings(self.row))

    def over_share(self) -> bool:
        """Whether this worker holds more than one connection above its least crowded sibling."""
        if self.row is None:
            return False
        fewest = min((connections for _, connections in self.table.siblings(self.row)), default=None)
        return fewest is not None and self.nr_conns > fewest + 1

    def publish(self) -> None:
        if self.row is not None:
            self.table.write(self.row, in_flight=self.in_flight, connections=self.nr_conns)

    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled and (not self.alive or self.least_loaded()))

    def wait_for_and_dispatch_events(self, timeout):
        if self.alive:
            self.publish()
            self.set_accept_enabled(self.nr_conns < self.worker_connections)
            timeout = min(timeout, RECHECK_SECONDS)  # a sibling's load changes without waking this worker
        super().wait_for_and_dispatch_events(timeout)

    def accept(self, listener):
        if self.alive and not self.least_loaded():  # a sibling became quieter since this worker last looked
            self.set_accept_enabled(False)
            return
        super().accept(listener)

    def enqueue_req(self, conn):
        self.in_flight += 1
        self.publish()
        super().enqueue_req(conn)

    def finish_request(self, conn, fs):
        self.in_flight -= 1
        super().finish_request(conn, fs)
        self.publish()

    def handle_request(self, req, conn):
        if self.over_share():
            req.must_close = True  # answered with "Connection: close": the client reconnects to a quieter worker
        return super().handle_request(req, conn)

    def run(self):
        try:
            super().run()
        finally:
            if self.row is not None:
                self.table.release(self.row)
