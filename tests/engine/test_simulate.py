"""``journeys simulate``: the §7 JSON contract on the time-skipping server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

import engine.simulate
from engine.errors import SpecError
from engine.runtime import Runtime
from engine.scenario import load_scenario
from engine.simulate import compile_scenario_journeys, simulate, simulate_file
from engine.worker import build_worker

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SCENARIO = FIXTURES / "scenarios" / "paid-or-nudge.yaml"


@pytest.fixture(scope="module")
async def result() -> dict:
    started = time.monotonic()
    out = await simulate_file(SCENARIO)
    out["_wall_s"] = time.monotonic() - started
    return out


async def test_one_hour_wait_for_runs_in_seconds(result: dict) -> None:
    assert result["_wall_s"] < 30, f"a 1-day scenario must not take real time, took {result['_wall_s']:.1f}s"


async def test_timeout_path_sends_the_nudge_after_one_hour(result: dict) -> None:
    assert result["sends"] == [
        {
            "customer": "u1",
            "journey": "paid-or-nudge",
            "step": "nudge",
            "channel": "wecom.customer",
            "to": ["wm_u1"],
            "sender": "guide01",
            "at": "2026-11-23T11:00:00+08:00",
            "offset_s": 3600,
            "status": "sent",
            "reason": None,
            "text": "李雷，您的订单 A100 还未支付",
        }
    ]
    u1 = next(e for e in result["enrollments"] if e["customer"] == "u1")
    assert u1 == {
        "customer": "u1",
        "journey": "paid-or-nudge",
        "key": "A100",
        "status": "exited",
        "exit_reason": "completed",
        "converted": False,
        "arm": None,
        "path": ["wait_paid", "nudge"],
    }


async def test_event_before_timeout_takes_on_event_exit(result: dict) -> None:
    u2 = next(e for e in result["enrollments"] if e["customer"] == "u2")
    assert u2["status"] == "exited"
    assert u2["exit_reason"] == "exit_step"
    assert u2["path"] == ["wait_paid"]
    assert not any(s["customer"] == "u2" for s in result["sends"])


async def test_trigger_rule_keeps_small_orders_out(result: dict) -> None:
    assert [e["customer"] for e in result["enrollments"]] == ["u1", "u2"]


async def test_wait_ignores_events_from_before_it_began(tmp_path: Path) -> None:
    journey = tmp_path / "j.yaml"
    journey.write_text("""
journey: late-waiter
trigger: {event: signup}
steps:
  - wait: 10m
  - id: w
    wait_for: {event: clicked, timeout: 1h}
  - id: after
    send: {channel: wecom.app, to: ops, text: "matched={{ steps.w.matched }}"}
""")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"""
journey: {journey.name}
start: "2026-11-23T10:00:00+08:00"
events:
  - {{at: 0m, customer: a, name: signup}}
  - {{at: 5m, customer: a, name: clicked}}
  - {{at: 0m, customer: b, name: signup}}
  - {{at: 20m, customer: b, name: clicked}}
until: 2h
""")
    out = await simulate_file(scenario)
    by_customer = {s["customer"]: s for s in out["sends"]}
    assert by_customer["a"]["text"] == "matched=False" and by_customer["a"]["offset_s"] == 4200
    assert by_customer["b"]["text"] == "matched=True" and by_customer["b"]["offset_s"] == 1200


async def test_invalid_scenario_is_a_spec_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "journey: x.yaml\nstart: 2026-11-23T10:00:00+08:00\nevents:\n  - {at: soon, customer: a, name: b}\nuntil: 1d\n"
    )
    with pytest.raises(SpecError) as info:
        await simulate_file(bad)
    assert "bad.yaml:4: events[0].at" in str(info.value)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "journeys"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


def test_cli_prints_the_contract_json() -> None:
    proc = run_cli("simulate", str(SCENARIO), "--json")
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert set(body) == {"sends", "enrollments"}
    assert body["sends"][0]["offset_s"] == 3600


def test_cli_exit_code_1_for_an_invalid_journey(tmp_path: Path) -> None:
    journey = tmp_path / "j.yaml"
    journey.write_text("journey: j1\ntrigger: {event: a}\nsteps:\n  - wait_for: {event: b}\n")
    scenario = tmp_path / "s.yaml"
    scenario.write_text("journey: j.yaml\nstart: 2026-11-23T10:00:00+08:00\nuntil: 1d\n")
    proc = run_cli("simulate", str(scenario), "--json")
    assert proc.returncode == 1
    assert "j.yaml:4: steps[0].wait_for.timeout: required key 'timeout' is missing" in proc.stderr
    assert proc.stdout == ""


async def test_a_rehearsal_runs_the_interpreter_in_the_sdk_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    # Production skips the sandbox (engine/worker.py); simulations and every language test
    # built on them keep it, so a clock or I/O call in a workflow module fails them.
    runners: list[object] = []

    def recording(rt: Runtime, **kwargs: Any) -> Worker:
        worker = build_worker(rt, **kwargs)
        runners.append(worker.config()["workflow_runner"])
        return worker

    monkeypatch.setattr(engine.simulate, "build_worker", recording)
    scenario = load_scenario(SCENARIO)
    await simulate(scenario, compile_scenario_journeys(scenario, SCENARIO.parent))
    assert len(runners) == 1 and isinstance(runners[0], SandboxedWorkflowRunner)
