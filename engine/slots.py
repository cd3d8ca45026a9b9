"""Workflow-task slots of a worker that take eager starts only while the worker has headroom.

An enrollment started on a client that a worker shares (``journeys up``: the API and the
worker in one process) asks Temporal for eager execution: the run's first workflow task
comes back in the start's answer, in a slot the worker reserves on the spot, instead of
through the task queue (engine/temporal.py ``start_enrollment``). With the SDK's fixed-size
slots, a worker that is behind hands every slot it frees to the next eager start, ahead of
the tasks already queued on the server: in a one-process run at 50 events/s the starts that
found no free slot waited 11.6 s (median) for their first task while the eager ones waited
none (bench/RESULTS.md). Timers that fall due and a send's follow-up are such queued tasks.

These slots are the same fixed number, handed out in the order they were asked for; an
eager start gets one only while fewer than half of them are working on a task and no poll
waits for one. A busy worker thus takes its work from the task queue, first come first
served, and a worker with room to spare still saves the round trip.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

from temporalio.worker import (
    CustomSlotSupplier,
    SlotMarkUsedContext,
    SlotPermit,
    SlotReleaseContext,
    SlotReserveContext,
)


class _Permit(SlotPermit):
    """A slot handed out; ``working`` once a task runs in it."""

    def __init__(self) -> None:
        self.working = False


class HeadroomSlots(CustomSlotSupplier):
    """``size`` workflow-task slots; eager tasks only while fewer than ``eager_below`` work.

    The SDK calls ``try_reserve_slot``, ``mark_slot_used`` and ``release_slot`` from its own
    threads and awaits ``reserve_slot`` on the worker's event loop, hence the lock and the
    thread-safe hand-over to a waiting poll.

    Args:
        size: Slots in all (``JOURNEYS_WORKER_WORKFLOW_TASKS``).
        eager_below: An eager task gets a slot only while fewer slots than this are working
            (default: half of ``size``, at least 1).
    """

    def __init__(self, size: int, eager_below: int | None = None) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._lock = threading.Lock()
        self.size = size
        self._free = size
        self._working = 0
        self._eager_below = eager_below if eager_below is not None else max(1, size // 2)
        self._waiting: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def working(self) -> int:
        """Slots whose task is running now."""
        return self._working

    async def reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit:
        """A slot for a poll: at once if one is free and nobody waits, else in turn."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiting:
                self._free -= 1
                return _Permit()
            turn: asyncio.Future[None] = loop.create_future()
            self._waiting.append((loop, turn))
        try:
            await turn
        except asyncio.CancelledError:
            with self._lock:
                if (loop, turn) in self._waiting:
                    self._waiting.remove((loop, turn))
                    raise
            self._free_one()  # it was handed to us as we were cancelled: pass it on
            raise
        return _Permit()

    def try_reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit | None:
        """A slot for an eager task, only while the worker has headroom and no poll waits."""
        with self._lock:
            if self._free > 0 and not self._waiting and self._working < self._eager_below:
                self._free -= 1
                return _Permit()
        return None

    def mark_slot_used(self, ctx: SlotMarkUsedContext) -> None:
        """A task now runs in the slot."""
        permit = ctx.permit
        with self._lock:
            if isinstance(permit, _Permit) and not permit.working:
                permit.working = True
                self._working += 1

    def release_slot(self, ctx: SlotReleaseContext) -> None:
        """The slot is given back: to the longest-waiting poll, or to the free ones."""
        permit = ctx.permit
        with self._lock:
            if isinstance(permit, _Permit) and permit.working:
                permit.working = False
                self._working -= 1
        self._free_one()

    def _free_one(self) -> None:
        """Hand a slot to the longest-waiting poll, or add it to the free ones.

        A waiter cancelled meanwhile gets it all the same: its ``reserve_slot`` passes it on.
        """
        with self._lock:
            if not self._waiting:
                self._free += 1
                return
            loop, turn = self._waiting.popleft()
        try:
            loop.call_soon_threadsafe(_grant, turn)
        except RuntimeError:  # its loop has closed: the worker is gone, and the slot with it
            pass


def _grant(turn: asyncio.Future[None]) -> None:
    if not turn.done():
        turn.set_result(None)
