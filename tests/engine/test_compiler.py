"""Loader and compiler: every problem located by file, YAML path and line, all at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.compiler import compile_text
from engine.errors import SpecError
from engine.plan import END, EXIT, PARK, SendNode, WaitForNode, WaitNode

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "journeys"


def problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(SpecError) as info:
        compile_text(text, source="j.yaml")
    return [(p.line, p.path, p.message) for p in info.value.problems]


def test_valid_fixture_compiles_to_a_frozen_plan() -> None:
    plan = compile_text((FIXTURES / "paid-or-nudge.yaml").read_text(), source="paid-or-nudge.yaml")
    assert plan.journey_id == "paid-or-nudge"
    assert plan.trigger.key == "event.order_id"
    wait, send = plan.nodes
    assert isinstance(wait, WaitForNode) and wait.timeout_s == 3600 and wait.on_event == EXIT
    assert wait.on_timeout == "nudge"
    assert isinstance(send, SendNode) and send.next == END and send.on_error == PARK
    assert send.message["sender"] == "{{ customer.owner_userid }}"
    assert len(plan.plan_hash) == 64
    again = compile_text((FIXTURES / "paid-or-nudge.yaml").read_text())
    assert again.plan_hash == plan.plan_hash, "the hash must be stable for the same journey"
    with pytest.raises(Exception):  # noqa: B017 - frozen pydantic raises ValidationError
        plan.nodes[0].timeout_s = 1  # type: ignore[misc]


def test_generated_ids_and_durations() -> None:
    plan = compile_text("journey: ids\ntrigger: {event: a}\nsteps:\n  - wait: 1h30m\n  - wait: 1w\n")
    assert [n.id for n in plan.nodes] == ["steps[0]", "steps[1]"]
    assert all(isinstance(n, WaitNode) for n in plan.nodes)
    assert [n.seconds for n in plan.nodes] == [5400, 604800]


def test_all_meaning_problems_are_reported_together() -> None:
    text = """journey: many-problems
trigger: {event: order.created, when: evnt.amount > 1}
steps:
  - id: hello
    send: {channel: wecom.custmer, sender: x, text: hi}
  - wait: 10m
  - id: w
    wait_for: {event: order.paid, timeout: 1h}
    on_timeout: nuge
  - id: nudge
    send:
      channel: wecom.app
      text: "hi {{ customr.name }}"
