"""Grouped SQLite calls: committed together, each failing alone, none reported done before the commit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from engine.db import make_engine
from engine.errors import NotFoundError
from engine.models import CustomerRow
from engine.store import Store, utcnow


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    yield store
    store.close()


def commits(store: Store) -> list[int]:
    seen: list[int] = []
    event.listen(store.engine, "commit", lambda conn: seen.append(1))
    return seen


async def queued_behind_a_busy_thread(store: Store, calls: list[Any]) -> list[Any]:
    """Run ``calls`` while the SQL thread is busy, so that they queue up and run as one group."""
    busy, release = threading.Event(), threading.Event()

    def hold() -> None:
        busy.set()
        release.wait(10)

    holding = asyncio.ensure_future(store.offload(hold))
    await asyncio.to_thread(busy.wait, 10)
    running = [asyncio.ensure_future(store.offload(*call)) for call in calls]
    await asyncio.sleep(0.05)
    release.set()
    await holding
    return await asyncio.gather(*running, return_exceptions=True)


async def test_calls_that_queue_up_are_committed_together(store: Store) -> None:
    committed = commits(store)
    results = await queued_behind_a_busy_thread(
        store, [(store.put_customer, f"c{i}", {"name": f"n{i}"}) for i in range(20)]
    )
    assert [r["name"] for r in results] == [f"n{i}" for i in range(20)]
    assert len(committed) == 1, "one commit for the whole group"
    assert {store.get_customer(f"c{i}")["name"] for i in range(20)} == {f"n{i}" for i in range(20)}


async def test_a_failing_call_leaves_only_its_own_writes_out(store: Store) -> None:
    def write_then_fail() -> None:
        store.put_customer("b", {"name": "B"})
        store.get_enrollment("nobody")  # raises NotFoundError

    results = await queued_behind_a_busy_thread(
        store, [(store.put_customer, "a", {"name": "A"}), (write_then_fail,), (store.put_customer, "c", {"name": "C"})]
    )
    assert results[0]["name"] == "A" and results[2]["name"] == "C"
    assert isinstance(results[1], NotFoundError)
    assert store.get_customer("a") is not None and store.get_customer("c") is not None
    # Its first session had committed (as it would have alone): that write stays.
    assert store.get_customer("b") == {"id": "b", "name": "B"}


async def test_a_call_that_fails_mid_session_rolls_back_to_its_savepoint(store: Store) -> None:
    def fail_mid_session() -> None:
        with store._session() as s:
            s.add(CustomerRow(id="b", profile={"id": "b"}, created_at=utcnow(), updated_at=utcnow()))
            s.flush()
            raise ValueError("changed its mind")

    results = await queued_behind_a_busy_thread(
        store, [(store.put_customer, "a", {}), (fail_mid_session,), (store.put_customer, "c", {})]
    )
    assert isinstance(results[1], ValueError)
    assert [store.get_customer(c) is not None for c in "abc"] == [True, False, True]


async def test_when_the_group_cannot_commit_every_call_in_it_fails(store: Store) -> None:
    failed = []

    def refuse(conn: Any) -> None:
        if not failed:
            failed.append(1)
            raise RuntimeError("disk I/O error")

    event.listen(store.engine, "commit", refuse)
    results = await queued_behind_a_busy_thread(store, [(store.put_customer, f"c{i}", {}) for i in range(3)])
    assert all(isinstance(r, RuntimeError) for r in results), "none is reported done"
    assert all(store.get_customer(f"c{i}") is None for i in range(3)), "and none is stored"
    assert (await store.offload(store.put_customer, "c0", {}))["id"] == "c0", "the retry goes through"
