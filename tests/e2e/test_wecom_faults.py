"""Delivery under WeCom faults, on the real stack (dev server, Redis, SQLite, fake WeCom over HTTP)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from engine.compiler import compile_text
from engine.dispatch import Dispatcher, IncomingEvent
from engine.lifecycle import Lifecycle
from engine.runtime import Runtime
from engine.sweep_promise import promise_key
from engine.worker import build_worker, confirmation_sweep_watch
from tests.conftest import Stack
from tests.helpers import eventually

SENDS = 200


async def private_runtime(stack: Stack, yaml_text: str, **settings: object) -> tuple[Runtime, str]:
    """A runtime of its own (task queue, WeCom settings) on the shared servers, with one active journey."""
    plan = compile_text(yaml_text)
    overrides = {"temporal_task_queue": f"{plan.journey_id}-{uuid.uuid4().hex[:8]}", **settings}
    rt = await Runtime.open(stack.rt.settings.model_copy(update=overrides), temporal=stack.rt.temporal)
    await asyncio.to_thread(rt.store.create_version, yaml_text=yaml_text, plan=plan, author="test")
    await Lifecycle(rt.store, rt.redis, rt.temporal, task_queue=rt.settings.temporal_task_queue).activate(
        plan.journey_id
    )
    return rt, rt.settings.temporal_task_queue


async def test_every_message_delivered_exactly_once_under_twenty_percent_faults(stack: Stack) -> None:
    jid = f"faults-{uuid.uuid4().hex[:6]}"
    rt, queue = await private_runtime(stack, f"""
journey: {jid}
trigger: {{event: fault.test}}
steps:
  - send: {{channel: wecom.app, to: "staff{{{{ trigger.n }}}}", text: "{jid} #{{{{ trigger.n }}}}"}}
    timeout: 10s
    retry: {{max_attempts: 30, initial: 1s, backoff: 1.0, max_interval: 1s}}
""", wecom_timeout_s=1.0)  # fmt: skip
    fake = stack.fake_state
    random.seed(20261122)
    calls_before, revocations_before = fake.gettoken_calls, fake.revocations
    try:
        fake.config.fail_rate, fake.config.fail_errcodes, fake.config.timeout_s = 0.2, [-1, 45009, 42001, 0], 2.0
        dispatcher = Dispatcher(rt.store, rt.redis, rt.temporal, task_queue=queue)
        async with build_worker(rt):
            await dispatcher.accept([IncomingEvent(event_id=f"{jid}-{n}", customer_id=f"{jid}-c{n}", name="fault.test",
                                                   properties={"n": n}) for n in range(SENDS)])  # fmt: skip

            async def delivered() -> Counter:
                return Counter(m["text"] for m in fake.listing(delivered_only=True) if m["text"].startswith(jid))

            await eventually(delivered, until=lambda c: len(c) == SENDS, timeout=180, interval=0.5)

            async def log() -> list:
                return await asyncio.to_thread(stack.rt.store.list_messages, journey_id=jid, limit=1000)

            # Late answers (processed, then the client gave up) settle through a retry.
            await eventually(log, until=lambda rows: len(rows) == SENDS and all(r.status == "sent" for r in rows),
                             timeout=60, interval=0.5)  # fmt: skip
            counts = await delivered()
    finally:
        fake.config.fail_rate, fake.config.fail_errcodes = 0.0, None
        await rt.close()
    faults = Counter(fake.faults_injected)
    assert all(faults[code] > 0 for code in (-1, 45009, 42001, 0)), faults
    assert sorted(counts.values()) == [1] * SENDS, "every message reaches the fake exactly once"
    revocations = fake.revocations - revocations_before
    assert fake.gettoken_calls - calls_before <= 1 + revocations
    accepted = {m["msgid"] for m in fake.listing() if m["text"] and m["text"].startswith(jid)}
    log = stack.rt.store.list_messages(journey_id=jid, limit=1000)
    assert len(log) == SENDS and all(row.status == "sent" for row in log)
    assert all((row.response or {}).get("msgid") in accepted for row in log), "nothing marked sent that WeCom lacks"


async def test_customer_mass_send_waits_for_confirmation_and_respects_the_quota(stack: Stack) -> None:
    jid = f"confirm-{uuid.uuid4().hex[:6]}"
    rt, queue = await private_runtime(stack, f"""
journey: {jid}
trigger: {{event: promo, key: event.n}}
steps:
  - send: {{channel: wecom.customer, sender: zhangsan, text: "{jid} #{{{{ trigger.n }}}}"}}
