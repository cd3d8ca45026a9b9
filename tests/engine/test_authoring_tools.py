"""Authoring tools: JSON Schema, Mermaid graphs, the shared examples, compile speed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.compiler import compile_journey, compile_text
from engine.graph import to_mermaid
from engine.schema import SCHEMA_PATH, render_schema
from engine.simulate import simulate_file

HERE = Path(__file__).resolve().parents[1]
EXAMPLES = HERE / "fixtures" / "shared_examples"
SHARED = HERE.parents[1] / "shared" / "examples"
EXAMPLE_JOURNEYS = sorted((EXAMPLES / "journeys").glob("*.yaml"))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "journeys"), *args], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_committed_schema_is_current() -> None:
    hint = "run `journeys schema --builtin -o engine/schema/journey.schema.json`"
    assert SCHEMA_PATH.read_text() == render_schema(), hint


def test_schema_describes_steps_channels_and_activities() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    defs = schema["$defs"]
    step_refs = {ref["$ref"].rsplit("/", 1)[1] for ref in schema["properties"]["steps"]["items"]["oneOf"]}
    assert {"SendStep", "WaitStep", "WaitUntilStep", "WaitForStep", "BranchStep", "SplitStep", "TagStep",
            "UpdateStep", "ActivityStep", "GotoStep", "ExitStep"} == step_refs  # fmt: skip
    assert "wecom.customer" in defs["SendSpec"]["properties"]["channel"]["enum"]
    assert "profile.increment" in defs["ActivityStep"]["properties"]["activity"]["anyOf"][0]["enum"]
    assert defs["WaitStep"]["properties"]["wait"]["pattern"]
    assert schema["additionalProperties"] is False


def test_shared_examples_are_the_ones_the_project_ships_against() -> None:
    # The copies match the checksums recorded from shared/examples; when shared/ is beside
    # this checkout (as in CI) they must also equal it, so a change there is noticed.
    recorded = dict(line.split()[::-1] for line in (EXAMPLES / "SHA256SUMS").read_text().splitlines())
    copies = sorted(f"./{p.relative_to(EXAMPLES)}" for p in EXAMPLES.rglob("*.yaml"))
    assert copies == sorted(recorded), "the manifest lists exactly the copied examples"
    for name in copies:
        data = (EXAMPLES / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == recorded[name], f"{name} changed without its checksum"
        if SHARED.is_dir():
            assert data == (SHARED / name).read_bytes(), f"{name} drifted from shared/examples"


@pytest.mark.parametrize("path", EXAMPLE_JOURNEYS, ids=lambda p: p.stem)
def test_shared_example_validates_and_graphs(path: Path) -> None:
    compiled = compile_journey(path.read_text(), source=path.name)
    graph = to_mermaid(compiled.plan)
    assert graph.startswith("flowchart TD\n")
    for node in compiled.plan.nodes:
        assert f'["{node.id}<br/>' in graph or f'{{"{node.id}<br/>' in graph or f'(["{node.id}<br/>' in graph


def test_validate_and_graph_commands_on_the_examples() -> None:
    ok = cli("validate", *map(str, EXAMPLE_JOURNEYS))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count(": ok (") == len(EXAMPLE_JOURNEYS)
    assert "warning:" not in ok.stderr
    graph = cli("graph", str(EXAMPLES / "journeys" / "unpaid-order.yaml"))
    assert graph.returncode == 0
    assert '-->|"timeout"|' in graph.stdout and '-->|"else"|' in graph.stdout


async def test_unpaid_order_scenario_gives_the_outcome_in_its_comment() -> None:
    result = await simulate_file(EXAMPLES / "scenarios" / "unpaid-order.yaml")
    sends = [(s["customer"], s["step"], s["offset_s"], s["status"]) for s in result["sends"]]
    # u1 gets nudge (1h), gold_coupon (2h), then a sales task (6h) and tag unpaid_order
    assert sends == [
        ("u1", "nudge", 3600, "sent"), ("u2", "nudge", 3600, "sent"),
        ("u1", "gold_coupon", 7200, "sent"), ("u1", "task_for_sales", 21600, "sent"),
    ]  # fmt: skip
    by = {e["customer"]: e for e in result["enrollments"]}
    assert set(by) == {"u1", "u2"}, "u3 (amount 5) never enters"
    assert "tag_unpaid" in by["u1"]["path"] and by["u1"]["exit_reason"] == "completed"
    # u2 gets only the nudge and converts at 90m
    assert (by["u2"]["exit_reason"], by["u2"]["converted"]) == ("goal", True)
    assert by["u1"]["key"] == "A100" and by["u1"]["converted"] is False


def test_a_200_step_journey_compiles_in_seconds_not_minutes() -> None:
    steps = []
    for i in range(50):
        steps += [
            f"  - id: s{i}\n    send: {{channel: wecom.customer, sender: '{{{{ customer.owner_userid }}}}', "
            f"text: '第 {i} 条 {{{{ customer.name }}}}'}}\n",
            f"  - id: w{i}\n    wait_for: {{event: order.paid, when: event.n == {i}, timeout: 1d}}\n"
            f"    on_event: b{i}\n",
            f"  - id: b{i}\n    branch:\n      - when: customer.tier == 'gold'\n"
            f"        steps: [{{tag: {{add: [g{i}]}}}}]\n"
            f"      - else: [{{update: {{score: (customer.score or 0) + {i}}}}}]\n",
            f"  - id: t{i}\n    wait: 1h\n",
        ]
    text = "journey: big\ntrigger: {event: a, when: event.amount > 1}\nsteps:\n" + "".join(steps)
    started = time.perf_counter()
    plan = compile_text(text)
    elapsed = time.perf_counter() - started
    assert len([n for n in plan.nodes if not n.id.startswith("b") or "." not in n.id]) >= 200
    # A generous bound: it catches a pathological (quadratic, per-path) compile, not a slow
    # host. This one takes ~0.3 s on a quick machine and 1.5 s on the slowest seen here.
    assert elapsed < 5.0, f"compiling a 200-step journey took {elapsed:.2f}s"


async def test_live_code_welcome_example_runs_end_to_end(tmp_path: Path) -> None:
    scenario = tmp_path / "lc.yaml"
    scenario.write_text(f"""
journey: {EXAMPLES / "journeys" / "live-code-welcome.yaml"}
start: "2026-11-23T10:00:00+08:00"
customers:
  - {{id: wmA, name: 阿强}}
  - {{id: wmB, name: 小美}}
events:
  - {{at: 0m, customer: wmA, name: wecom.contact_added, properties: {{userid: zhangsan, state: store1}}}}
  - {{at: 5m, customer: wmB, name: wecom.contact_added, properties: {{userid: lisi, state: store2}}}}
  - {{at: 2d, customer: wmB, name: order.paid}}
until: 15d
""")
    result = await simulate_file(scenario)
    welcomes = [(s["customer"], s["channel"], s["status"]) for s in result["sends"] if s["step"].startswith("welcome")]
    assert welcomes == [("wmA", "wecom.welcome", "sent"), ("wmB", "wecom.welcome", "sent")]
    by = {e["customer"]: e for e in result["enrollments"]}
    assert (by["wmA"]["exit_reason"], by["wmB"]["exit_reason"], by["wmB"]["converted"]) == ("completed", "goal", True)
    assert by["wmA"]["arm"] in ("save_money", "save_time")
    assert [s["sender"] for s in result["sends"] if s["step"] == "guide"] == ["zhangsan", "lisi"]
    assert all(s["at"].endswith("T20:00:00+08:00") for s in result["sends"] if s["step"] == "guide")
