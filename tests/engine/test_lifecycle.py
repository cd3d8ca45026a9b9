"""Pause, resume and archive on the simulated clock (journey-dsl §6a.4, scenario actions)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.errors import SpecError
from engine.simulate import simulate_file

DRIP = """
journey: drip
trigger: {event: signup}
steps:
  - id: a
    send: {channel: wecom.app, to: ops, text: A}
  - id: w1
    wait: 1h
  - id: b
    send: {channel: wecom.app, to: ops, text: B}
  - id: w2
    wait: 1h
  - id: c
    send: {channel: wecom.app, to: ops, text: C}
"""


async def run(tmp_path: Path, scenario: str, journey: str = DRIP) -> dict:
    (tmp_path / "drip.yaml").write_text(textwrap.dedent(journey))
    (tmp_path / "s.yaml").write_text(
        'journey: drip.yaml\nstart: "2026-11-23T10:00:00+08:00"\n' + textwrap.dedent(scenario)
    )
    return await simulate_file(tmp_path / "s.yaml")


def timeline(result: dict, customer: str = "c1") -> list[tuple[str, int, str, str | None]]:
    return [
        (s["step"], s["offset_s"] // 60, s["status"], s["reason"]) for s in result["sends"] if s["customer"] == customer
    ]


async def test_skip_stale_skips_the_held_send_and_later_steps_follow_the_resume(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        """
        events: [{at: 0m, customer: c1, name: signup}]
        actions:
          - {at: 30m, pause: drip, on_resume: skip_stale, stale_after: 2h}
          - {at: 5h, resume: drip}
        until: 1d
        """,
    )
    # B was due at 1h, held, and is 4h late at resume (> 2h): skipped as stale.
    # The next wait starts after the resume, so C goes at 6h, not at its original 2h.
    assert timeline(result) == [("a", 0, "sent", None), ("b", 300, "skipped", "stale"), ("c", 360, "sent", None)]
    [enr] = result["enrollments"]
    assert enr["status"] == "exited" and enr["path"] == ["a", "w1", "b", "w2", "c"]


async def test_send_late_runs_held_actions_at_resume(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        """
        events: [{at: 0m, customer: c1, name: signup}]
        actions:
          - {at: 30m, pause: drip, on_resume: send_late}
          - {at: 5h, resume: drip}
        until: 1d
        """,
    )
    assert timeline(result) == [("a", 0, "sent", None), ("b", 300, "sent", None), ("c", 360, "sent", None)]


async def test_a_fresh_stale_window_lets_recent_actions_through(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        """
        events: [{at: 0m, customer: c1, name: signup}]
        actions:
          - {at: 30m, pause: drip, on_resume: skip_stale, stale_after: 6h}
          - {at: 5h, resume: drip}
        until: 1d
        """,
    )
    assert timeline(result)[1] == ("b", 300, "sent", None), "4h late is within a 6h stale_after"


async def test_trigger_events_during_a_pause_are_never_admitted(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        """
        events:
          - {at: 1h, customer: during, name: signup}
          - {at: 3h, customer: after, name: signup}
        actions:
          - {at: 30m, pause: drip}
          - {at: 2h, resume: drip}
        until: 1d
        """,
    )
    assert [e["customer"] for e in result["enrollments"]] == ["after"]
    assert {s["customer"] for s in result["sends"]} == {"after"}


async def test_held_enrollments_report_paused_at_the_end_of_the_clock(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        """
        events: [{at: 0m, customer: c1, name: signup}]
        actions: [{at: 30m, pause: drip}]
        until: 1d
        """,
    )
    [enr] = result["enrollments"]
    assert (enr["status"], enr["path"]) == ("paused", ["a", "w1", "b"])
    assert timeline(result) == [("a", 0, "sent", None)]


async def test_archive_exits_everyone_and_admits_no_one(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        """
        events:
          - {at: 0m, customer: c1, name: signup}
          - {at: 10m, customer: c2, name: signup}
          - {at: 2h, customer: c3, name: signup}
        actions:
          - {at: 1h30m, archive: drip}
        until: 1d
        """,
    )
    by = {e["customer"]: e for e in result["enrollments"]}
    assert set(by) == {"c1", "c2"}
    assert all((e["status"], e["exit_reason"]) == ("exited", "operator") for e in by.values())
    assert [s[0] for s in timeline(result, "c1")] == ["a", "b"]


async def test_exit_one_customer_and_reactivate(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        """
        events:
          - {at: 0m, customer: c1, name: signup}
          - {at: 0m, customer: c2, name: signup}
        actions:
          - {at: 30m, exit: drip, customer: c1}
          - {at: 40m, pause: drip}
          - {at: 50m, activate: drip}
        until: 1d
        """,
    )
    by = {e["customer"]: e for e in result["enrollments"]}
    assert (by["c1"]["exit_reason"], by["c1"]["path"]) == ("operator", ["a", "w1"])
    assert by["c2"]["exit_reason"] == "completed", "activating a paused journey resumes it"
    assert [s[0] for s in timeline(result, "c2")] == ["a", "b", "c"]


async def test_actions_must_name_a_journey_of_the_scenario(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="actions name journeys the scenario does not run: nope"):
        await run(tmp_path, "actions: [{at: 1h, pause: nope}]\nuntil: 1d\n")
    with pytest.raises(SpecError, match="exactly one of"):
        await run(tmp_path, "actions: [{at: 1h, pause: drip, resume: drip}]\nuntil: 1d\n")


async def test_activities_hold_while_paused_too(tmp_path: Path) -> None:
    journey = """
    journey: drip
    trigger: {event: signup}
    steps:
      - wait: 1h
      - id: points
        activity: profile.increment
        with: {attribute: points, by: 5}
      - send: {channel: wecom.app, to: ops, text: "points {{ steps.points.result.value }}"}
    """
    result = await run(
        tmp_path,
        """
        events: [{at: 0m, customer: c1, name: signup}]
        actions:
          - {at: 30m, pause: drip}
          - {at: 3h, resume: drip}
        until: 1d
        """,
        journey=journey,
    )
    assert [(s["text"], s["offset_s"] // 60) for s in result["sends"]] == [("points 5", 180)]
