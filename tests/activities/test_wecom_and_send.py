"""WeCom client and send activity against the fake WeCom over HTTP, with real Redis and SQLite."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.channels import WebhookSender
from activities.confirmations import ConfirmationActivities, next_check
from activities.enrollment import EnrollmentActivities
from activities.send import SendActivities
from activities.wecom import WeComClient, WeComError
from activities.wecom.client import WeComCredentials
from engine.config import FAKE_AGENT_ID, FAKE_APP_SECRET, FAKE_CONTACT_SECRET, FAKE_CORP_ID
from engine.db import make_engine
from engine.dispatch import Dispatcher
from engine.embedded import ChildProcess, free_port
from engine.emitter import EngineEvents
from engine.fake_wecom import FakeWeCom, create_app
from engine.lifecycle import gate_key, held_key
from engine.models import EnrollmentRow
from engine.plan import CapPlan, PolicyPlan, QuietHoursPlan
from engine.servers import RunningServer, serve
from engine.store import SendRecorded, Store, utcnow
from engine.sweep_promise import SweepPromise, promise_key
from engine.temporal import ConfirmationSweep
from workflows.messages import AdmitInput, EventData, FinishInput, GateState, SendInput, TallyEntry, TallyInput


@dataclass
class Env:
    fake: FakeWeCom
    server: RunningServer
    redis: Redis
    http: httpx.AsyncClient
    store: Store

    def client(self, **creds: object) -> WeComClient:
        base = {
            "base_url": self.server.url,
            "corp_id": FAKE_CORP_ID,
            "agent_id": FAKE_AGENT_ID,
            "app_secret": FAKE_APP_SECRET,
            "contact_secret": FAKE_CONTACT_SECRET,
        }
        base.update(creds)
        return WeComClient(self.http, self.redis, WeComCredentials(**base))  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def env(redis_server: ChildProcess, tmp_path: Path) -> AsyncIterator[Env]:
    fake = FakeWeCom()
    server = await serve(create_app(fake), host="127.0.0.1", port=free_port())
    # A database number of its own per test keeps token caches apart.
    redis = Redis.from_url(f"redis://127.0.0.1:{redis_server.port}/{1 + uuid.uuid4().int % 14}")
    await redis.flushdb()
    http = httpx.AsyncClient(timeout=10)
    yield Env(fake, server, redis, http, Store(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")))
    await http.aclose()
    await redis.aclose()
    await server.stop()


TEXT = {"touser": "zhangsan", "msgtype": "text", "text": {"content": "hello"}}


async def test_token_is_cached_per_app(env: Env) -> None:
    client = env.client()
    await client.send_app_message(TEXT)
    await client.send_app_message({**TEXT, "text": {"content": "again"}})
    assert env.fake.gettoken_calls == 1
    await client.add_msg_template({"external_userid": ["wm_1"], "sender": "zhangsan", "text": {"content": "x"}})
    assert env.fake.gettoken_calls == 2, "the customer-contact app has its own token"


async def test_concurrent_callers_refresh_once(env: Env) -> None:
    clients = [env.client() for _ in range(20)]
    await asyncio.gather(*(c.send_app_message({**TEXT, "text": {"content": f"m{i}"}}) for i, c in enumerate(clients)))
    assert env.fake.gettoken_calls == 1


async def test_revoked_token_is_refreshed_and_the_call_retried_once(env: Env) -> None:
    client = env.client()
    await client.send_app_message(TEXT)
    env.fake.revoke_tokens()
    body = await client.send_app_message({**TEXT, "text": {"content": "after revoke"}})
    assert body["errcode"] == 0
    assert env.fake.gettoken_calls == 2
    assert [m["text"] for m in env.fake.listing()] == ["hello", "after revoke"]


async def test_a_process_reuses_its_token_and_follows_a_refresh_by_another(env: Env) -> None:
    ours, theirs = env.client(), env.client()
    await ours.send_app_message(TEXT)
    await env.redis.delete(ours._token_key("app"))
    await ours.send_app_message({**TEXT, "text": {"content": "from memory"}})
    assert env.fake.gettoken_calls == 1, "the token is kept in the process, not read again per call"
    # Another process refreshes after WeCom revoked the token: ours is refused once and follows.
    env.fake.revoke_tokens()
    await theirs.send_app_message({**TEXT, "text": {"content": "theirs"}})
    await ours.send_app_message({**TEXT, "text": {"content": "ours"}})
    assert env.fake.gettoken_calls == 2, "ours read the token the other process fetched"
    assert [m["text"] for m in env.fake.listing()] == ["hello", "from memory", "theirs", "ours"]


async def test_configuration_errors_are_permanent(env: Env) -> None:
    with pytest.raises(WeComError) as info:
        await env.client(app_secret="wrong").send_app_message(TEXT)
    assert info.value.errcode == 40001 and not info.value.retryable
    with pytest.raises(WeComError) as info:
        await env.client(agent_id=1).send_app_message(TEXT)
    assert info.value.errcode == 40056 and not info.value.retryable


async def test_throttling_and_busy_are_retryable(env: Env) -> None:
    client = env.client()
    await client.token("app")
    for code in (45009, -1):
        env.fake.config.fail_rate, env.fake.config.fail_errcode = 1.0, code
        with pytest.raises(WeComError) as info:
            await client.send_app_message(TEXT)
        assert info.value.errcode == code and info.value.retryable
    unreachable = WeComClient(
        env.http,
        env.redis,
        WeComCredentials(
            base_url=f"http://127.0.0.1:{free_port()}",
            corp_id=FAKE_CORP_ID,
            agent_id=FAKE_AGENT_ID,
            app_secret=FAKE_APP_SECRET,
            contact_secret=FAKE_CONTACT_SECRET,
        ),
    )
    await env.redis.flushdb()
    with pytest.raises(WeComError) as info:
        await unreachable.send_app_message(TEXT)
    assert info.value.retryable


def send_input(step: str = "s1", **over: object) -> SendInput:
    base = {
        "enrollment_id": "enr-1",
        "journey_id": "j",
        "version": 1,
        "step_id": step,
        "visit": 1,
        "customer_id": "c1",
        "channel": "wecom.customer",
        "message": {"sender": "{{ customer.owner_userid }}", "text": "你好 {{ customer.name }}"},
        "trigger": EventData(event_id="e1", name="signup", customer_id="c1", timestamp="2026-11-23T02:00:00+00:00"),
        "vars": {},
        "journey": {"id": "j", "version": 1},
        "steps": {},
        "now": "2026-11-23T02:00:00+00:00",
    }
    base.update(over)
    return SendInput(**base)  # type: ignore[arg-type]


async def test_send_is_at_most_once_per_step_visit(env: Env) -> None:
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan"})
    acts = SendActivities(env.store, env.client())
    first = await acts.send(send_input())
    again = await acts.send(send_input())
    assert first.status == again.status == "sent"
    assert first.msgid == again.msgid
    delivered = env.fake.listing()
    assert len(delivered) == 1 and delivered[0]["text"] == "你好 张三" and delivered[0]["sender"] == "zhangsan"
    second_visit = await acts.send(send_input(visit=2))
    assert second_visit.status == "sent" and len(env.fake.listing()) == 2
    log = env.store.list_messages(journey_id="j")
    assert [(m.step_id, m.visit, m.status) for m in log] == [("s1", 1, "sent"), ("s1", 2, "sent")]
    assert log[0].content == {"text": "你好 张三"} and log[0].recipients == ["wm_c1"]


async def test_missing_template_value_fails_permanently_and_is_logged(env: Env) -> None:
    env.store.put_customer("c1", {"external_userid": "wm_c1", "owner_userid": "zhangsan"})
    with pytest.raises(ApplicationError) as info:
        await SendActivities(env.store, env.client()).send(send_input())
    assert info.value.non_retryable and info.value.type == "TemplateError"
    assert "name" in info.value.message
    row = env.store.list_messages(journey_id="j")[0]
    assert (row.status, row.reason) == ("failed", "template_error")
    assert env.fake.listing() == []


async def test_customer_without_wecom_id_is_skipped_not_sent(env: Env) -> None:
    env.store.put_customer("c1", {"name": "张三", "owner_userid": "zhangsan"})
    result = await SendActivities(env.store, env.client()).send(send_input())
    assert (result.status, result.reason) == ("skipped", "no_external_userid")
    assert env.fake.listing() == []


async def test_all_recipients_invalid_is_a_permanent_failure_never_recorded_as_sent(env: Env) -> None:
    env.fake.config.known_users = ["lisi"]
    env.store.put_customer("c1", {"name": "张三", "owner_userid": "zhangsan"})
    inp = send_input(channel="wecom.app", message={"to": ["{{ customer.owner_userid }}"], "text": "hi"})
    with pytest.raises(ApplicationError) as info:
        await SendActivities(env.store, env.client()).send(inp)
    assert info.value.type == "WeComError" and info.value.non_retryable
    row = env.store.list_messages(journey_id="j")[0]
    assert (row.status, row.reason) == ("failed", "wecom_81013")


async def test_retryable_failure_leaves_the_attempt_open_then_sends_once(env: Env) -> None:
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan"})
    acts = SendActivities(env.store, env.client())
    await env.client().token("contact")
    env.fake.config.fail_rate = 1.0
    with pytest.raises(WeComError):
        await acts.send(send_input())
    assert env.store.list_messages(journey_id="j")[0].status == "sending"
    env.fake.config.fail_rate = 0.0
    assert (await acts.send(send_input())).status == "sent"
    assert len(env.fake.listing()) == 1


async def test_update_step_applies_once_per_visit_even_when_rerun(env: Env) -> None:
    from activities.steps import StepActivities
    from workflows.messages import RuleContext, UpdateInput

    env.store.put_customer("c1", {"score": 10})
    ctx = RuleContext(customer_id="c1", trigger=send_input().trigger, vars={}, journey={}, steps={},
                      now="2026-11-23T02:00:00+00:00")  # fmt: skip
    step = StepActivities(env.store)
    inp = UpdateInput(updates={"score": "customer.score + 20"}, context=ctx, idempotency_key="enr-1:bump:1")
    assert await step.update(inp) == {"score": 30}
    assert await step.update(inp) == {"score": 30}, "a re-run returns the first result"
    assert env.store.get_customer("c1")["score"] == 30
    second_visit = UpdateInput(updates={"score": "customer.score + 20"}, context=ctx, idempotency_key="enr-1:bump:2")
    assert await step.update(second_visit) == {"score": 50}


def test_event_history_is_bounded_by_retention(env: Env) -> None:
    from datetime import UTC, datetime, timedelta

    from engine.models import EventRow

    now = datetime(2026, 11, 23, tzinfo=UTC)
    rows = [
        EventRow(
            event_id=f"h{i}",
            customer_id="c1",
            name="page.view",
            properties={},
            timestamp=now - timedelta(days=d),
            received_at=now,
            dispatched_at=now,
        )  # fmt: skip
        for i, d in enumerate((1, 10, 100, 200))
    ]
    env.store.insert_events(rows)
    window = env.store.count_events("c1", "page.view", since=now - timedelta(days=30), until=now)
    assert len(window) == 2
    assert env.store.purge_events(older_than=now - timedelta(days=90)) == 2
    assert len(env.store.count_events("c1", "page.*", since=now - timedelta(days=365), until=now)) == 2


async def test_cap_ledger_reserves_atomically_under_contention(env: Env) -> None:
    from datetime import UTC, datetime, timedelta

    from activities.policy import CapLedger
    from engine.plan import CapPlan

    ledger = CapLedger(env.redis)
    now = datetime(2026, 11, 23, 2, tzinfo=UTC)
    caps = (CapPlan(max=2, per_s=86400), CapPlan(max=5, per_s=7 * 86400))
    decisions = await asyncio.gather(*(ledger.reserve("c1", f"m{i}", now, caps) for i in range(50)))
    assert sum(d.allowed for d in decisions) == 2
    refused = [d for d in decisions if not d.allowed]
    assert all(d.free_at == now + timedelta(days=1) for d in refused)
    winners = [f"m{i}" for i, d in enumerate(decisions) if d.allowed]
    assert (await ledger.reserve("c1", winners[0], now, caps)).allowed, "a retried send keeps its slot"
    await ledger.release("c1", winners[0])
    assert (await ledger.reserve("c1", "late", now + timedelta(hours=1), caps)).allowed
    # The weekly cap: 2 a day, 1 minute apart, for 3 days reaches 5 within the week on day 3.
    got = []
    for day in (0, 1, 2):
        for k in (0, 1):
            at = now + timedelta(days=day, minutes=k)
            got.append((await ledger.reserve("c2", f"d{day}-{k}", at, caps)).allowed)
    assert got == [True, True, True, True, True, False]


async def test_welcome_uses_the_add_events_code_once(env: Env) -> None:
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1"})
    acts = SendActivities(env.store, env.client())
    code = env.fake.issue_welcome_code()
    trigger = EventData(event_id="add1", name="wecom.contact_added", customer_id="c1",
                        timestamp="2026-11-23T02:00:00+00:00", properties={"welcome_code": code})  # fmt: skip
    welcome = send_input(channel="wecom.welcome", message={"text": "{{ customer.name }}，欢迎"}, trigger=trigger)
    assert (await acts.send(welcome)).status == "sent"
    assert env.fake.listing()[-1]["text"] == "张三，欢迎"
    again = await acts.send(send_input(step="s2", channel="wecom.welcome", message={"text": "再次"}, trigger=trigger))
    assert (again.status, again.reason) == ("skipped", "welcome_already_sent")
    stale = EventData(event_id="add2", name="wecom.contact_added", customer_id="c1",
                      timestamp="2026-11-23T02:00:00+00:00",
                      properties={"welcome_code": env.fake.issue_welcome_code(ttl_s=-1)})  # fmt: skip
    with pytest.raises(ApplicationError) as info:
        await acts.send(send_input(step="s3", channel="wecom.welcome", message={"text": "迟到"}, trigger=stale))
    assert info.value.type == "WeComError" and "41050" in info.value.message
    none = EventData(
        event_id="add3", name="wecom.contact_added", customer_id="c1", timestamp="2026-11-23T02:00:00+00:00"
    )
    skipped = await acts.send(send_input(step="s4", channel="wecom.welcome", message={"text": "x"}, trigger=none))
    assert (skipped.status, skipped.reason) == ("skipped", "no_welcome_code")


async def test_group_robot_message(env: Env) -> None:
    acts = SendActivities(env.store, env.client())
    inp = send_input(
        channel="wecom.group_bot", message={"webhook_key": "k-{{ trigger.event_id }}", "markdown": "**新单**"}
    )
    assert (await acts.send(inp)).status == "sent"
    robot = env.fake.listing()[-1]
    assert (robot["api"], robot["text"], robot["touser"]) == ("webhook/send", "**新单**", ["robot:k-e1"])


async def test_webhook_is_signed_idempotent_and_classifies_failures(env: Env) -> None:
    received: list[tuple[dict, bytes]] = []
    answers = iter([200, 503, 400])
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> JSONResponse:
        received.append((dict(request.headers), await request.body()))
        status = next(answers)
        return JSONResponse({"ok": status == 200}, status_code=status)

    receiver = await serve(app, host="127.0.0.1", port=free_port())
    try:
        acts = SendActivities(env.store, env.client(), webhook=WebhookSender(env.http, "s3cret"))
        message = {"url": f"{receiver.url}/hook", "body": {"phone": "{{ trigger.phone }}", "n": 1}}
        trigger = EventData(event_id="e1", name="x", customer_id="c1", timestamp="2026-11-23T02:00:00+00:00",
                            properties={"phone": "13800000000"})  # fmt: skip
        result = await acts.send(send_input(channel="webhook", message=message, trigger=trigger))
        assert result.status == "sent"
        headers, body = received[0]
        assert body == b'{"phone":"13800000000","n":1}'
        expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert headers["x-journeys-signature"] == f"sha256={expected}"
        assert headers["idempotency-key"] == "enr-1:s1:1"
        with pytest.raises(WeComError) as busy:
            await acts.send(send_input(step="s2", channel="webhook", message=message, trigger=trigger))
        assert busy.value.retryable, "a 5xx is retried"
        with pytest.raises(ApplicationError) as refused:
            await acts.send(send_input(step="s2", channel="webhook", message=message, trigger=trigger))
        assert refused.value.non_retryable and "http_400" in str(env.store.get_send("enr-1:s2:1").reason)
    finally:
        await receiver.stop()


async def test_per_member_limit_holds_the_31st_message_of_a_minute(env: Env) -> None:
    client = env.client()
    for i in range(30):
        await client.send_app_message({"touser": "busy", "msgtype": "text", "text": {"content": f"m{i}"}})
    from activities.wecom.ratelimit import RateLimited

    with pytest.raises(RateLimited) as info:
        await client.send_app_message({"touser": "Busy", "msgtype": "text", "text": {"content": "m30"}})
    assert 0 < info.value.retry_after_s <= 60
    await client.send_app_message({"touser": "other", "msgtype": "text", "text": {"content": "fine"}})
    delivered = [m for m in env.fake.listing() if m["touser"] in (["busy"], ["other"])]
    assert len(delivered) == 31, "the held message was never sent into WeCom's silent drop"
    acts = SendActivities(env.store, client)
    with pytest.raises(ApplicationError) as held:
        await acts.send(send_input(channel="wecom.app", message={"to": ["busy"], "text": "one more"}))
    assert held.value.type == "RateLimited" and held.value.next_retry_delay is not None
    assert not held.value.non_retryable


async def test_a_token_error_that_survives_the_refresh_is_retryable(env: Env) -> None:
    client = env.client()
    await client.token("app")
    env.fake.config.fail_rate, env.fake.config.fail_errcodes = 1.0, [42001]
    with pytest.raises(WeComError) as info:
        await client.send_app_message(TEXT)
    assert info.value.errcode == 42001 and info.value.retryable
    assert env.fake.revocations == 2, "one refresh and retry, then give the call back to Temporal"


async def test_tag_steps_mark_tags_in_wecom_creating_them_once(env: Env) -> None:
    from activities.steps import StepActivities
    from workflows.messages import TagInput

    env.store.put_customer("c1", {"external_userid": "wm_c1", "owner_userid": "zhangsan", "tags": ["cold"]})
    env.store.put_customer("c2", {"external_userid": "wm_c2", "owner_userid": "lisi"})
    env.store.put_customer("local", {"tags": []})
    steps = StepActivities(env.store, env.client())
    assert await steps.tag(TagInput(customer_id="c1", add=["hot", "vip"], remove=["cold"])) == ["hot", "vip"]
    ids = env.fake.corp_tags["Journeys"]
    assert set(ids) == {"hot", "vip", "cold"}
    assert env.fake.customer_tags[("zhangsan", "wm_c1")] == {ids["hot"], ids["vip"]}
    await steps.tag(TagInput(customer_id="c2", add=["vip"], remove=[]))
    assert env.fake.customer_tags[("lisi", "wm_c2")] == {ids["vip"]}
    assert env.fake.corp_tags["Journeys"] == ids, "existing tags are reused, not created again"
    assert await steps.tag(TagInput(customer_id="local", add=["x"], remove=[])) == ["x"]
    assert ("", "local") not in env.fake.customer_tags


async def test_tokens_and_secrets_never_reach_the_logs(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from engine.config import Settings
    from engine.runtime import Runtime

    caplog.set_level(logging.DEBUG)
    rt_settings = Settings(redis_url="redis://127.0.0.1:1/0", database_url="sqlite://", wecom_base_url=env.server.url)
    rt = await Runtime.open(rt_settings, temporal=object())  # type: ignore[arg-type]
    await rt.close()
    client = env.client()
    await client.send_app_message(TEXT)
    token = await client.token("app")
    assert token not in caplog.text and FAKE_APP_SECRET not in caplog.text


async def test_message_log_filters_and_retention(env: Env) -> None:
    from datetime import UTC, datetime, timedelta

    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan"})
    acts = SendActivities(env.store, env.client())
    old, recent = "2026-04-01T02:00:00+00:00", "2026-11-23T02:00:00+00:00"
    await acts.send(send_input(step="old", now=old))
    await acts.send(send_input(step="new", now=recent))
    cut = datetime(2026, 11, 1, tzinfo=UTC)
    assert [r.step_id for r in env.store.list_messages(since=cut)] == ["new"]
    assert [r.step_id for r in env.store.list_messages(until=cut)] == ["old"]
    assert [r.step_id for r in env.store.list_messages(status="sent", customer_id="c1")] == ["old", "new"]
    horizon = datetime(2026, 11, 23, tzinfo=UTC) - timedelta(days=180)
    assert env.store.purge_messages(older_than=horizon) == 1
    assert [r.step_id for r in env.store.list_messages()] == ["new"]


def step_counts(store: Store) -> dict[tuple[str, str], int]:
    return {(c.metric, c.step): c.value for c in store.counters("j") if c.metric.startswith("step.")}


async def test_a_paused_journey_holds_the_send_and_its_step_counts_count_once(env: Env) -> None:
    # Patch "send-carries-bookkeeping": the send checks the gate itself and carries the counts.
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan"})
    paused = {"status": "paused", "on_resume": "skip_stale", "stale_after_s": 3600}
    await env.redis.set(gate_key("j"), json.dumps(paused))
    acts = SendActivities(env.store, env.client())
    batch = TallyInput(enrollment_id="enr-1", journey_id="j", version=1, seq=1,
                       entries=[TallyEntry("step.completed", "w1"), TallyEntry("step.entered", "s1")])  # fmt: skip
    held = await ActivityEnvironment().run(acts.send, send_input(gate=True, tally=batch))
    assert held.status == "held" and held.gate == GateState(status="paused", on_resume="skip_stale", stale_after_s=3600)
    assert env.fake.listing() == [] and env.store.list_messages(journey_id="j") == []
    assert await env.redis.smembers(held_key("j")) == {b"test"}, "registered, so the resume signals it"
    assert step_counts(env.store) == {("step.completed", "w1"): 1, ("step.entered", "s1"): 1}
    # Resumed: the same step visit goes out (no second gate check); the batch is not counted again.
    await env.redis.set(gate_key("j"), json.dumps({"status": "active"}))
    sent = await ActivityEnvironment().run(acts.send, send_input(tally=batch))
    assert sent.status == "sent" and len(env.fake.listing()) == 1
    assert step_counts(env.store) == {("step.completed", "w1"): 1, ("step.entered", "s1"): 1}


async def test_a_pause_does_not_hold_a_send_an_earlier_attempt_began(env: Env) -> None:
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan"})
    acts = SendActivities(env.store, env.client())
    await env.client().token("contact")
    await env.redis.set(gate_key("j"), json.dumps({"status": "active"}))
    env.fake.config.fail_rate = 1.0
    with pytest.raises(WeComError):
        await ActivityEnvironment().run(acts.send, send_input(gate=True))
    await env.redis.set(gate_key("j"), json.dumps({"status": "paused"}))
    env.fake.config.fail_rate = 0.0
    assert (await ActivityEnvironment().run(acts.send, send_input(gate=True))).status == "sent"
    assert len(env.fake.listing()) == 1


async def test_carried_step_counts_count_once_whichever_way_the_send_goes(env: Env) -> None:
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan",
                                  "consent_marketing": False})  # fmt: skip
    acts = SendActivities(env.store, env.client())

    def batch(seq: int, step: str) -> TallyInput:
        return TallyInput(enrollment_id="enr-1", journey_id="j", version=1, seq=seq,
                          entries=[TallyEntry("step.entered", step)])  # fmt: skip

    staff = {"channel": "wecom.app", "message": {"to": ["zhangsan"], "text": "hi"}, "customer_facing": False}
    # Ungoverned (to staff): counted with the attempt's claim; the retry counts nothing more.
    for _ in range(2):
        assert (await acts.send(send_input("s1", tally=batch(1, "s1"), **staff))).status == "sent"
    # Governed and skipped by the policy: counted with the skipped attempt; again only once.
    for _ in range(2):
        assert (await acts.send(send_input("s2", tally=batch(2, "s2")))).reason == "opted_out"
    # A retry that finds the message sent, carrying a batch never seen (a reset run).
    assert (await acts.send(send_input("s1", tally=batch(3, "s3"), **staff))).status == "sent"
    assert step_counts(env.store) == {("step.entered", "s1"): 1, ("step.entered", "s2"): 1,
                                      ("step.entered", "s3"): 1}  # fmt: skip
    assert len(env.fake.listing()) == 1


class ExitUnrecordable(Store):
    """A store that cannot record the end of an enrollment (the database refuses that write).

    Whether the end comes alone or with the send's outcome (which then fails with it).
    """

    def record_end(self, *args: object, **kwargs: object) -> bool:
        raise OperationalError("update enrollments", {}, Exception("database is locked"))

    def finish_send(self, *args: Any, **kwargs: Any) -> SendRecorded:
        if kwargs.get("end") is not None:
            raise OperationalError("update enrollments", {}, Exception("database is locked"))
        return super().finish_send(*args, **kwargs)


async def test_the_last_send_records_the_end_of_the_enrollment_once(env: Env) -> None:
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan"})
    env.store.admit(EnrollmentRow(enrollment_id="enr-1", workflow_id="wf-1", journey_id="j", version=1,
                                  customer_id="c1", trigger_event_id="e1", entered_at=utcnow()))  # fmt: skip
    # Nothing listens to journey.exited here: the dispatcher never needs Temporal.
    dispatcher = Dispatcher(env.store, env.redis, None, task_queue="q")  # type: ignore[arg-type]
    acts = SendActivities(env.store, env.client(), events=EngineEvents(dispatcher))
    finish = FinishInput(enrollment_id="enr-1", workflow_id="wf-1", customer_id="c1", status="exited",
                         exit_reason="completed", at="2026-11-23T02:00:01+00:00", journey_id="j", version=1,
                         path=["s1"], tally=TallyInput(enrollment_id="enr-1", journey_id="j", version=1, seq=2,
                                                       entries=[TallyEntry("step.completed", "s1")]))  # fmt: skip
    commits = commit_log(env.store)
    for attempt in range(2):  # the second is a retry of the same activity
        result = await ActivityEnvironment().run(acts.send, send_input("s1", finish=finish))
        assert (result.status, result.finished) == ("sent", True)
        if attempt == 0:
            # The reads with the claim (nothing in the profile holds this governed send
            # back), then one commit for the outcome, message.sent, the end and journey.exited.
            assert len(commits) == 2, commits
            assert "INSERT INTO messages" in commits[0], commits
            assert "UPDATE messages" in commits[-1] and "UPDATE enrollments" in commits[-1], commits
            assert commits[-1].count("INSERT INTO events") == 2, commits
    row = env.store.get_enrollment("enr-1")
    assert (row.status, row.exit_reason, row.path) == ("exited", "completed", ["s1"])
    assert step_counts(env.store) == {("step.completed", "s1"): 1}
    assert {c.label: c.value for c in env.store.counters("j") if c.metric == "enrollment.exited"} == {"completed": 1}
    with env.store.engine.connect() as conn:
        exits = conn.execute(text("select name, dispatched_at from events where event_id = 'enr-1:exited'")).all()
    assert [(name, at is not None) for name, at in exits] == [("journey.exited", True)], (
        "stored with the end, once over both attempts, dispatched (nothing listens)"
    )
    with env.store.engine.connect() as conn:
        sent = conn.execute(text("select count(*) from events where event_id = 'enr-1:s1:1:message.sent'")).scalar()
    assert sent == 1
    assert len(env.fake.listing()) == 1
    # A send that cannot record the end still reports the message; the workflow records the end.
    broken = SendActivities(ExitUnrecordable(env.store.engine), env.client())
    finish.enrollment_id = "enr-2"
    result = await broken.send(send_input("s1", enrollment_id="enr-2", finish=finish))
    assert (result.status, result.finished) == ("sent", False)
    assert env.store.get_send("enr-2:s1:1").status == "sent"


def commit_log(store: Store) -> list[str]:
    """The statements of each commit from now on (the listeners see every connection of the store)."""
    commits: list[str] = []
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2][:30]))
    event.listen(store.engine, "commit", lambda _conn: commits.append(" | ".join(statements)) or statements.clear())
    return commits


async def test_a_sweep_round_records_what_its_checks_found_in_one_commit(env: Env) -> None:
    events = EngineEvents(Dispatcher(env.store, env.redis, None, task_queue="q"))  # type: ignore[arg-type]

    async def ensure_sweep() -> None:
        pass

    for n in (1, 2, 3):
        env.store.put_customer(f"c{n}", {"name": "张三", "external_userid": f"wm_c{n}", "owner_userid": "zhangsan"})
    acts = SendActivities(env.store, env.client(), confirmations=ensure_sweep)
    sent = [await acts.send(send_input(customer_id=f"c{n}", enrollment_id=f"enr-{n}")) for n in (1, 2, 3)]
    with env.store.engine.begin() as conn:  # c3's check is its last: never confirmed
        conn.execute(text("update messages set created_at = :at where customer_id = 'c3'"),
                     {"at": utcnow() - timedelta(days=3, minutes=1)})  # fmt: skip
    env.fake.confirm(sent[0].msgid or "")
    commits = commit_log(env.store)
    result = await ConfirmationActivities(env.store, env.client(), events, first_poll_s=60).sweep()
    assert (result.checked, result.decided, result.waiting) == (3, 2, 1)
    [round_commit] = commits
    assert round_commit.count("UPDATE messages") == 3, "two outcomes and c2's next check"
    assert round_commit.count("INSERT INTO events") == 2, "each outcome with the event that announces it"
    assert round_commit.count("INSERT INTO journey_counters") == 1, "the outcomes' counters in one statement"
    with env.store.engine.connect() as conn:
        announced = conn.execute(text("select name, customer_id from events order by customer_id")).all()
    assert [tuple(r) for r in announced] == [("message.sent", "c1"), ("message.failed", "c3")]
    labels = {c.label: c.value for c in env.store.counters("j") if c.metric == "send" and c.value}
    assert labels == {"sent|": 1, "failed|not_confirmed": 1, "pending_confirmation|": 1}, labels


async def test_a_governed_send_claims_with_its_reads_unless_its_policy_holds_it_back(env: Env) -> None:
    # 02:00 UTC is 10:00 in Shanghai (the customer's zone).
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan",
                                  "timezone": "Asia/Shanghai"})  # fmt: skip
    acts = SendActivities(env.store, env.client())
    commits = commit_log(env.store)
    night = PolicyPlan(quiet_hours=QuietHoursPlan(start="21:00", end="09:00"))
    assert (await acts.send(send_input("s1", policy=night))).status == "sent"
    assert len(commits) == 2 and "INSERT INTO messages" in commits[0], "claimed with the reads, then the outcome"
    commits.clear()
    morning = PolicyPlan(quiet_hours=QuietHoursPlan(start="09:00", end="12:00"))
    deferred = await acts.send(send_input("s2", policy=morning))
    assert (deferred.status, deferred.retry_at) == ("deferred", "2026-11-23T12:00:00+08:00")
    assert env.store.get_send("enr-1:s2:1") is None, "nothing claimed for a send the quiet hours hold back"
    assert len(commits) == 2 and "INSERT INTO messages" not in commits[0], commits
    commits.clear()
    capped = PolicyPlan(frequency_caps=(CapPlan(max=5, per_s=86400),))
    assert (await acts.send(send_input("s3", policy=capped))).status == "sent"
    assert len(commits) == 3, "under caps: the reads, the claim once the ledger allows it, the outcome"
    env.store.put_customer("c1", {"tags": ["unsubscribed"]})
    assert (await acts.send(send_input("s4", policy=night))).reason == "opted_out"
    assert env.store.get_send("enr-1:s4:1").status == "skipped"
    assert len(env.fake.listing()) == 2


async def test_a_last_task_send_logs_the_end_with_the_task_then_wakes_the_sweep(env: Env) -> None:
    # Waking the sweep comes after the commit and never fails the attempt (ConfirmationSweep
    # retries on its own), so the end can share the task's commit.
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan"})
    env.store.admit(EnrollmentRow(enrollment_id="enr-1", workflow_id="wf-1", journey_id="j", version=1,
                                  customer_id="c1", trigger_event_id="e1", entered_at=utcnow()))  # fmt: skip
    finish = FinishInput(enrollment_id="enr-1", workflow_id="wf-1", customer_id="c1", status="exited",
                         exit_reason="completed", at="2026-11-23T02:00:01+00:00", journey_id="j",
                         version=1)  # fmt: skip
    seen_at_wake: list[tuple[int, str]] = []
    commits = commit_log(env.store)

    async def sweep() -> None:
        seen_at_wake.append((len(commits), env.store.get_enrollment("enr-1").status))

    acts = SendActivities(env.store, env.client(), confirmations=sweep)
    result = await acts.send(send_input(finish=finish))
    assert (result.status, result.finished) == ("pending_confirmation", True)
    assert len(commits) == 2 and "UPDATE enrollments" in commits[1], "the claim, then the task with the end"
    assert seen_at_wake == [(2, "exited")], "the sweep is woken once both are committed"
    retried = await acts.send(send_input(finish=finish))
    assert (retried.status, retried.finished) == ("pending_confirmation", True), "a retry reports the same"
    assert len(seen_at_wake) == 2, "and wakes the sweep again"
    assert len(env.fake.listing()) == 1, "the retry found the task logged and sent nothing"
    assert {c.label: c.value for c in env.store.counters("j") if c.metric == "enrollment.exited"} == {"completed": 1}


def test_confirmation_checks_back_off_with_the_task_age_until_it_lapses() -> None:
    created = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    assert next_check(created, created + timedelta(seconds=5), 60) == created + timedelta(seconds=65)
    assert next_check(created, created + timedelta(minutes=4), 60) == created + timedelta(minutes=8)
    assert next_check(created, created + timedelta(hours=5), 60) == created + timedelta(hours=5, minutes=30)
    assert next_check(created, created + timedelta(days=3) - timedelta(minutes=1), 60) == created + timedelta(days=3)


async def test_one_sweep_follows_every_waiting_task_to_its_outcome(env: Env) -> None:
    ensured: list[int] = []

    async def ensure_sweep() -> None:
        ensured.append(1)

    for n in (1, 2, 3):
        env.store.put_customer(f"c{n}", {"name": "张三", "external_userid": f"wm_c{n}", "owner_userid": "zhangsan"})
    acts = SendActivities(env.store, env.client(), confirmations=ensure_sweep)
    sent = [await acts.send(send_input(customer_id=f"c{n}", enrollment_id=f"enr-{n}")) for n in (1, 2, 3)]
    assert {r.status for r in sent} == {"pending_confirmation"} and len(ensured) == 3
    retried = await acts.send(send_input(customer_id="c1", enrollment_id="enr-1"))
    assert retried.status == "pending_confirmation" and len(ensured) == 4, "a retry sends nothing, makes sure again"
    assert len(env.fake.listing()) == 3
    # c3's task was created 3 days ago: its check now is its last.
    with env.store.engine.begin() as conn:
        conn.execute(text("update messages set created_at = :at where customer_id = 'c3'"),
                     {"at": utcnow() - timedelta(days=3, minutes=1)})  # fmt: skip
    sweep = ConfirmationActivities(env.store, env.client(), first_poll_s=0.5)
    env.fake.confirm(sent[0].msgid or "")
    first = await sweep.sweep()
    assert (first.checked, first.decided, first.waiting) == (3, 2, 1)
    by_customer = {m.customer_id: m for m in env.store.list_messages(journey_id="j")}
    assert (by_customer["c1"].status, by_customer["c1"].next_check_at) == ("sent", None)
    assert (by_customer["c3"].status, by_customer["c3"].reason) == ("failed", "not_confirmed")
    waiting = by_customer["c2"]
    assert waiting.status == "pending_confirmation" and waiting.next_check_at is not None, "asked again later"
    assert (await sweep.sweep()).checked == 0, "not due again yet"
    await asyncio.sleep(0.6)
    env.fake.confirm(sent[1].msgid or "")
    last = await sweep.sweep()
    assert (last.decided, last.waiting) == (1, 0), "nothing waits: the sweep workflow may end"
    assert env.store.get_send(waiting.idempotency_key).status == "sent"


class CountedSweep(ConfirmationSweep):
    """The sender's side of the sweep, counting the signals it would send to Temporal."""

    def __init__(self, promise: SweepPromise) -> None:
        super().__init__(None, task_queue="q", promise=promise)  # type: ignore[arg-type]
        self.signals = 0

    async def signal(self) -> None:
        self.signals += 1


