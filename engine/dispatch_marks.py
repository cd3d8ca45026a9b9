"""Marking routed events dispatched, in batches and off the caller's path.

Marking an event dispatched only tells recovery not to route it again: the event was
stored before it was routed, so a mark that is late, or lost with the process, costs at
most a second routing, which enrollments absorb (they drop repeated event ids, and
admission is unique per trigger event). So the API need not wait for the mark before
answering 202, and the marks of many events can share one SQL thread trip and one commit
instead of one each (every commit also takes SQLite's write lock from the worker).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from engine.store import Store

log = logging.getLogger("journeys.dispatch")

#: How long a routed event waits for others to share its mark's commit.
MARK_DELAY_S = 0.05

#: Most marks one statement writes.
MARK_BATCH = 500


class PendingMarks:
    """Event ids routed but not yet marked dispatched; written together, soon after.

    Args:
        store: Where the marks are written.
        delay_s: How long the first pending mark waits for company.
        batch: Most marks one statement writes.
    """

    def __init__(self, store: Store, *, delay_s: float = MARK_DELAY_S, batch: int = MARK_BATCH) -> None:
        self._store = store
        self._delay_s = delay_s
        self._batch = batch
        self._pending: list[str] = []
        self._writer: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Future[None]] = set()  # under way: their marks left ``_pending``

    @property
    def pending(self) -> int:
        """How many marks wait to be written."""
        return len(self._pending)

    def add(self, event_ids: Iterable[str]) -> None:
        """Mark these events dispatched soon (never raises: a lost mark means a re-route)."""
        self._pending.extend(event_ids)
        if self._pending and self._writer is None:
            self._writer = asyncio.create_task(self._drain())

    async def flush(self) -> None:
        """Write every pending mark now (before recovery looks for undispatched events, and at close)."""
        while self._pending:
            await self._write()
        if self._writes:  # marks taken by the writer and not committed yet
            await asyncio.wait(set(self._writes))

    async def close(self) -> None:
        """Flush, and stop the writer's wait."""
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()

    async def _drain(self) -> None:
        # One writer at a time; it ends when nothing is pending, with no await between the
        # check and the reset, so a mark added later always starts a new one.
        try:
            while self._pending:
                await asyncio.sleep(self._delay_s)
                while self._pending:
                    await self._write()
        finally:
            self._writer = None

    async def _write(self) -> None:
        ids = self._pending[: self._batch]
        del self._pending[: self._batch]
        if not ids:
            return
        write = asyncio.ensure_future(self._store.offload(self._store.mark_dispatched, ids))
        self._writes.add(write)
        try:
            await asyncio.shield(write)  # a cancelled caller leaves the write to finish
        except Exception:  # noqa: BLE001 - the events stay undispatched; recovery routes them again
            log.exception("marking %d events dispatched failed; recovery routes them again", len(ids))
        finally:
            if write.done():
                self._writes.discard(write)
            else:
                write.add_done_callback(self._writes.discard)
