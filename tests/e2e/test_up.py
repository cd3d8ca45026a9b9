"""``journeys up`` as a user runs it: one process tree, healthy in under a minute, one Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio.api.history.v1 import WorkflowExecutionStartedEventAttributes

from engine.embedded import free_port
from engine.routing import enrollment_workflow_id
from engine.temporal import connect

pytestmark = pytest.mark.slow

JOURNEY = """journey: restart-proof
trigger: {event: signup}
steps:
  - send: {channel: wecom.app, to: ops, text: "first {{ trigger.n }}"}
  - wait: 5s
  - send: {channel: wecom.app, to: ops, text: "second {{ trigger.n }}"}
"""


@dataclass
class Up:
    proc: subprocess.Popen[str]
    api: str
    fake: str
    data_dir: Path
    log: Path
    started_s: float

    def key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()


def start_up(data_dir: Path, ports: dict[str, int], journeys_dir: Path | None = None) -> Up:
    log = data_dir.parent / f"up-{time.time_ns()}.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TEMPORAL_ADDRESS", "REDIS_URL", "WECOM_BASE_URL", "DATABASE_URL", "JOURNEYS_ADMIN_KEY")
    }
    args = [
        str(Path(sys.executable).parent / "journeys"),
        "up",
        "--data-dir",
        str(data_dir),
        "--port",
        str(ports["api"]),
        "--fake-wecom-port",
        str(ports["fake"]),
        "--temporal-port",
        str(ports["temporal"]),
        "--temporal-ui-port",
        "0",
    ]
    if journeys_dir:
        args += ["--journeys", str(journeys_dir)]
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    api = f"http://127.0.0.1:{ports['api']}"
    deadline = started + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{api}/healthz", timeout=2).status_code == 200:
                return Up(proc, api, f"http://127.0.0.1:{ports['fake']}", data_dir, log, time.monotonic() - started)
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise AssertionError(f"journeys up was not healthy within 60 s:\n{log.read_text()}")


def stop_up(up: Up) -> int:
    up.proc.send_signal(signal.SIGINT)
    return up.proc.wait(timeout=60)


@pytest.fixture
def ports() -> Iterator[dict[str, int]]:
    yield {"api": free_port(), "fake": free_port(), "temporal": free_port()}


async def first_event(address: str, workflow_id: str) -> WorkflowExecutionStartedEventAttributes:
    """The started event of a workflow's latest run, read over the Temporal API."""
    client = await connect(address, "default")
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return history.events[0].workflow_execution_started_event_attributes


def fake_texts(up: Up) -> list[str]:
    return [m["text"] for m in httpx.get(f"{up.fake}/_fake/messages", timeout=5).json()["messages"]]


def test_up_is_healthy_fast_prints_urls_and_stops_cleanly(tmp_path: Path, ports: dict[str, int]) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "restart-proof.yaml").write_text(JOURNEY)
    up = start_up(tmp_path / "data", ports, journeys)
    try:
        assert up.started_s < 60
        health = httpx.get(f"{up.api}/healthz", timeout=5).json()
        assert health == {"status": "ok", "checks": {"temporal": "up", "db": "up", "redis": "up"}}
        out = up.log.read_text()
        for expected in (up.api, up.fake, f"127.0.0.1:{ports['temporal']}", up.key(), "restart-proof"):
            assert expected in out
        listed = httpx.get(f"{up.api}/v1/journeys", headers={"Authorization": f"Bearer {up.key()}"}).json()
        assert [(j["id"], j["status"]) for j in listed] == [("restart-proof", "active")]
    finally:
        code = stop_up(up)
    assert code == 0, up.log.read_text()
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "temporal/redis children must stop with journeys up"


def test_enrollments_survive_a_restart(tmp_path: Path, ports: dict[str, int]) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "restart-proof.yaml").write_text(JOURNEY)
    data = tmp_path / "data"
    up = start_up(data, ports, journeys)
    try:
        headers = {"Authorization": f"Bearer {up.key()}"}
        resp = httpx.post(
            f"{up.api}/v1/events",
            headers=headers,
            json={"event_id": "r-1", "customer_id": "c9", "name": "signup", "properties": {"n": 7}},
        )
        assert resp.status_code == 202
        deadline = time.monotonic() + 20
        while "first 7" not in fake_texts(up):
            assert time.monotonic() < deadline, "first message never arrived"
            time.sleep(0.2)
        wid = enrollment_workflow_id("restart-proof", "c9")
        started = asyncio.run(first_event(f"127.0.0.1:{ports['temporal']}", wid))
        assert started.workflow_type.name == "JourneyV5", "new enrollments start as the type with local sends"
    finally:
        assert stop_up(up) == 0
    # The enrollment sits on its 5 s timer in the dev server's database file.
    again = start_up(data, ports, journeys)
    try:
        deadline = time.monotonic() + 30
        while "second 7" not in fake_texts(again):
            assert time.monotonic() < deadline, f"the timer did not survive the restart:\n{again.log.read_text()}"
            time.sleep(0.2)
        assert fake_texts(again).count("second 7") == 1
    finally:
        assert stop_up(again) == 0