async def test_a_task_logged_while_the_last_round_counts_keeps_the_sweep_going(env: Env) -> None:
    for n in (1, 2):
        env.store.put_customer(f"c{n}", {"name": "张三", "external_userid": f"wm_c{n}", "owner_userid": "zhangsan"})
    promise = SweepPromise(env.redis, "q")
    wake = CountedSweep(promise)
    acts = SendActivities(env.store, env.client(), confirmations=wake)
    sweep = ConfirmationActivities(env.store, env.client(), first_poll_s=0.1, promise=promise)
    first = await acts.send(send_input(customer_id="c1", enrollment_id="enr-1"))
    assert wake.signals == 1, "no sweep has promised a round: the first task signals"
    assert (await sweep.sweep()).waiting == 1 and await promise.holds(), "a round that finds tasks promises another"
    env.fake.confirm(first.msgid or "")
    await asyncio.sleep(0.15)
    # c2's task is committed, and its sender finds the promise, after the last round counted
    # nothing and before that round withdraws the promise.
    withdraw = promise.withdraw

    async def send_then_withdraw() -> None:
        assert (await acts.send(send_input(customer_id="c2", enrollment_id="enr-2"))).status == "pending_confirmation"
        await withdraw()

    promise.withdraw = send_then_withdraw  # type: ignore[method-assign]
    last = await sweep.sweep()
    assert wake.signals == 1, "c2's sender relied on the promise"
    assert (last.decided, last.waiting) == (1, 1), "the count after the withdrawal sees c2: the sweep goes on"
    assert await promise.holds(), "and promises another round"
    promise.withdraw = withdraw  # type: ignore[method-assign]
    env.store.settle_confirmations([], [("enr-2:s1:1", None)])  # nothing will ask again
    assert (await sweep.sweep()).waiting == 0 and not await promise.holds(), "the sweep ends without a promise"
    await acts.send(send_input(customer_id="c1", enrollment_id="enr-3"))
    assert wake.signals == 2, "with no promise, a sender signals again"