""", wecom_confirm_poll_s=0.5)  # fmt: skip
    fake = stack.fake_state
    try:
        fake.config.auto_confirm, fake.config.monthly_quota = False, 1
        await asyncio.to_thread(rt.store.put_customer, f"{jid}-c", {"external_userid": f"wm-{jid}"})
        dispatcher = Dispatcher(rt.store, rt.redis, rt.temporal, task_queue=queue)
        async with build_worker(rt):
            for n in (1, 2):
                await dispatcher.accept([IncomingEvent(event_id=f"{jid}-{n}", customer_id=f"{jid}-c", name="promo",
                                                       properties={"n": n})])  # fmt: skip

            async def log() -> list:
                return await asyncio.to_thread(rt.store.list_messages, journey_id=jid)

            await eventually(log, until=lambda rows: len(rows) == 2)
            await asyncio.sleep(1.5)  # the tracker asks WeCom a few times meanwhile
            rows = await log()
            assert [r.status for r in rows] == ["pending_confirmation", "pending_confirmation"]
            assert not any(m["delivered"] for m in fake.listing() if (m["text"] or "").startswith(jid))
            # One sweep for the task queue follows both tasks; no workflow per message.
            sweep = await rt.temporal.get_workflow_handle(f"confirmations/{queue}").describe()
            assert sweep.status == WorkflowExecutionStatus.RUNNING
            for row in rows:
                with pytest.raises(RPCError):
                    await rt.temporal.get_workflow_handle(f"track/{row.response['msgid']}").describe()
                fake.confirm(row.response["msgid"])
            done = await eventually(log, until=lambda rows: all(r.status != "pending_confirmation" for r in rows))

            async def sweep_status() -> WorkflowExecutionStatus | None:
                return (await rt.temporal.get_workflow_handle(f"confirmations/{queue}").describe()).status

            await eventually(sweep_status, until=lambda s: s == WorkflowExecutionStatus.COMPLETED)  # nothing waits
    finally:
        fake.config.auto_confirm, fake.config.monthly_quota = True, None
        await rt.close()
    assert sorted((r.status, r.reason) for r in done) == [("failed", "quota_exceeded"), ("sent", None)]


async def test_sends_skip_the_sweep_signal_while_it_promises_another_round(stack: Stack) -> None:
    jid = f"promise-{uuid.uuid4().hex[:6]}"
    rt, queue = await private_runtime(stack, f"""
journey: {jid}
trigger: {{event: promised}}
steps:
  - send: {{channel: wecom.customer, sender: zhangsan, text: "{jid} #{{{{ trigger.n }}}}"}}
""", wecom_confirm_poll_s=0.5)  # fmt: skip
    fake = stack.fake_state
    sweep_id = f"confirmations/{queue}"

    async def post(n: int) -> None:
        customer = f"{jid}-c{n}"
        await asyncio.to_thread(rt.store.put_customer, customer, {"external_userid": f"wm-{customer}"})
        await dispatcher.accept([IncomingEvent(event_id=f"{jid}-{n}", customer_id=customer, name="promised",
                                               properties={"n": n})])  # fmt: skip

    async def log() -> list:
        return await asyncio.to_thread(rt.store.list_messages, journey_id=jid, limit=100)

    async def signals(run_id: str) -> int:
        history = await rt.temporal.get_workflow_handle(sweep_id, run_id=run_id).fetch_history()
        return sum(1 for e in history.events if e.HasField("workflow_execution_signaled_event_attributes"))

    async def sweep_status() -> WorkflowExecutionStatus | None:
        return (await rt.temporal.get_workflow_handle(sweep_id).describe()).status

    async def sweep_run() -> str:
        # The send logs its task before it starts the sweep: the sweep may not exist yet.
        try:
            return (await rt.temporal.get_workflow_handle(sweep_id).describe()).run_id or ""
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return ""

    try:
        fake.config.auto_confirm = False
        dispatcher = Dispatcher(rt.store, rt.redis, rt.temporal, task_queue=queue)
        async with build_worker(rt):
            await post(0)
            await eventually(log, until=lambda rows: len(rows) == 1)
            first_run = await eventually(sweep_run, until=bool)
            await eventually(lambda: rt.redis.exists(promise_key(queue)), until=bool)  # a round promised another
            for n in range(1, 20):
                await post(n)
            await eventually(log, until=lambda rows: len(rows) == 20 and
                             all(r.status == "pending_confirmation" for r in rows))  # fmt: skip
            assert await signals(first_run) <= 3, "20 waiting tasks, and the sweep was signalled for few of them"
            # Terminated by hand, the sweep leaves its promise: the next send does not restart it...
            await rt.temporal.get_workflow_handle(sweep_id).terminate("by hand")
            await post(20)
            await eventually(log, until=lambda rows: len(rows) == 21)
            assert await sweep_status() == WorkflowExecutionStatus.TERMINATED
            # ...a worker's watch does: as the worker starts, whatever the promise...
            watch = confirmation_sweep_watch(rt, every_s=0.2)
            assert await watch.check(trust_promise=False)
            assert await sweep_status() == WorkflowExecutionStatus.RUNNING
            # ...and later, once the promise has lapsed, without a send to wake it.
            async with watch.running():
                await rt.temporal.get_workflow_handle(sweep_id).terminate("by hand, again")

                async def lapsed_then_status() -> WorkflowExecutionStatus | None:
                    # Lapsed as it would within 20 s; again, should the terminated round's
                    # activity have written it late.
                    await rt.redis.delete(promise_key(queue))
                    return await sweep_status()

                await eventually(lapsed_then_status, until=lambda s: s == WorkflowExecutionStatus.RUNNING)
            for row in await log():
                fake.confirm(row.response["msgid"])
            done = await eventually(log, until=lambda rows: all(r.status == "sent" for r in rows), timeout=30)
            await eventually(sweep_status, until=lambda s: s == WorkflowExecutionStatus.COMPLETED)  # nothing waits
            assert not await rt.redis.exists(promise_key(queue)), "the ended sweep withdrew its promise"
            assert not await watch.check(trust_promise=False), "nothing waits: no sweep to start"
    finally:
        fake.config.auto_confirm = True
        await rt.close()
    assert len(done) == 21
