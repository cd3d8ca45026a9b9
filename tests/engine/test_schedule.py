"""Scheduled audience journeys on the simulated clock (trigger.schedule)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.cron import parse_cron
from engine.simulate import simulate_file

WINBACK = """
journey: winback
name: 30 天未复购召回
timezone: Asia/Shanghai
trigger: {schedule: "0 10 * * *"}
audience: days_since(customer.last_order_at) >= 30 and not has_tag("blacklist")
reentry: {cooldown: 30d}
steps:
  - id: offer
    send:
      channel: wecom.customer
      sender: "{{ customer.owner_userid }}"
      text: "{{ customer.name }}，好久不见，送您 20 元券"
"""

CUSTOMERS = """
customers:
  - {id: w1, name: 老王, external_userid: wm_w1, owner_userid: s1, last_order_at: "2026-10-01T12:00:00+08:00"}
  - {id: w2, name: 小李, external_userid: wm_w2, owner_userid: s1, last_order_at: "2026-10-27T09:00:00+08:00"}
  - {id: w3, name: 新客, external_userid: wm_w3, owner_userid: s1, last_order_at: "2026-11-20T09:00:00+08:00"}
  - {id: w4, name: 黑名单, external_userid: wm_w4, owner_userid: s1, last_order_at: "2026-09-01T09:00:00+08:00",
     tags: [blacklist]}
  - {id: w5, name: 无订单, external_userid: wm_w5, owner_userid: s1}
"""


async def run(tmp_path: Path, extra: str = "") -> dict:
    (tmp_path / "winback.yaml").write_text(textwrap.dedent(WINBACK))
    scenario = 'journey: winback.yaml\nstart: "2026-11-23T08:00:00+08:00"\n' + textwrap.dedent(CUSTOMERS)
    (tmp_path / "s.yaml").write_text(scenario + textwrap.dedent(extra) + "until: 10d\n")
    return await simulate_file(tmp_path / "s.yaml")


def mornings(result: dict) -> list[tuple[str, str, str]]:
    return [(s["customer"], s["at"], s["status"]) for s in result["sends"]]


async def test_winback_enrolls_the_right_customers_once_on_the_right_mornings(tmp_path: Path) -> None:
    result = await run(tmp_path)
    assert mornings(result) == [
        ("w1", "2026-11-23T10:00:00+08:00", "sent"),  # 53 days without an order: the first morning
        ("w2", "2026-11-26T10:00:00+08:00", "sent"),  # reaches 30 days on the 26th at 09:00
    ]
    assert sorted((e["customer"], e["status"]) for e in result["enrollments"]) == [("w1", "exited"), ("w2", "exited")]


async def test_pausing_the_journey_pauses_its_schedule(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        """
        actions:
          - {at: 2d, pause: winback}
          - {at: 4d, resume: winback}
        """,
    )
    # Runs on the 25th and 26th are skipped while paused; w2 is picked up on the 27th.
    assert mornings(result) == [
        ("w1", "2026-11-23T10:00:00+08:00", "sent"),
        ("w2", "2026-11-27T10:00:00+08:00", "sent"),
    ]


@pytest.mark.parametrize(("expression", "after", "expected"), [
    ("0 10 * * *", "2026-11-23T09:59:00+08:00", "2026-11-23T10:00:00+08:00"),
    ("0 10 * * *", "2026-11-23T10:00:00+08:00", "2026-11-24T10:00:00+08:00"),
    ("*/15 9-17 * * mon-fri", "2026-11-28T12:00:00+08:00", "2026-11-30T09:00:00+08:00"),
    ("30 8 1,15 * *", "2026-11-16T00:00:00+08:00", "2026-12-01T08:30:00+08:00"),
    ("0 9 1 * 1", "2026-11-25T00:00:00+08:00", "2026-11-30T09:00:00+08:00"),  # day OR weekday
    ("0 0 * * 7", "2026-11-23T00:00:00+08:00", "2026-11-29T00:00:00+08:00"),  # 7 is Sunday
])  # fmt: skip
def test_cron_next_fire_times(expression: str, after: str, expected: str) -> None:
    zone = ZoneInfo("Asia/Shanghai")
    assert parse_cron(expression).next_after(datetime.fromisoformat(after), zone).isoformat() == expected


def test_cron_in_the_journeys_time_zone() -> None:
    fire = parse_cron("0 9 * * *").next_after(datetime(2026, 11, 23, 12, tzinfo=UTC), ZoneInfo("Europe/London"))
    assert fire.isoformat() == "2026-11-24T09:00:00+00:00"


async def test_each_run_records_how_many_it_checked_and_enrolled(tmp_path: Path) -> None:
    from engine.runtime import Runtime
    from engine.scenario import load_scenario
    from engine.simulate import compile_scenario_journeys, simulate

    (tmp_path / "winback.yaml").write_text(textwrap.dedent(WINBACK))
    scenario_path = tmp_path / "s.yaml"
    scenario_path.write_text('journey: winback.yaml\nstart: "2026-11-23T08:00:00+08:00"\n'
                             + textwrap.dedent(CUSTOMERS) + "until: 10d\n")  # fmt: skip
    runs: list = []

    async def inspect(rt: Runtime) -> None:
        runs.extend(rt.store.schedule_runs("winback"))

    scenario = load_scenario(scenario_path)
    await simulate(scenario, compile_scenario_journeys(scenario, tmp_path), before_teardown=inspect)
    assert len(runs) == 10, "one run each morning from Nov 23 to Dec 2"
    assert all(r.checked == 5 for r in runs)
    assert [r.enrolled for r in runs] == [1, 0, 0, 1, 0, 0, 0, 0, 0, 0]
