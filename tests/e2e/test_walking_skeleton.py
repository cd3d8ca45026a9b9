"""End to end on the real stack: YAML over HTTP -> Temporal workflow -> timer -> WeCom over HTTP."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from redis.asyncio import Redis
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from engine.config import Settings
from engine.dispatch import Dispatcher, IncomingEvent
from engine.dispatch_marks import PendingMarks
from engine.embedded import free_port
from engine.worker import build_worker
from tests.conftest import Stack
from tests.helpers import eventually

JOURNEY = """
journey: {jid}
name: 欢迎
trigger:
  event: signup.completed
  when: event.plan == "pro"
steps:
  - id: hello
    send:
      channel: wecom.customer
      sender: "{{{{ customer.owner_userid }}}}"
      text: "{{{{ customer.name }}}}，欢迎开通 {{{{ trigger.plan }}}} 版"
  - id: pause
    wait: 2s
  - id: remind_staff
    send:
      channel: wecom.app
      text: "请跟进新客户 {{{{ customer.name }}}}（{{{{ customer.id }}}}）"
"""


async def deploy(client: httpx.AsyncClient, yaml_text: str) -> dict:
    created = await client.post(
        "/v1/journeys", content=yaml_text.encode(), headers={"Content-Type": "application/yaml"}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    activated = await client.post(f"/v1/journeys/{body['journey']}/activate", json={})
    assert activated.status_code == 200, activated.text
    assert activated.json()["status"] == "active"
    return body


async def fake_messages(stack: Stack, **match: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=stack.fake.url) as fake:
        listing = (await fake.get("/_fake/messages")).json()["messages"]
    return [m for m in listing if all(m.get(k) == v or v in (m.get(k) or ()) for k, v in match.items())]


async def test_event_to_two_messages_two_seconds_apart(stack: Stack) -> None:
    jid = f"welcome-{uuid.uuid4().hex[:8]}"
    cid = f"c-{uuid.uuid4().hex[:6]}"
    async with stack.client() as api:
        await deploy(api, JOURNEY.format(jid=jid))
        put = await api.put(
            f"/v1/customers/{cid}",
            json={
                "name": "张三",
                "external_userid": f"wm_{cid}",
                "owner_userid": "zhangsan",
                "tags": ["vip"],
            },
        )
        assert put.status_code == 200, put.text
        event = {
            "event_id": f"evt-{cid}",
            "customer_id": cid,
            "name": "signup.completed",
            "properties": {"plan": "pro"},
        }
        first = await api.post("/v1/events", json=event)
        assert first.status_code == 202, first.text
        assert first.json()["accepted"][0]["duplicate"] is False
        assert first.json()["accepted"][0]["enrolled"] == [f"journey/{jid}/{cid}"]
        second = await api.post("/v1/events", json=event)
        assert second.status_code == 202
        assert second.json()["accepted"][0]["duplicate"] is True

    to_customer = await eventually(
        lambda: fake_messages(stack, external_userid=f"wm_{cid}"), until=lambda m: len(m) >= 1
    )
    staff_text = f"请跟进新客户 张三（{cid}）"
    to_staff = await eventually(lambda: fake_messages(stack, text=staff_text), until=lambda m: len(m) >= 1)
    assert len(to_customer) == 1 and len(to_staff) == 1
    assert to_customer[0]["text"] == "张三，欢迎开通 pro 版"
    assert to_customer[0]["sender"] == "zhangsan"
    assert to_customer[0]["api"] == "externalcontact/add_msg_template"
    assert to_staff[0]["touser"] == ["zhangsan"]
    gap = to_staff[0]["at"] - to_customer[0]["at"]
    assert 1.9 <= gap <= 6.0, f"the wait should put ~2 s between the sends, got {gap:.2f}s"

    async with stack.client() as api:
        enrollments = (await api.get(f"/v1/journeys/{jid}/enrollments")).json()
        assert len(enrollments) == 1, "the same event id posted twice must enroll once"
        enrollment = await eventually(
            lambda: _get_json(api, f"/v1/enrollments/{enrollments[0]['enrollment_id']}"),
            until=lambda e: e["status"] == "exited",
        )
        assert enrollment["exit_reason"] == "completed"
        assert enrollment["live"]["path"] == ["hello", "pause", "remind_staff"]
        log = (await api.get("/v1/messages", params={"journey": jid})).json()
        assert [(m["step_id"], m["status"]) for m in log] == [("hello", "sent"), ("remind_staff", "sent")]


async def _get_json(api: httpx.AsyncClient, path: str) -> dict:
    resp = await api.get(path)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_trigger_rule_filters_and_distinct_events_reenter_after_exit(stack: Stack) -> None:
    jid = f"filter-{uuid.uuid4().hex[:8]}"
    cid = f"c-{uuid.uuid4().hex[:6]}"
    yaml_text = f"""
journey: {jid}
trigger: {{event: "order.*", when: event.amount >= 50}}
steps:
  - send: {{channel: wecom.app, to: ops, text: "order {{{{ trigger.order_id }}}}"}}
