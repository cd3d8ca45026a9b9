"""Customer mass sends are not doubled when WeCom acted on an attempt we gave up on."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter

from engine.dispatch import Dispatcher, IncomingEvent
from engine.fake_wecom import FakeWeCom
from engine.worker import build_worker
from tests.conftest import Stack
from tests.e2e.test_wecom_faults import private_runtime
from tests.helpers import eventually

CUSTOMERS = 30


async def test_late_answers_do_not_create_a_second_mass_send(stack: Stack) -> None:
    jid = f"late-{uuid.uuid4().hex[:6]}"
    rt, queue = await private_runtime(stack, f"""
journey: {jid}
trigger: {{event: late.test}}
steps:
  - send: {{channel: wecom.customer, sender: zhangsan, text: "{jid} #{{{{ trigger.n }}}}"}}
    timeout: 10s
    retry: {{max_attempts: 50, initial: 1s, backoff: 1.0, max_interval: 1s}}
""", wecom_timeout_s=0.5, wecom_confirm_poll_s=0.5)  # fmt: skip
    fake = stack.fake_state
    random.seed(8)
    try:
        # Every third call is processed by WeCom but answered after our client gave up.
        fake.config.fail_rate, fake.config.fail_errcodes, fake.config.timeout_s = 0.35, [0], 1.0
        for n in range(CUSTOMERS):
            await asyncio.to_thread(rt.store.put_customer, f"{jid}-c{n}", {"external_userid": f"wm-{jid}-{n}"})
        dispatcher = Dispatcher(rt.store, rt.redis, rt.temporal, task_queue=queue)
        async with build_worker(rt):
            await dispatcher.accept([IncomingEvent(event_id=f"{jid}-{n}", customer_id=f"{jid}-c{n}", name="late.test",
                                                   properties={"n": n}) for n in range(CUSTOMERS)])  # fmt: skip

            async def log() -> list:
                return await asyncio.to_thread(rt.store.list_messages, journey_id=jid, limit=1000)

            rows = await eventually(log, until=lambda rows: len(rows) == CUSTOMERS
                                    and all(r.status == "sent" for r in rows), timeout=90, interval=0.5)  # fmt: skip
    finally:
        fake.config.fail_rate, fake.config.fail_errcodes = 0.0, None
        await rt.close()
    tasks = Counter(m["text"] for m in fake.listing() if (m["text"] or "").startswith(jid))
    assert len(tasks) == CUSTOMERS and set(tasks.values()) == {1}, "one mass-send task per customer"
    adopted = [r for r in rows if (r.response or {}).get("reconciled")]
    assert adopted, "some attempts timed out after WeCom created the task, and their retries adopted it"
    msgids = {m["msgid"] for m in fake.listing(delivered_only=True)}
    assert all(r.response["msgid"] in msgids for r in rows)


def test_fake_lists_mass_sends_by_time_with_paging() -> None:
    fake = FakeWeCom()
    for n in range(120):
        fake.msg_template({"chat_type": "single", "external_userid": [f"wm{n}"], "sender": "zhangsan",
                           "text": {"content": f"hello {n}"}})  # fmt: skip
    now = int(time.time())
    first = fake.groupmsg_list({"chat_type": "single", "start_time": now - 60, "end_time": now + 60})
    assert first["errcode"] == 0 and len(first["group_msg_list"]) == 50 and first["next_cursor"]
    task = first["group_msg_list"][0]
    assert task["create_type"] == 0 and task["creator"] == "zhangsan" and task["text"] == {"content": "hello 0"}
    rest = fake.groupmsg_list({"chat_type": "single", "start_time": now - 60, "end_time": now + 60, "limit": 100,
                               "cursor": first["next_cursor"]})  # fmt: skip
    assert len(rest["group_msg_list"]) == 70 and rest["next_cursor"] == ""
    assert fake.groupmsg_list({"chat_type": "single", "start_time": now - 60, "end_time": now + 60,
                               "filter_type": 1})["group_msg_list"] == []  # fmt: skip
    assert fake.groupmsg_list({"chat_type": "single", "start_time": now, "end_time": now - 1})["errcode"] == 40058
    assert fake.groupmsg_list({"chat_type": "single", "start_time": 0, "end_time": now})["errcode"] == 40058