async def test_a_sweep_attempt_that_outlived_its_timeout_cannot_promise_a_round(env: Env) -> None:
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan"})
    promise = SweepPromise(env.redis, "q")
    await SendActivities(env.store, env.client(), confirmations=CountedSweep(promise)).send(send_input())
    sweep = ConfirmationActivities(env.store, env.client(), promise=promise)

    def attempt(scheduled_ago_s: float) -> ActivityEnvironment:
        acts = ActivityEnvironment()
        acts.info = dataclasses.replace(
            acts.info, scheduled_time=utcnow() - timedelta(seconds=scheduled_ago_s),
            heartbeat_timeout=timedelta(seconds=30), start_to_close_timeout=timedelta(minutes=10),
        )  # fmt: skip
        return acts

    assert (await attempt(0).run(sweep.sweep)).waiting == 1
    ttl_ms = await env.redis.pttl(promise_key("q"))
    assert 15_000 < ttl_ms <= 20_000, "a round promises two thirds of its heartbeat timeout at most"
    await promise.withdraw()
    # Scheduled 25 s ago: any retry of this round may already have run and ended the sweep.
    assert (await attempt(25).run(sweep.sweep)).waiting == 1
    assert not await promise.holds(), "the late attempt's promise had lapsed; senders keep signalling"
    assert not await promise.hold(utcnow() - timedelta(milliseconds=1))


