"""Dispatch marks written in batches, off the caller's path, on a real SQLite store, and at a worker's close."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from activities.wecom.client import WeComClient, WeComCredentials
from engine.config import Settings
from engine.db import make_engine
from engine.dispatch import Dispatcher
from engine.dispatch_marks import PendingMarks
from engine.embedded import ChildProcess
from engine.models import EventRow
from engine.registry import ActivityRegistry
from engine.runtime import Runtime, connect_redis
from engine.store import Store, utcnow
from engine.worker import activities_for
from tests.helpers import eventually


class CountingStore(Store):
    """The real store, counting its mark writes; one can be made to fail or to wait."""

    def __init__(self, url: str) -> None:
        super().__init__(make_engine(url))
        self.writes: list[list[str]] = []
        self.fail_next = False
        self.release = threading.Event()
        self.release.set()

    def mark_dispatched(self, event_ids: Sequence[str]) -> None:
        self.release.wait(timeout=30)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("database is locked")
        self.writes.append(list(event_ids))
        super().mark_dispatched(event_ids)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CountingStore]:
    s = CountingStore(f"sqlite:///{tmp_path / 'marks.db'}")
    s.insert_events([EventRow(event_id=f"e{i}", customer_id="c1", name="ping", properties={}, timestamp=utcnow(),
                              received_at=utcnow()) for i in range(12)])  # fmt: skip
    yield s
    s.release.set()
    s.close()


def undispatched(store: Store) -> set[str]:
    return {row.event_id for row in store.undispatched_events(received_before=utcnow() + timedelta(minutes=1))}


async def test_marks_added_close_together_share_one_write(store: CountingStore) -> None:
    marks = PendingMarks(store, delay_s=0.2)
    marks.add(["e0", "e1"])
    await asyncio.sleep(0.01)
    marks.add(["e2"])
    marks.add([])
    assert undispatched(store) >= {"e0", "e1", "e2"}, "nothing is written before the delay"
    await eventually(lambda: asyncio.sleep(0, undispatched(store)), until=lambda left: not left & {"e0", "e1", "e2"})
    assert store.writes == [["e0", "e1", "e2"]]
    assert marks.pending == 0


async def test_a_long_batch_is_written_in_statements_of_bounded_size(store: CountingStore) -> None:
    marks = PendingMarks(store, delay_s=3600, batch=5)
    marks.add(f"e{i}" for i in range(12))
    await marks.close()
    assert [len(w) for w in store.writes] == [5, 5, 2]
    assert undispatched(store) == set()


async def test_flush_writes_now_and_waits_for_a_write_under_way(store: CountingStore) -> None:
    marks = PendingMarks(store, delay_s=0.0)
    store.release.clear()
    marks.add(["e0"])
    await asyncio.sleep(0.05)  # the writer took e0 and waits on the database
    assert marks.pending == 0 and "e0" in undispatched(store)
    marks.add(["e1"])
    flushing = asyncio.create_task(marks.flush())
    await asyncio.sleep(0.05)
    assert not flushing.done(), "flush waits for the write that holds e0"
    store.release.set()
    await asyncio.wait_for(flushing, 10)
    assert not undispatched(store) & {"e0", "e1"}


async def test_a_failed_write_leaves_its_events_to_recovery_and_later_marks_still_land(store: CountingStore) -> None:
    marks = PendingMarks(store, delay_s=0.01)
    store.fail_next = True
    marks.add(["e0"])
    await eventually(lambda: asyncio.sleep(0, marks.pending), until=lambda n: n == 0)
    await marks.flush()
    assert "e0" in undispatched(store), "still undispatched: recovery routes it again"
    marks.add(["e1"])
    await marks.flush()
    assert "e1" not in undispatched(store)


async def test_a_workers_pending_marks_are_written_as_its_runtime_closes(
    store: CountingStore, redis_server: ChildProcess, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{redis_server.port}/0")
    redis, http = connect_redis(settings), httpx.AsyncClient()
    wecom = WeComClient(http, redis, WeComCredentials(base_url="http://127.0.0.1:9", corp_id="ww1", agent_id=1,
                                                      app_secret="s", contact_secret="s"))  # fmt: skip
    rt = Runtime(settings=settings, store=store, redis=redis, http=http, wecom=wecom, temporal=None)  # type: ignore[arg-type]
    closed: list[str] = []

    async def broken() -> None:
        closed.append("broken")
        raise RuntimeError("cannot close")

    rt.close_with(broken)
    activities_for(rt, registry=ActivityRegistry())
    dispatcher = rt.closers[-1].__self__  # type: ignore[attr-defined]
    assert isinstance(dispatcher, Dispatcher), "the worker's dispatcher closes with the runtime"
    dispatcher.marks.add(["e0", "e1"])  # engine events routed just before the worker stops
    await rt.close()
    assert not undispatched(store) & {"e0", "e1"}, "written at close, not left for recovery to route again"
    assert closed == ["broken"] and "closing" in caplog.text, "a failing closer is logged; the rest still close"
    assert rt.http.is_closed