"""
    found = problems(text)
    assert [(line, path) for line, path, _ in found] == [
        (2, "trigger.when"),
        (5, "steps[0].send.channel"),
        (9, "steps[2].on_timeout"),
        (13, "steps[3].send.text"),
    ]
    messages = [m for _, _, m in found]
    assert "did you mean 'event'" in messages[0]
    assert "did you mean 'wecom.customer'" in messages[1]
    assert "unknown step 'nuge'; did you mean 'nudge'?" == messages[2]
    assert "did you mean 'customer'" in messages[3]


@pytest.mark.parametrize(
    ("text", "line", "path", "fragment"),
    [
        ("journey: Bad_Id\ntrigger: {event: a}\nsteps:\n  - wait: 1h\n", 1, "journey", "lowercase letters"),
        ("journey: ok-id\ntrigger: {event: a}\nsteps: []\n", 3, "steps", "at least 1"),
        ("journey: ok-id\nsteps:\n  - wait: 1h\n", 1, "trigger", "required key 'trigger'"),
        (
            "journey: ok-id\ntrigger: {event: a}\ntimezone: Mars/Base\nsteps:\n  - wait: 1h\n",
            3,
            "timezone",
            "unknown time zone",
        ),
        ("journey: ok-id\ntrigger: {event: a}\nsteps:\n  - wiat: 1h\n", 4, "steps[0]", "did you mean 'wait'"),
        (
            "journey: ok-id\ntrigger: {event: a}\nsteps:\n  - wait: 1h\n    send: {channel: wecom.app, text: x}\n",
            4,
            "steps[0]",
            "exactly one action",
        ),
        ("journey: ok-id\ntrigger: {event: a}\nsteps:\n  - wait: 15\n", 4, "steps[0].wait", "not a duration"),
        (
            "journey: ok-id\ntrigger: {event: a}\nsteps:\n  - wait_for: {event: b}\n",
            4,
            "steps[0].wait_for.timeout",
            "required key 'timeout'",
        ),
        (
            "journey: ok-id\ntrigger: {event: a}\nsteps:\n  - wait_for: {event: b, timeout: 1h}\n    on_evnt: exit\n",
            5,
            "steps[0].on_evnt",
            "did you mean 'on_event'",
        ),
        (
            "journey: ok-id\ntrigger: {event: a}\nsteps:\n  - send: {channel: wecom.customer, text: hi}\n",
            4,
            "steps[0].send",
            "needs 'sender'",
        ),
        (
            "journey: ok-id\ntrigger: {event: a}\nsteps:\n  - send: {channel: wecom.app, text: a, markdown: b}\n",
            4,
            "steps[0].send",
            "exactly one of text, markdown or textcard",
        ),
        ("journey: ok-id\ntrigger: {event: 'a*b'}\nsteps:\n  - wait: 1h\n", 2, "trigger.event", "prefix"),
        (
            "journey: ok-id\ntrigger: {event: a}\nsteps:\n  - id: s\n"
            "    send: {channel: wecom.app, text: a}\n    on_error: s\n",
            4,
            "steps[0]",
            "loop without a wait",
        ),
        (
            "journey: ok-id\ntrigger: {event: a}\nsteps:\n  - wait_for: {event: b, timeout: 1h}\n    on_event: exit\n"
            "    on_timeout: exit\n  - id: never\n    wait: 1h\n",
            7,
            "steps[1]",
            "can never be reached",
        ),
        (
            "journey: ok-id\ntrigger: {event: a}\nsteps:\n  - id: x\n    wait: 1h\n  - id: x\n    wait: 2h\n",
            6,
            "steps[1].id",
            "duplicate step id 'x'",
        ),
        ("journey: ok-id\ntrigger: {event: a}\nsteps:\n  - wait: 1h\nsteps: []\n", 5, "", "duplicate key"),
        ("journey: [unclosed\n", 2, "", "invalid YAML"),
        ("- just\n- a list\n", 1, "", "a journey file is a mapping"),
    ],
)
def test_each_problem_names_line_and_path(text: str, line: int, path: str, fragment: str) -> None:
    found = problems(text)
    assert any(ln == line and p == path and fragment in m for ln, p, m in found), found


def test_error_text_names_file_line_and_path() -> None:
    with pytest.raises(SpecError) as info:
        compile_text("journey: ok-id\ntrigger: {event: a}\nsteps:\n  - wait: 15\n", source="promo.yaml")
    assert str(info.value).startswith("promo.yaml:4: steps[0].wait: ")


def run_validate(*files: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "journeys"
    return subprocess.run([str(exe), "validate", *map(str, files)], capture_output=True, text=True, timeout=60)


def test_validate_cli(tmp_path: Path) -> None:
    good = FIXTURES / "paid-or-nudge.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text("journey: bad\ntrigger: {event: a}\nsteps:\n  - wait: soon\n")
    ok = run_validate(good)
    assert ok.returncode == 0 and "paid-or-nudge" in ok.stdout
    failed = run_validate(good, bad)
    assert failed.returncode == 1
    assert f"{bad}:4: steps[0].wait: 'soon' is not a duration" in failed.stderr
    missing = run_validate(tmp_path / "nope.yaml")
    assert missing.returncode == 1 and "cannot read file" in missing.stderr


INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))


def test_there_are_at_least_forty_invalid_fixtures() -> None:
    assert len(INVALID) >= 40


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_reports_its_expected_path_and_line(path: Path) -> None:
    header = path.read_text().splitlines()[0]
    assert header.startswith("# expect: "), f"{path.name} needs an '# expect: LINE PATH | FRAGMENT' header"
    where, fragment = header.removeprefix("# expect: ").split(" | ", 1)
    line_text, yaml_path = where.split(" ", 1)
    expected_path = "" if yaml_path == "<document>" else yaml_path
    with pytest.raises(SpecError) as info:
        compile_text(path.read_text(), source=path.name)
    found = [(p.line, p.path, p.message) for p in info.value.problems]
    assert any(line == int(line_text) and p == expected_path and fragment.strip() in m for line, p, m in found), (
        f"expected line {line_text} {yaml_path!r} containing {fragment!r}; got {found}"
    )
