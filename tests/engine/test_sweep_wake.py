"""Waking the confirmation sweep never fails the sender, and a worker's watch restarts a sweep nobody woke."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from engine.sweep_watch import SweepWatch
from engine.temporal import ConfirmationSweep
from tests.helpers import eventually


class ScriptedSweep(ConfirmationSweep):
    """The sender's side of the sweep; each signal follows the script ("fail", "ok", or an event to wait for)."""

    def __init__(self, *script: str | asyncio.Event, promise: Any = None) -> None:
        super().__init__(None, task_queue="q", promise=promise, retry_after_s=0.01)  # type: ignore[arg-type]
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


class Promise:
    """The sweep's promise: standing, lapsed, or unreadable (``broken``)."""

    def __init__(self, *, stands: bool = False, broken: bool = False) -> None:
        self.stands = stands
        self.broken = broken

    async def holds(self) -> bool:
        if self.broken:
            raise ConnectionError("Redis went away mid-reply")
        return self.stands


class WaitingTasks:
    """The store's count of tasks waiting for confirmation (``fail`` raises instead)."""

    def __init__(self, waiting: int) -> None:
        self.waiting = waiting
        self.fail = False

    def waiting_confirmations(self) -> int:
        if self.fail:
            raise OSError("database is locked")
        return self.waiting

    async def offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


async def test_an_unreadable_promise_does_not_fail_the_sender_either() -> None:
    sweep = ScriptedSweep("ok", promise=Promise(broken=True))
    await sweep()  # the promise check raised something other than a Redis error: still no exception
    await eventually(lambda: asyncio.sleep(0, sweep.calls), until=lambda calls: calls == ["ok"])


async def test_the_watch_signals_only_while_tasks_wait_and_no_round_is_promised() -> None:
    store, promise = WaitingTasks(0), Promise(stands=True)
    sweep = ScriptedSweep(promise=promise)
    watch = SweepWatch(store, sweep)  # type: ignore[arg-type]
    assert not await watch.check(trust_promise=False), "nothing waits"
    store.waiting = 3
    assert not await watch.check(), "a round is promised: it will count them"
    assert await watch.check(trust_promise=False), "as a worker starts, the promise may be a dead sweep's"
    promise.stands = False
    assert await watch.check(), "tasks wait and nothing will count them"
    assert sweep.calls == ["ok", "ok"]


async def test_the_watch_keeps_looking_after_failures_and_stops_with_its_block() -> None:
    store, promise = WaitingTasks(2), Promise(stands=True)
    sweep = ScriptedSweep("fail", "ok", "ok", "ok", "ok", "ok", promise=promise)
    store.fail = True
    watch = SweepWatch(store, sweep, every_s=0.01)  # type: ignore[arg-type]
    async with watch.running():
        await asyncio.sleep(0.05)
        assert sweep.calls == [], "the count failed: nothing known, nothing signalled"
        store.fail = False
        # The first look that succeeds is a starting look: it signals although a round is promised.
        await eventually(lambda: asyncio.sleep(0, sweep.calls), until=lambda calls: calls == ["fail", "ok"])
        await asyncio.sleep(0.05)
        assert sweep.calls == ["fail", "ok"], "once started, the standing promise is trusted"
        promise.stands = False  # the sweep was terminated by hand and its promise lapsed
        await eventually(lambda: asyncio.sleep(0, len(sweep.calls)), until=lambda n: n >= 3)
    calls = len(sweep.calls)
    await asyncio.sleep(0.05)
    assert len(sweep.calls) == calls, "the watch stopped with its block"