async def test_a_check_wecom_does_not_answer_is_asked_again_soon_without_failing_the_sweep(env: Env) -> None:
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan"})

    async def ensure_sweep() -> None:
        pass

    sent = await SendActivities(env.store, env.client(), confirmations=ensure_sweep).send(send_input())
    assert sent.status == "pending_confirmation"
    # The task is old enough that an unconfirmed answer would wait an hour; a failed look must not.
    with env.store.engine.begin() as conn:
        conn.execute(text("update messages set created_at = :at"), {"at": utcnow() - timedelta(hours=1)})
    env.fake.config.fail_rate = 1.0
    result = await ConfirmationActivities(env.store, env.client(), first_poll_s=60).sweep()
    assert (result.checked, result.decided, result.waiting) == (1, 0, 1)
    row = env.store.get_send("enr-1:s1:1")
    assert row.status == "pending_confirmation" and row.next_check_at is not None
    wait = row.next_check_at.replace(tzinfo=UTC) - utcnow()
    assert timedelta(seconds=30) < wait <= timedelta(seconds=61), "asked again after the first poll, not the backoff"


async def test_an_answer_about_one_task_that_cannot_be_read_does_not_stop_the_others(env: Env) -> None:
    async def ensure_sweep() -> None:
        pass

    for n in (1, 2):
        env.store.put_customer(f"c{n}", {"name": "张三", "external_userid": f"wm_c{n}", "owner_userid": "zhangsan"})
    acts = SendActivities(env.store, env.client(), confirmations=ensure_sweep)
    sent = [await acts.send(send_input(customer_id=f"c{n}", enrollment_id=f"enr-{n}")) for n in (1, 2)]
    for task in sent:
        env.fake.confirm(task.msgid or "")

    class GarbledAnswer(ConfirmationActivities):
        async def _ask(self, msgid: str, sender: str, external_userid: str) -> int:
            if msgid == sent[0].msgid:
                raise ValueError("invalid literal for int() with base 10: 'sent'")
            return await super()._ask(msgid, sender, external_userid)

    result = await GarbledAnswer(env.store, env.client(), first_poll_s=60).sweep()
    assert (result.checked, result.decided, result.waiting) == (2, 1, 1)
    assert env.store.get_send("enr-2:s1:1").status == "sent", "the other task's outcome is recorded"
    garbled = env.store.get_send("enr-1:s1:1")
    assert garbled.status == "pending_confirmation" and garbled.next_check_at is not None
    wait = garbled.next_check_at.replace(tzinfo=UTC) - utcnow()
    assert timedelta(seconds=30) < wait <= timedelta(seconds=61), "asked again after the first poll"


