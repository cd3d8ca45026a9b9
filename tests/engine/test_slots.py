"""Workflow-task slots with headroom for eager starts (engine/slots.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.worker import SlotPermit, SlotReleaseContext

from engine.slots import HeadroomSlots


@dataclass
class _Used:
    permit: SlotPermit
    slot_info: Any = None


CTX: Any = object()  # the reserve context: the supplier does not read it


def use(slots: HeadroomSlots, permit: SlotPermit) -> None:
    slots.mark_slot_used(_Used(permit))  # type: ignore[arg-type]


def release(slots: HeadroomSlots, permit: SlotPermit) -> None:
    slots.release_slot(SlotReleaseContext(slot_info=None, permit=permit))


async def test_eager_tasks_get_a_slot_only_while_fewer_than_half_work() -> None:
    slots = HeadroomSlots(4)
    working = [await slots.reserve_slot(CTX) for _ in range(2)]
    for permit in working:
        use(slots, permit)
    assert slots.try_reserve_slot(CTX) is None, "two of four work: no headroom for an eager task"
    release(slots, working.pop())
    eager = slots.try_reserve_slot(CTX)
    assert eager is not None, "one of four works: an eager task may take a slot"
    use(slots, eager)
    assert slots.working == 2


async def test_reserved_but_idle_slots_do_not_count_as_working() -> None:
    # Polls hold slots while they wait for a task; a worker with nothing to do has headroom.
    slots = HeadroomSlots(4)
    polling = [await slots.reserve_slot(CTX) for _ in range(3)]
    assert slots.working == 0 and slots.try_reserve_slot(CTX) is not None
    assert slots.try_reserve_slot(CTX) is None, "all four handed out"
    release(slots, polling[0])
    assert slots.try_reserve_slot(CTX) is not None


async def test_a_waiting_poll_gets_a_freed_slot_before_any_eager_task() -> None:
    slots = HeadroomSlots(2, eager_below=2)
    held = [await slots.reserve_slot(CTX) for _ in range(2)]
    waiter = asyncio.create_task(slots.reserve_slot(CTX))
    await asyncio.sleep(0)
    release(slots, held[0])
    assert slots.try_reserve_slot(CTX) is None, "the freed slot is the waiting poll's"
    assert isinstance(await asyncio.wait_for(waiter, 1), SlotPermit)


async def test_polls_are_served_in_the_order_they_asked() -> None:
    slots = HeadroomSlots(1)
    held = await slots.reserve_slot(CTX)
    order: list[int] = []
    waiters = []
    for n in range(3):

        async def take(n: int = n) -> SlotPermit:
            permit = await slots.reserve_slot(CTX)
            order.append(n)
            return permit

        waiters.append(asyncio.create_task(take()))
        await asyncio.sleep(0)
    release(slots, held)
    for waiter in waiters:
        release(slots, await asyncio.wait_for(waiter, 1))
    assert order == [0, 1, 2]


async def test_a_poll_cancelled_while_waiting_or_as_it_gets_the_slot_loses_no_slot() -> None:
    slots = HeadroomSlots(1, eager_below=1)
    held = await slots.reserve_slot(CTX)
    waiting = asyncio.create_task(slots.reserve_slot(CTX))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    granted = asyncio.create_task(slots.reserve_slot(CTX))
    await asyncio.sleep(0)
    release(slots, held)  # handed to ``granted``...
    granted.cancel()  # ...which is cancelled before it runs again: it must pass the slot on
    with pytest.raises(asyncio.CancelledError):
        await granted
    await asyncio.sleep(0)
    assert slots.try_reserve_slot(CTX) is not None, "the one slot is free again"
    assert slots.try_reserve_slot(CTX) is None, "and there is only one"


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        HeadroomSlots(0)
