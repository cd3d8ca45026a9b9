"""Engine events: concurrent emits are stored together, and each caller learns its batch's fate."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from engine.db import make_engine
from engine.dispatch import Dispatcher, IncomingEvent
from engine.embedded import free_port
from engine.emitter import EngineEvents
from engine.store import Store


class SlowDispatcher:
    """Stands in for the dispatcher: records batches; each takes a moment to store."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.fail = fail

    async def accept(self, events: list[IncomingEvent]) -> list[Any]:
        self.batches.append([e.event_id for e in events])
        await asyncio.sleep(0.01)
        if self.fail:
            raise RuntimeError("database is locked")
        return []


def emit(events: EngineEvents, i: int) -> Any:
    return events.emit(event_id=f"e{i}", customer_id=f"c{i}", name="message.sent",
                       at=datetime(2026, 11, 23, tzinfo=UTC), properties={})  # fmt: skip


async def test_concurrent_emits_share_transactions_and_all_are_stored() -> None:
    dispatcher = SlowDispatcher()
    events = EngineEvents(dispatcher)  # type: ignore[arg-type]
    await asyncio.gather(*(emit(events, i) for i in range(50)))
    stored = [eid for batch in dispatcher.batches for eid in batch]
    assert sorted(stored) == sorted(f"e{i}" for i in range(50)), "every event once"
    assert len(dispatcher.batches) <= 2, dispatcher.batches
    await emit(events, 99)  # an emit after the writer went idle starts a new one
    assert dispatcher.batches[-1] == ["e99"]


async def test_a_failed_batch_fails_every_caller_in_it() -> None:
    dispatcher = SlowDispatcher(fail=True)
    events = EngineEvents(dispatcher)  # type: ignore[arg-type]
    results = await asyncio.gather(*(emit(events, i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    dispatcher.fail = False
    await emit(events, 7)  # the activity's retry goes through
    assert dispatcher.batches[-1] == ["e7"]


async def test_a_cancelled_caller_does_not_cancel_the_batch() -> None:
    dispatcher = SlowDispatcher()
    events = EngineEvents(dispatcher)  # type: ignore[arg-type]
    first = asyncio.create_task(emit(events, 1))
    second = asyncio.create_task(emit(events, 2))
    await asyncio.sleep(0)
    first.cancel()
    await second
    with pytest.raises(asyncio.CancelledError):
        await first
    assert dispatcher.batches == [["e1", "e2"]]


async def test_a_prepared_event_whose_listeners_are_unknown_is_left_to_routing(tmp_path: Path) -> None:
    # A send prepares its message.sent before delivering; Redis not answering must not stop
    # it, nor mark the event as one nobody listens to.
    unreachable = Redis(port=free_port(), socket_connect_timeout=1)
    dispatcher = Dispatcher(Store(make_engine(f"sqlite:///{tmp_path / 'j.db'}")), unreachable, None,  # type: ignore[arg-type]
                            task_queue="q")  # fmt: skip
    row = await EngineEvents(dispatcher).prepare(event_id="e1", customer_id="c1", name="message.sent",
                                                 at=datetime(2026, 11, 23, tzinfo=UTC), properties={})  # fmt: skip
    assert (row.event_id, row.dispatched_at) == ("e1", None), "undispatched: routed once stored, or by recovery"
    await unreachable.aclose()
