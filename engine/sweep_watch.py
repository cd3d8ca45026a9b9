"""Keeps the confirmation sweep running while mass-send tasks wait for WeCom's confirmation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from engine.store import Store
from engine.temporal import ConfirmationSweep

log = logging.getLogger(__name__)

WATCH_EVERY_S = 60.0


class SweepWatch:
    """Starts the task queue's confirmation sweep when tasks wait and no round will count them.

    Senders wake the sweep after they log a task, and a wake Temporal refuses is retried in
    the background of that process (``engine.temporal.ConfirmationSweep``). What that cannot
    cover: the process stopping before its retry succeeds, a sweep terminated by hand while
    its promise stands, or one lost with a Temporal server's data. Each would leave tasks
    waiting for nobody until the next send. So every worker watches: as it starts it signals
    whenever tasks wait (a promise may be left by a sweep that no longer runs), and then
    every ``every_s`` whenever tasks wait and no round is promised (a promise lapses within
    20 s of its sweep's last round). A signal to a running sweep only keeps it from ending
    before it looks again.

    Args:
        store: Where the waiting tasks are counted.
        sweep: Wakes the sweep (with start), trusting its promise or not.
        every_s: Time between two looks.
    """

    def __init__(self, store: Store, sweep: ConfirmationSweep, *, every_s: float = WATCH_EVERY_S) -> None:
        self._store = store
        self._sweep = sweep
        self._every_s = every_s

    async def check(self, *, trust_promise: bool = True) -> bool:
        """Signal the sweep if tasks wait (and, trusting the promise, none is promised a round).

        Returns:
            Whether the sweep was signalled.

        Raises:
            Exception: Counting or signalling failed (``run`` logs it and looks again).
        """
        if await self._store.offload(self._store.waiting_confirmations) == 0:
            return False
        return await self._sweep.wake(trust_promise=trust_promise)

    async def run(self) -> None:
        """Look now and every ``every_s`` until cancelled; failures are logged, never raised."""
        started = False
        while True:
            try:
                if await self.check(trust_promise=started):
                    log.info("confirmation sweep signalled: tasks wait for confirmation")
                started = True
            except Exception as exc:  # noqa: BLE001 - the next look tries again
                log.warning("could not check on the confirmation sweep (%s); looking again in %.0f s",
                            exc, self._every_s)  # fmt: skip
            await asyncio.sleep(self._every_s)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Watch in the background for as long as the ``async with`` block runs."""
        watching = asyncio.create_task(self.run(), name="confirmation-sweep-watch")
        try:
            yield
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
