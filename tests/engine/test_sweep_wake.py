"""Waking the confirmation sweep never fails the sender: failed wakes are retried in the background."""

from __future__ import annotations

import asyncio

from engine.temporal import ConfirmationSweep
from tests.helpers import eventually


class ScriptedSweep(ConfirmationSweep):
    """The sender's side of the sweep; each signal follows the script ("fail", "ok", or an event to wait for)."""

    def __init__(self, *script: str | asyncio.Event) -> None:
        super().__init__(None, task_queue="q", retry_after_s=0.01)  # type: ignore[arg-type]
        self.script = list(script)
        self.calls: list[str] = []

    async def signal(self) -> None:
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, asyncio.Event):
            await step.wait()
            step = "ok"
        self.calls.append(step)
        if step == "fail":
            raise RuntimeError("Temporal unavailable")


async def test_a_failed_wake_does_not_fail_the_sender_and_is_retried_until_it_succeeds() -> None:
    sweep = ScriptedSweep("fail", "fail", "ok")
    await sweep()
    assert sweep.retrying
    await eventually(lambda: asyncio.sleep(0, sweep.calls), until=lambda calls: calls == ["fail", "fail", "ok"])
    await eventually(lambda: asyncio.sleep(0, sweep.retrying), until=lambda retrying: not retrying)


async def test_a_wake_that_fails_while_a_retry_is_under_way_is_owed_a_later_signal() -> None:
    # The second sender's task may have been committed after the in-flight signal reached the
    # sweep, whose last count could then miss it: only a signal that begins later covers it.
    in_flight = asyncio.Event()
    sweep = ScriptedSweep("fail", in_flight, "fail", "ok")
    await sweep()
    await asyncio.sleep(0.05)  # the retry's signal is under way
    await sweep()
    in_flight.set()
    await eventually(lambda: asyncio.sleep(0, sweep.calls), until=lambda calls: calls == ["fail", "fail", "ok", "ok"])
    await eventually(lambda: asyncio.sleep(0, sweep.retrying), until=lambda retrying: not retrying)
    assert len(sweep.calls) == 4, "no signal more than owed"


async def test_a_successful_wake_starts_no_retry() -> None:
    sweep = ScriptedSweep("ok")
    await sweep()
    assert sweep.calls == ["ok"] and not sweep.retrying
