"""A worker killed between a plugin activity's side effect and its completion.

The worker runs as its own process (``journeys worker``) against the test's Temporal dev
server. The CRM (the example plugin's local gateway) records the lead and then holds its
answer; the test kills the worker with SIGKILL at that moment, so Temporal never hears
that the activity finished. A second worker gets the retry after the step's timeout and
calls the CRM again with the same idempotency key: the CRM answers with the lead it
already made, so the side effect happens once and the journey carries on with its result.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.compiler import compile_text
from engine.config import Settings
from engine.dispatch import Dispatcher, IncomingEvent
from engine.embedded import ChildProcess
from engine.lifecycle import Lifecycle
from engine.runtime import Runtime
from engine.temporal import connect
from tests.helpers import eventually
from tests.plugin_example import example_registry, subprocess_env

pytestmark = pytest.mark.slow

JOURNEY = """
journey: crash-lead
trigger: {event: form.submitted}
steps:
  - id: lead
    activity: crm.create_lead
    timeout: 2s
    retry: {initial: 1s}
    with: {name: "{{ customer.name }}", phone: "{{ trigger.phone }}", source: crash-test}
  - id: thanks
    activity: sms.send
    with: {to: "{{ trigger.phone }}", text: "Your reference is {{ steps.lead.result.lead_id }}"}
"""


@pytest.fixture
def gateway() -> Iterator[object]:
    example_registry()
    from journeys_plugin_example.gateway import Gateway

    server = Gateway(port=0).start()
    yield server
    server.stop()


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([str(Path(sys.executable).parent / "journeys"), "worker"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


async def test_killed_worker_retries_with_the_same_key_and_the_effect_happens_once(
    gateway: object, redis_server: ChildProcess, temporal_server: ChildProcess, tmp_path: Path
) -> None:
    from journeys_plugin_example.gateway import Gateway

    assert isinstance(gateway, Gateway)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'journeys.db'}",
        redis_url=f"redis://127.0.0.1:{redis_server.port}/0",
        temporal_address=f"127.0.0.1:{temporal_server.port}",
        temporal_task_queue=f"crash-{uuid.uuid4().hex[:8]}",
        journeys_data_dir=tmp_path,
    )
    env = subprocess_env(
        DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url, TEMPORAL_ADDRESS=settings.temporal_address,
        TEMPORAL_TASK_QUEUE=settings.temporal_task_queue, JOURNEYS_DATA_DIR=str(tmp_path),
        JOURNEYS_EXAMPLE_GATEWAY_URL=gateway.url,
    )  # fmt: skip
    rt = await Runtime.open(settings, temporal=await connect(settings.temporal_address, settings.temporal_namespace))
    log = tmp_path / "worker.log"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        plan = compile_text(JOURNEY, source="crash-lead.yaml")
        await asyncio.to_thread(rt.store.create_version, yaml_text=JOURNEY, plan=plan, author="test")
        await Lifecycle(rt.store, rt.redis, rt.temporal, task_queue=settings.temporal_task_queue).activate("crash-lead")
        await asyncio.to_thread(rt.store.put_customer, "c1", {"name": "Li Lei"})

        gateway.hold = True  # record the lead, then keep the answer until the worker is dead
        workers.append(start_worker(env, log))
        dispatcher = Dispatcher(rt.store, rt.redis, rt.temporal, task_queue=settings.temporal_task_queue)
        await dispatcher.accept([IncomingEvent(event_id=f"e-{uuid.uuid4().hex}", customer_id="c1",
                                               name="form.submitted", properties={"phone": "13800000001"},
                                               timestamp=datetime.now(UTC))])  # fmt: skip
        seen = await asyncio.to_thread(gateway.effect_seen.wait, 60)
        assert seen, f"the worker never called the CRM:\n{log.read_text()}"
        os.kill(workers[0].pid, signal.SIGKILL)
        assert await asyncio.to_thread(workers[0].wait, 10) == -signal.SIGKILL
        gateway.release()
        assert len(gateway.snapshot()["leads"]) == 1, "the side effect happened before the kill"

        workers.append(start_worker(env, log))

        async def enrollment() -> list[object]:
            return await asyncio.to_thread(rt.store.list_enrollments, journey_id="crash-lead")

        [row] = await eventually(enrollment, until=lambda rows: bool(rows) and rows[0].status == "exited", timeout=60)
        assert row.exit_reason == "completed", log.read_text()
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        await rt.close()

    state = gateway.snapshot()
    [lead] = state["leads"]
    lead_calls = [key for path, key in state["requests"] if path == "/crm/leads"]
    assert lead_calls == [lead["idempotency_key"]] * 2, "the retry after the crash used the same key"
    assert lead["idempotency_key"] == f"{row.enrollment_id}:lead:1"
    [message] = state["messages"]
    assert message["text"] == f"Your reference is {lead['lead_id']}", "steps.lead.result is the CRM's lead"