async def test_the_fakes_listing_can_start_after_the_messages_already_seen(env: Env) -> None:
    client = env.client()
    for content in ("one", "two", "three"):
        await client.add_msg_template({"external_userid": ["wm_1"], "sender": "zhangsan", "text": {"content": content}})
    first = (await env.http.get(f"{env.server.url}/_fake/messages")).json()
    assert [m["text"] for m in first["messages"]] == ["one", "two", "three"] and first["received"] == 3
    await client.add_msg_template({"external_userid": ["wm_1"], "sender": "zhangsan", "text": {"content": "four"}})
    later = (await env.http.get(f"{env.server.url}/_fake/messages", params={"since": first["received"]})).json()
    assert [m["text"] for m in later["messages"]] == ["four"] and later["received"] == 4
    refused = await env.http.get(f"{env.server.url}/_fake/messages", params={"since": -1})
    assert refused.status_code == 422


def sql_thread_trips(store: Store) -> list[str]:
    """The calls ``store`` hands to its SQL thread from now on."""
    trips: list[str] = []
    offload = store.offload

    async def counted(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await offload(fn, *args, **kwargs)

    store.offload = counted  # type: ignore[method-assign]
    return trips


def admitting(env: Env) -> SendActivities:
    """Send activities that run the admission a first send carries (as the worker builds them)."""
    # Nothing listens to journey.entered here: the dispatcher never needs Temporal.
    events = EngineEvents(Dispatcher(env.store, env.redis, None, task_queue="q"))  # type: ignore[arg-type]
    return SendActivities(env.store, env.client(), events=events,
                          admission=EnrollmentActivities(env.store, env.redis, events))  # fmt: skip


def admission(enrollment_id: str, **over: object) -> AdmitInput:
    base: dict[str, object] = {
        "enrollment_id": enrollment_id, "workflow_id": f"wf-{enrollment_id}", "journey_id": "j", "version": 1,
        "customer_id": "c1", "key": None, "trigger_event_id": f"e-{enrollment_id}",
        "entered_at": "2026-11-23T02:00:00+00:00", "reentry": "once", "listens": [],
    }  # fmt: skip
    base.update(over)
    return AdmitInput(**base)  # type: ignore[arg-type]


def attempt(n: int) -> ActivityEnvironment:
    runner = ActivityEnvironment()
    runner.info = dataclasses.replace(runner.info, attempt=n)
    return runner


async def test_a_send_that_carries_the_admission_admits_before_it_sends_and_refuses_with_nothing_sent(
    env: Env,
) -> None:
    # interpreter-4: a plan that starts with a send admits with it, not by a local activity.
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan"})
    await env.redis.set(gate_key("j"), json.dumps({"status": "active"}))
    acts = admitting(env)

    def first_send(enrollment_id: str) -> SendInput:
        batch = TallyInput(enrollment_id=enrollment_id, journey_id="j", version=1, seq=1,
                           entries=[TallyEntry("step.entered", "s1")])  # fmt: skip
        return send_input(enrollment_id=enrollment_id, admit=admission(enrollment_id), gate=True, tally=batch)

    trips = sql_thread_trips(env.store)
    sent = await attempt(1).run(acts.send, first_send("enr-1"))
    assert sent.status == "sent" and len(env.fake.listing()) == 1
    # The admission, the send's reads and its claim in one trip to the SQL thread, then the
    # outcome (and the dispatcher's first look at the journeys, cached from then on).
    assert [t for t in trips if t != "active_plans"] == ["decide_then_open", "finish_send"], trips
    assert env.store.get_enrollment("enr-1").workflow_id == "wf-enr-1"
    with env.store.engine.connect() as conn:
        entered = conn.execute(text("select count(*) from events where event_id = 'enr-1:entered'")).scalar()
    assert entered == 1 and step_counts(env.store) == {("step.entered", "s1"): 1}
    # reentry: once. The second enrollment of the customer is refused: nothing sent, logged or counted.
    refused = await attempt(1).run(acts.send, first_send("enr-2"))
    assert (refused.status, refused.reason) == ("refused", "reentry_once")
    # A paused journey refuses new customers (it does not hold them, as a later step's send would).
    await env.redis.set(gate_key("j"), json.dumps({"status": "paused"}))
    third = send_input(enrollment_id="enr-3", admit=admission("enr-3", reentry="after_exit"), gate=True)
    paused = await attempt(1).run(acts.send, third)
    assert (paused.status, paused.reason) == ("refused", "journey_paused")
    logged = [m.enrollment_id for m in env.store.list_messages(journey_id="j")]
    assert len(env.fake.listing()) == 1 and logged == ["enr-1"]
    assert not env.store.has_enrollment("enr-2") and not env.store.has_enrollment("enr-3")
    assert step_counts(env.store) == {("step.entered", "s1"): 1}


async def test_a_retried_send_keeps_the_admission_an_earlier_attempt_recorded(env: Env) -> None:
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan", "vip": True})
    await env.redis.set(gate_key("j"), json.dumps({"status": "active"}))
    acts = admitting(env)
    inp = send_input(admit=admission("enr-1", audience="customer.vip"), gate=True)
    await env.client().token("contact")
    env.fake.config.fail_rate = 1.0
    with pytest.raises(WeComError):
        await attempt(1).run(acts.send, inp)
    assert env.store.has_enrollment("enr-1"), "admitted before the delivery failed"
    # The profile changes between the attempts: the admission stands (it is not checked again).
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan", "vip": False})
    env.fake.config.fail_rate = 0.0
    assert (await attempt(2).run(acts.send, inp)).status == "sent"
    assert len(env.fake.listing()) == 1
    # A first attempt checks: the same rule now refuses another enrollment.
    other = send_input(enrollment_id="enr-2", admit=admission("enr-2", audience="customer.vip",
                                                                 reentry="after_exit"))  # fmt: skip
    assert (await attempt(1).run(acts.send, other)).reason == "audience"


def local_attempt(n: int) -> ActivityEnvironment:
    """An attempt of a local activity: its count restarts at 1 when its workflow task is retried."""
    runner = attempt(n)
    runner.info = dataclasses.replace(runner.info, is_local=True)
    return runner


async def test_a_local_rerun_keeps_the_admission_and_the_message_its_first_run_recorded(env: Env) -> None:
    # The worker died after the first send logged its message, before its workflow task
    # completed: the send runs again as attempt 1. The journey was paused meanwhile, which
    # refuses new customers; this one stays admitted and gets its recorded outcome.
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan"})
    await env.redis.set(gate_key("j"), json.dumps({"status": "active"}))
    acts = admitting(env)
    inp = send_input(admit=admission("enr-1"), gate=True)
    first = await local_attempt(1).run(acts.send, inp)
    await env.redis.set(gate_key("j"), json.dumps({"status": "paused"}))
    again = await local_attempt(1).run(acts.send, inp)
    assert first.status == again.status == "sent" and again.msgid == first.msgid
    assert len(env.fake.listing()) == 1
    # Not a re-run: a first attempt as an ordinary activity is refused by the paused journey.
    other = send_input(enrollment_id="enr-2", admit=admission("enr-2", reentry="after_exit"), gate=True)
    assert (await attempt(1).run(acts.send, other)).reason == "journey_paused"


async def test_a_send_cancelled_while_wecom_answers_still_logs_it_and_its_retry_sends_nothing_more(
    env: Env,
) -> None:
    # A local send's timeout cancels the attempt in the worker; its retry runs in the same process.
    env.store.put_customer("c1", {"name": "张三", "external_userid": "wm_c1", "owner_userid": "zhangsan"})
    acts = SendActivities(env.store, env.client())
    await env.client().token("contact")
    env.fake.config.latency_ms = 400

    async def cancelled_midway(inp: SendInput) -> None:
        timed_out = local_attempt(1)
        first = asyncio.create_task(timed_out.run(acts.send, inp))
        await asyncio.sleep(0.15)  # the request is at the fake, which answers after 400 ms
        timed_out.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first

    def logged() -> list[tuple[int, str]]:
        return [(m.visit, m.status) for m in env.store.list_messages(journey_id="j")]

    # The delivery goes on after the cancellation and logs what WeCom answered.
    await cancelled_midway(send_input())
    await asyncio.sleep(0.6)
    assert logged() == [(1, "sent")] and len(env.fake.listing()) == 1
    assert (await local_attempt(2).run(acts.send, send_input())).status == "sent"
    # A retry that starts while the delivery is still under way waits for it, then reports
    # it, rather than asking WeCom again (whose duplicate check would record a duplicate).
    await env.client().token("app")
    app = send_input(visit=2, channel="wecom.app", message={"to": ["zhangsan"], "text": "hi"})
    await cancelled_midway(app)
    assert (await local_attempt(2).run(acts.send, app)).status == "sent"
    await asyncio.sleep(0.6)
    assert logged() == [(1, "sent"), (2, "sent")]
    assert [m.get("duplicate_of") for m in env.fake.listing()] == [None, None]
