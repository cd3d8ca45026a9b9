"""Events the engine itself emits (journey-dsl §6), routed like any other event.

Ids are derived from what happened (enrollment, step visit), so a retried activity
emits each event once.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from engine import metrics
from engine.dispatch import ENGINE_EVENTS, Dispatcher, IncomingEvent
from engine.models import EventRow
from engine.store import utcnow

__all__ = ["ENGINE_EVENTS", "EngineEvents"]


class EngineEvents:
    """Emits engine events through a dispatcher, committing concurrent emits together.

    Every activity of a busy worker emits (``journey.entered``, ``message.sent``...), and
    one database transaction per event was a visible share of the worker's CPU
    (bench/RESULTS.md). Emits that arrive while a batch is being stored wait for the next
    batch, which stores them all in one transaction. Each caller still returns only once
    its event is stored and routed, so nothing an activity reported is lost in a crash.

    Args:
        dispatcher: Stores and routes the events.
    """

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._pending: list[tuple[IncomingEvent, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def emit(self, *, event_id: str, customer_id: str, name: str, at: datetime,
                   properties: dict[str, Any]) -> None:  # fmt: skip
        """Store and route one engine event (a duplicate id is ignored).

        Raises:
            Exception: Whatever storing the batch raised (the activity retries).
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        event = IncomingEvent(event_id=event_id, customer_id=customer_id, name=name, properties=properties,
                              timestamp=at)  # fmt: skip
        self._pending.append((event, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        # Shielded: a cancelled activity must not cancel the batch other emits are waiting on.
        await asyncio.shield(done)

    async def prepare(self, *, event_id: str, customer_id: str, name: str, at: datetime,
                      properties: dict[str, Any]) -> EventRow:  # fmt: skip
        """An engine event as a row the caller stores in the transaction of the change it reports.

        One commit instead of two, and the event cannot be lost between them. The row is
        marked dispatched when nothing listens to it (most engine events); the caller hands
        it to ``stored`` once committed.

        When the listener check fails (Redis), the row stays undispatched and is routed
        after the commit, or by recovery (``Dispatcher.mark_idle``).
        """
        event = IncomingEvent(event_id=event_id, customer_id=customer_id, name=name, properties=properties,
                              timestamp=at)  # fmt: skip
        [row] = await self.prepare_all([event])
        return row

    async def prepare_all(self, events: list[IncomingEvent]) -> list[EventRow]:
        """``prepare`` for many events, with one listener check (one Redis round trip) for all."""
        received = utcnow()
        rows = [self._dispatcher.event_row(event, received) for event in events]
        await self._dispatcher.mark_idle(rows)
        return rows

    async def stored(self, row: EventRow, *, new: bool) -> None:
        """After the caller committed ``row`` (``new``: not a duplicate id): count it, route it if it must be.

        Never raises: an event whose routing failed is stored, and recovery routes it.
        """
        metrics.EVENTS.labels("new" if new else "duplicate").inc()
        if new and row.dispatched_at is None:
            await self._dispatcher.route_stored([row])

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._dispatcher.accept([event for event, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