"""
    async with stack.client() as api:
        await deploy(api, yaml_text)
        small = await api.post(
            "/v1/events",
            json={"customer_id": cid, "name": "order.created", "properties": {"order_id": "S1", "amount": 5}},
        )
        assert small.json()["accepted"][0]["enrolled"] == []
        big = await api.post(
            "/v1/events",
            json={"customer_id": cid, "name": "order.created", "properties": {"order_id": "B1", "amount": 80}},
        )
        assert big.json()["accepted"][0]["enrolled"] == [f"journey/{jid}/{cid}"]
    msgs = await eventually(
        lambda: fake_messages(stack, api="message/send"), until=lambda ms: any(m["text"] == "order B1" for m in ms)
    )
    assert not any(m["text"] == "order S1" for m in msgs)


async def test_event_whose_routing_failed_is_recovered_not_lost(stack: Stack) -> None:
    jid = f"recover-{uuid.uuid4().hex[:8]}"
    cid = f"c-{uuid.uuid4().hex[:6]}"
    async with stack.client() as api:
        await deploy(api, f"journey: {jid}\ntrigger: {{event: ping}}\nsteps:\n"
                          f"  - send: {{channel: wecom.app, to: ops, text: 'pong {cid}'}}\n")  # fmt: skip
    dead_redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    broken = Dispatcher(stack.rt.store, dead_redis, stack.rt.temporal, task_queue=stack.rt.settings.temporal_task_queue)
    [result] = await broken.accept([IncomingEvent(event_id=f"e-{cid}", customer_id=cid, name="ping", properties={})])
    await dead_redis.aclose()
    assert result.deferred and not result.duplicate
    assert await fake_messages(stack, text=f"pong {cid}") == []

    healthy = Dispatcher(stack.rt.store, stack.rt.redis, stack.rt.temporal,
                         task_queue=stack.rt.settings.temporal_task_queue)  # fmt: skip
    assert f"e-{cid}" in await healthy.recover(older_than=timedelta(0))
    await eventually(lambda: fake_messages(stack, text=f"pong {cid}"), until=lambda m: len(m) == 1)
    assert f"e-{cid}" not in await healthy.recover(older_than=timedelta(0)), "a routed event is not routed again"
    assert len(await fake_messages(stack, text=f"pong {cid}")) == 1


async def test_the_answer_does_not_wait_for_the_dispatch_mark_and_recovery_does_not_route_twice(
    stack: Stack,
) -> None:
    jid = f"marks-{uuid.uuid4().hex[:8]}"
    cid = f"c-{uuid.uuid4().hex[:6]}"
    async with stack.client() as api:
        await deploy(api, f"journey: {jid}\ntrigger: {{event: mark.check}}\nsteps:\n"
                          f"  - send: {{channel: wecom.app, to: ops, text: 'pong {cid}'}}\n")  # fmt: skip
    store = stack.rt.store
    dispatcher = Dispatcher(store, stack.rt.redis, stack.rt.temporal, task_queue=stack.rt.settings.temporal_task_queue)
    dispatcher.marks = PendingMarks(store, delay_s=3600)  # the mark waits until something flushes it
    event = IncomingEvent(event_id=f"m-{cid}", customer_id=cid, name="mark.check", properties={})
    [result] = await dispatcher.accept([event])
    assert result.enrolled == [f"journey/{jid}/{cid}"] and not result.deferred
    later = datetime.now(UTC) + timedelta(minutes=1)

    async def still_undispatched() -> bool:
        rows = await store.offload(store.undispatched_events, received_before=later)
        return any(row.event_id == f"m-{cid}" for row in rows)

    assert await still_undispatched(), "routed and answered; its mark is still pending"
    recovered = await dispatcher.recover(older_than=timedelta(0))
    assert f"m-{cid}" not in recovered, "a pending mark is written, not routed again"
    assert not await still_undispatched()
    await dispatcher.close()
    await eventually(lambda: fake_messages(stack, text=f"pong {cid}"), until=lambda m: len(m) == 1)


async def test_worker_concurrency_comes_from_the_settings(stack: Stack) -> None:
    settings = stack.rt.settings.model_copy(
        update={"journeys_worker_workflow_tasks": 3, "journeys_worker_local_activities": 4,
                "journeys_worker_activities": 50, "temporal_task_queue": f"cfg-{uuid.uuid4().hex[:8]}"}
    )  # fmt: skip
    config = build_worker(dataclasses.replace(stack.rt, settings=settings)).config()
    assert (config["max_concurrent_workflow_tasks"], config["max_concurrent_local_activities"],
            config["max_concurrent_activities"]) == (3, 4, 50)  # fmt: skip
    assert Settings().journeys_worker_workflow_tasks == 20, "few workflow tasks per process by default"


async def test_the_worker_runs_journeys_unsandboxed_unless_told_otherwise(stack: Stack) -> None:
    def runner(**settings: object) -> object:
        # A queue of its own: the SDK refuses a second worker on the stack worker's queue.
        changed = stack.rt.settings.model_copy(update={"temporal_task_queue": f"sb-{uuid.uuid4().hex[:8]}", **settings})
        return build_worker(dataclasses.replace(stack.rt, settings=changed)).config()["workflow_runner"]

    assert Settings().journeys_workflow_sandbox is False
    assert isinstance(runner(), UnsandboxedWorkflowRunner)
    assert isinstance(runner(journeys_workflow_sandbox=True), SandboxedWorkflowRunner)
