"""Where the store's blocking database calls run: threads of their own, and on SQLite, grouped.

SQLite takes one writer at a time, so one thread runs every call. Calls that queue up while
it is busy run together in one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), each of
their sessions in a savepoint of its own: one commit, and one wake-up of the event loop, for
the group instead of one per call. A busy worker makes about forty database calls a second
per core, and the commits and the thread hand-offs were a large share of its CPU
(bench/RESULTS.md). A call still returns only once its writes are committed: if the group's
commit fails, every call in the group fails (callers are retried activities and requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection
from sqlalchemy.engine import Engine

P = ParamSpec("P")
R = TypeVar("R")
#: SQL threads per process on PostgreSQL, whose server runs statements side by side.
SERVER_DB_THREADS = 8
#: Most calls one SQLite transaction takes (a group holds the write lock while it runs).
GROUP_LIMIT = 64

_Outcome = tuple[bool, Any]  # (succeeded, value or exception)
_Pending = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class SqlRunner:
    """Runs blocking database calls off the event loop.

    Args:
        engine: The store's engine.
        threads: Default: one on SQLite (its one writer at a time makes more threads queue
            on its file lock while they contend for the GIL: a busy worker spent twice the
            CPU per call with six, and waited five times longer), ``SERVER_DB_THREADS`` on
            PostgreSQL. Calls are grouped only with one thread on SQLite.
    """

    def __init__(self, engine: Engine, threads: int | None = None) -> None:
        self._engine = engine
        sqlite = engine.dialect.name == "sqlite"
        if threads is None:
            threads = 1 if sqlite else SERVER_DB_THREADS
        # Threads of its own, not the event loop's default executor: that one also resolves
        # host names, and a slow DNS answer must not hold up the database (or the reverse).
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sql")
        self._grouping = sqlite and threads == 1
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._draining = False
        self._local = threading.local()

    def group_connection(self) -> Connection | None:
        """The connection of the group the calling thread is running, if any (see ``Store._session``)."""
        return getattr(self._local, "conn", None)

    async def run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` on the SQL threads and return its result once its writes are committed.

        Like ``asyncio.to_thread``: the caller's context variables go along.
        """
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        loop = asyncio.get_running_loop()
        if not self._grouping:
            return await loop.run_in_executor(self._executor, call)
        done: asyncio.Future[R] = loop.create_future()
        with self._lock:
            self._pending.append((call, done, loop))
            start, self._draining = not self._draining, True
        if start:
            self._executor.submit(self._drain)
        return await done

    def close(self) -> None:
        """Stop the threads once the calls under way are done."""
        self._executor.shutdown(wait=True)

    def _drain(self) -> None:
        """On the SQL thread: run what is pending, group by group, until nothing is."""
        while True:
            with self._lock:
                group, self._pending = self._pending[:GROUP_LIMIT], self._pending[GROUP_LIMIT:]
                if not group:
                    self._draining = False
                    return
            calls = [call for call, _, _ in group]
            outcomes = self._run_group(calls) if len(calls) > 1 else [_outcome(calls[0])]
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], _Outcome]]] = defaultdict(list)
            for (_, done, loop), outcome in zip(group, outcomes, strict=True):
                by_loop[loop].append((done, outcome))
            for loop, settled in by_loop.items():
                with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                    loop.call_soon_threadsafe(_settle, settled)

    def _run_group(self, calls: list[Callable[[], Any]]) -> list[_Outcome]:
        """Run calls in one transaction; a call that raises leaves only its own writes out."""
        with self._engine.connect() as conn:
            try:
                # Take the write lock first: a read-then-write transaction in WAL mode would
                # fail outright (not wait) if another writer committed in between.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                self._local.conn = conn
                try:
                    outcomes = [_outcome(call) for call in calls]
                finally:
                    self._local.conn = None
                conn.commit()
            except BaseException as exc:  # noqa: BLE001 - the group is not committed: every call failed
                # Discard the connection: closing it is what surely ends its transaction (a
                # failed commit can leave one open, holding the write lock, in a pooled one).
                conn.invalidate()
                return [(False, exc)] * len(calls)
        return outcomes


def _outcome(call: Callable[[], Any]) -> _Outcome:
    try:
        return True, call()
    except BaseException as exc:  # noqa: BLE001 - handed to the caller; the drain must go on
        return False, exc


def _settle(settled: list[tuple[asyncio.Future[Any], _Outcome]]) -> None:
    """On the event loop: hand each caller its result (a caller that gave up is skipped)."""
    for done, (ok, value) in settled:
        if done.cancelled():
            continue
        if ok:
            done.set_result(value)
        else:
            done.set_exception(value)
