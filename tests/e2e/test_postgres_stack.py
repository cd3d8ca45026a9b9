"""The whole stack on PostgreSQL: the hot path's statements and the store's eight SQL threads."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from engine.embedded import ChildProcess
from tests.conftest import Stack, open_stack
from tests.e2e.test_walking_skeleton import JOURNEY, _get_json, deploy, fake_messages
from tests.helpers import eventually
from tests.postgres import PostgresCluster


@pytest_asyncio.fixture(scope="module")
async def pg_stack(redis_server: ChildProcess, temporal_server: ChildProcess, pg_cluster: PostgresCluster,
                   tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:  # fmt: skip
    url = pg_cluster.create_database(f"e2e_{uuid.uuid4().hex[:12]}")
    data_dir: Path = tmp_path_factory.mktemp("pg-stack")
    async with open_stack(redis_server.port, temporal_server.port, data_dir, database_url=url) as running:
        assert running.rt.store.engine.dialect.name == "postgresql"
        yield running


async def test_enrollments_send_log_and_count_on_postgresql(pg_stack: Stack) -> None:
    jid = f"pg-{uuid.uuid4().hex[:8]}"
    customers = [f"c-{uuid.uuid4().hex[:6]}" for _ in range(5)]
    async with pg_stack.client() as api:
        await deploy(api, JOURNEY.format(jid=jid))
        for cid in customers:
            profile = {"name": "张三", "external_userid": f"wm_{cid}", "owner_userid": "zhangsan"}
            assert (await api.put(f"/v1/customers/{cid}", json=profile)).status_code == 200
        events = [{"event_id": f"evt-{cid}", "customer_id": cid, "name": "signup.completed",
                   "properties": {"plan": "pro"}} for cid in customers]  # fmt: skip
        accepted = await api.post("/v1/events", json={"events": events})
        assert accepted.status_code == 202, accepted.text
        # Concurrent enrollments: five admissions, ten sends and five ends on the SQL threads at once.
        await eventually(lambda: fake_messages(pg_stack, api="message/send"), until=lambda m: len(m) >= 5)
        rows = await eventually(lambda: _get_json(api, f"/v1/journeys/{jid}/enrollments?status=exited"),
                                until=lambda r: len(r) == 5)  # fmt: skip
        assert {r["exit_reason"] for r in rows} == {"completed"}
        # The customer messages are mass-send tasks: the confirmation sweep records them sent.
        log = await eventually(lambda: _get_json(api, f"/v1/messages?journey={jid}"),
                               until=lambda log: all(m["status"] == "sent" for m in log), timeout=60)  # fmt: skip
        assert sorted(m["step_id"] for m in log) == ["hello"] * 5 + ["remind_staff"] * 5
        stats = await _get_json(api, f"/v1/journeys/{jid}/stats")
    assert stats["enrollments"]["entered"] == 5 and stats["enrollments"]["exited"] == {"completed": 5}
    steps = {s["step"]: s for s in stats["steps"]}
    assert [(steps[s]["entered"], steps[s]["completed"]) for s in ("hello", "pause", "remind_staff")] == [(5, 5)] * 3
    # Each message once at the fake: five to customers, five to staff.
    for cid in customers:
        assert len(await fake_messages(pg_stack, external_userid=f"wm_{cid}")) == 1
