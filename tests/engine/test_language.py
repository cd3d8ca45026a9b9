"""Scenario tests for the language's semantics (journey-dsl §3, §4 and §6a).

Each test runs real journeys through ``journeys simulate`` (time-skipping server, the
production workflow and activities, fake WeCom) and checks the §7 JSON.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.simulate import simulate_file
from workflows.journey import split_arm

START = "2026-11-23T10:00:00+08:00"  # a Monday


async def run(tmp_path: Path, journeys: dict[str, str], scenario: str) -> dict:
    names = []
    for name, text in journeys.items():
        (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(text))
        names.append(f"{name}.yaml")
    body = textwrap.dedent(scenario)
    (tmp_path / "scenario.yaml").write_text(
        f'journey: {names if len(names) > 1 else names[0]}\nstart: "{START}"\n{body}'
    )
    return await simulate_file(tmp_path / "scenario.yaml")


def enrollments(result: dict, customer: str | None = None, journey: str | None = None) -> list[dict]:
    return [
        e
        for e in result["enrollments"]
        if (customer is None or e["customer"] == customer) and (journey is None or e["journey"] == journey)
    ]


def sends(result: dict, customer: str | None = None) -> list[tuple[str, int, str]]:
    return [
        (s["step"], s["offset_s"], s["status"])
        for s in result["sends"]
        if customer is None or s["customer"] == customer
    ]


STAFF = "{channel: wecom.app, to: ops, text: '%s'}"


async def test_goal_beats_a_matching_wait_for(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "goal-a": f"""
        journey: goal-a
        trigger: {{event: cart.added}}
        goal: {{event: order.paid, within: 1d}}
        steps:
          - id: w
            wait_for: {{event: order.paid, timeout: 1h}}
            on_event: thanks
            on_timeout: exit
          - id: thanks
            send: {STAFF % "thanks"}
        """
        },
        """
        events:
          - {at: 0m, customer: a, name: cart.added}
          - {at: 10m, customer: a, name: order.paid}
        until: 2h
        """,
    )
    [enr] = enrollments(result)
    assert (enr["status"], enr["exit_reason"], enr["converted"]) == ("exited", "goal", True)
    assert enr["path"] == ["w"]
    assert sends(result) == [], "the wait_for's on_event step must not run when the goal ended the enrollment"


async def test_goal_without_exit_converts_and_continues(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "goal-b": f"""
        journey: goal-b
        trigger: {{event: signup}}
        goal: {{event: order.paid, within: 1h, exit: false}}
        steps:
          - wait: 2h
          - id: after
            send: {STAFF % "still here"}
        """
        },
        """
        events:
          - {at: 0m, customer: a, name: signup}
          - {at: 30m, customer: a, name: order.paid}
          - {at: 0m, customer: b, name: signup}
          - {at: 90m, customer: b, name: order.paid}
        until: 3h
        """,
    )
    by = {e["customer"]: e for e in enrollments(result)}
    assert by["a"]["converted"] is True and by["a"]["exit_reason"] == "completed"
    assert by["b"]["converted"] is False, "a conversion after the goal window does not count"
    assert sends(result, "a") == [("after", 7200, "sent")]


async def test_exit_when_ends_waits_at_once(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "exits": f"""
        journey: exits
        trigger: {{event: cart.added}}
        exit_when:
          - {{event: cart.cleared, when: event.cart_id == trigger.cart_id}}
        steps:
          - wait: 1d
          - send: {STAFF % "late"}
        """
        },
        """
        events:
          - {at: 0m, customer: a, name: cart.added, properties: {cart_id: K1}}
          - {at: 1h, customer: a, name: cart.cleared, properties: {cart_id: OTHER}}
          - {at: 2h, customer: a, name: cart.cleared, properties: {cart_id: K1}}
        until: 2d
        """,
    )
    [enr] = enrollments(result)
    assert (enr["exit_reason"], enr["path"]) == ("exit_when", ["steps[0]"])
    assert sends(result) == []


async def test_waits_ignore_events_from_before_they_began(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "waits": f"""
        journey: waits
        trigger: {{event: signup}}
        steps:
          - send: {STAFF % "first"}
          - wait: 10m
          - id: w
            wait_for: {{event: clicked, timeout: 1h}}
            on_event: exit
          - send: {STAFF % "no click"}
        """
        },
        """
        events:
          - {at: 0m, customer: a, name: signup}
          - {at: 5m, customer: a, name: clicked}
        until: 3h
        """,
    )
    [enr] = enrollments(result)
    assert enr["exit_reason"] == "completed"
    assert [s[0] for s in sends(result)] == ["steps[0]", "steps[3]"]


async def test_reentry_modes(tmp_path: Path) -> None:
    journey = """
        journey: {jid}
        trigger: {{event: visit}}
        reentry: {reentry}
        steps:
          - wait: 1h
        """
    scenario = """
        events:
          - {at: 0m, customer: a, name: visit}
          - {at: 30m, customer: a, name: visit}
          - {at: 2h, customer: a, name: visit}
          - {at: 4h10m, customer: a, name: visit}
          - {at: 9h, customer: a, name: visit}
        until: 12h
        """
    result = await run(tmp_path, {
        "once": journey.format(jid="once", reentry="once"),
        "again": journey.format(jid="again", reentry="after_exit"),
        "cool": journey.format(jid="cool", reentry="{cooldown: 4h}"),
    }, scenario)  # fmt: skip
    assert len(enrollments(result, journey="once")) == 1
    # after_exit: not while running (30m is refused), then again at 2h, 4h10m and 9h.
    assert len(enrollments(result, journey="again")) == 4
    # cooldown counts from the previous *entry*: 0h, then 4h10m (not 2h), then 9h.
    assert len(enrollments(result, journey="cool")) == 3


async def test_cooldown_counts_from_entry_not_exit(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "cool-entry": """
        journey: cool-entry
        trigger: {event: visit}
        reentry: {cooldown: 3h}
        steps:
          - wait: 2h
        """
        },
        """
        events:
          - {at: 0m, customer: a, name: visit}
          - {at: 3h, customer: a, name: visit}
          - {at: 5h30m, customer: a, name: visit}
        until: 12h
        """,
    )
    # Exited at 2h; a cooldown counted from exit would refuse the 3h visit (1h after exit).
    assert len(enrollments(result)) == 2


async def test_audience_is_checked_on_the_fresh_profile(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "vip": f"""
        journey: vip
        trigger: {{event: visit}}
        audience: has_tag("vip") and customer.consent_marketing
        steps:
          - send: {STAFF % "hello vip"}
        """
        },
        """
        customers:
          - {id: a, tags: [vip], consent_marketing: true}
          - {id: b, tags: [vip], consent_marketing: false}
          - {id: c, tags: []}
        events:
          - {at: 0m, customer: a, name: visit}
          - {at: 0m, customer: b, name: visit}
          - {at: 0m, customer: c, name: visit}
        until: 1h
        """,
    )
    assert [e["customer"] for e in enrollments(result)] == ["a"]


async def test_count_events_includes_the_current_event(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "third": f"""
        journey: third
        trigger: {{event: page.view, when: 'count_events("page.view", within="1h") == 3'}}
        reentry: once
        steps:
          - send: {STAFF % "third view"}
        """
        },
        """
        events:
          - {at: 0m, customer: a, name: page.view}
          - {at: 10m, customer: a, name: page.view}
          - {at: 20m, customer: a, name: page.view}
          - {at: 0m, customer: b, name: page.view}
          - {at: 70m, customer: b, name: page.view}
          - {at: 80m, customer: b, name: page.view}
        until: 2h
        """,
    )
    assert [(e["customer"]) for e in enrollments(result)] == ["a"]
    assert sends(result) == [("steps[0]", 1200, "sent")]


async def test_split_is_sticky_for_a_customers_two_enrollments(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "ab": f"""
        journey: ab
        trigger: {{event: visit}}
        steps:
          - id: test
            split:
              - {{arm: a, weight: 50, steps: [{{id: send_a, send: {STAFF % "A"}}}]}}
              - {{arm: b, weight: 50, steps: []}}
          - id: done
            wait: 1m
        """
        },
        "customers: []\nevents:\n"
        + "".join(f"  - {{at: {t}m, customer: c{i}, name: visit}}\n" for i in range(8) for t in (0, 30))
        + "until: 2h\n",
    )
    by_customer: dict[str, set[str]] = {}
    for enr in enrollments(result):
        by_customer.setdefault(enr["customer"], set()).add(enr["arm"])
    assert len(enrollments(result)) == 16
    assert all(len(arms) == 1 for arms in by_customer.values()), by_customer
    for customer, (arm,) in by_customer.items():
        assert arm == split_arm("ab", customer, [("a", 50), ("b", 50)])
        expected = ["test", "send_a", "done"] if arm == "a" else ["test", "done"]
        assert all(e["path"] == expected for e in enrollments(result, customer))
    assert {arm for (arm,) in by_customer.values()} == {"a", "b"}


def test_split_weights_are_honoured() -> None:
    arms = [("a", 90), ("b", 10)]
    counts = {"a": 0, "b": 0}
    for i in range(5000):
        counts[split_arm("promo", f"c{i}", arms)] += 1
    assert 0.87 < counts["a"] / 5000 < 0.93


async def test_branch_update_tag_and_profile_freshness(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "score": """
        journey: score
        trigger: {event: chat}
        steps:
          - id: bump
            update: {lead_score: (customer.lead_score or 0) + 20, stage: "'decision'"}
          - id: route
            branch:
              - when: customer.lead_score >= 60
                steps:
                  - id: hot
                    send: {channel: wecom.app, text: "hot {{ customer.lead_score }} {{ steps.bump.values.stage }}"}
                  - tag: {add: [hot], remove: [cold]}
              - when: customer.lead_score >= 30
                steps:
                  - send: {channel: wecom.app, text: "warm {{ customer.lead_score }}"}
              - else:
                  - exit: {reason: too cold}
          - id: after
            send: {channel: wecom.app, text: "tags {{ customer.tags | join(',') }}"}
        """
        },
        """
        customers:
          - {id: a, owner_userid: s1, lead_score: 50, tags: [cold]}
          - {id: b, owner_userid: s1, lead_score: 15, tags: []}
          - {id: c, owner_userid: s1}
        events:
          - {at: 0m, customer: a, name: chat}
          - {at: 0m, customer: b, name: chat}
          - {at: 0m, customer: c, name: chat}
        until: 1h
        """,
    )
    texts = {
        s["customer"]: [x["text"] for x in result["sends"] if x["customer"] == s["customer"]] for s in result["sends"]
    }
    assert texts["a"] == ["hot 70 decision", "tags hot"]
    assert texts["b"] == ["warm 35", "tags "]
    assert "c" not in texts
    by = {e["customer"]: e for e in enrollments(result)}
    assert by["a"]["path"] == ["bump", "route", "hot", "route.branch[0].steps[1]", "after"]
    assert by["b"]["path"] == ["bump", "route", "route.branch[1].steps[0]", "after"]
    assert (by["c"]["exit_reason"], by["c"]["path"]) == ("exit_step", ["bump", "route", "route.branch[2].steps[0]"])


async def test_wait_until_uses_the_customers_time_zone_and_weekdays(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "morning": f"""
        journey: morning
        timezone: Asia/Shanghai
        trigger: {{event: signup}}
        steps:
          - wait_until: {{time: "09:00"}}
          - send: {STAFF % "morning"}
          - wait_until: {{time: "09:00", days: [sat]}}
          - send: {STAFF % "saturday"}
        """
        },
        """
        customers:
          - {id: sh}
          - {id: ldn, timezone: Europe/London}
        events:
          - {at: 0m, customer: sh, name: signup}
          - {at: 0m, customer: ldn, name: signup}
        until: 7d
        """,
    )
    at = {(s["customer"], s["text"]): s["at"] for s in result["sends"]}
    # Monday 10:00 in Shanghai: 09:00 already passed, so Tuesday 09:00 (strictly after now).
    assert at[("sh", "morning")] == "2026-11-24T09:00:00+08:00"
    assert at[("sh", "saturday")] == "2026-11-28T09:00:00+08:00"
    # Monday 10:00 +08:00 is 02:00 in London: 09:00 London the same day = 17:00 +08:00.
    assert at[("ldn", "morning")] == "2026-11-23T17:00:00+08:00"
    assert at[("ldn", "saturday")] == "2026-11-28T17:00:00+08:00"


async def test_goto_loop_with_a_wait_and_continue_as_new(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "loop": f"""
        journey: loop
        trigger: {{event: start}}
        exit_when: [{{event: stop}}]
        steps:
          - id: tick
            send: {STAFF % "tick"}
          - id: pause
            wait: 1d
          - id: again
            goto: tick
        """
        },
        """
        events:
          - {at: 0m, customer: a, name: start}
          - {at: 9d12h, customer: a, name: stop}
        until: 12d
        """,
    )
    [enr] = enrollments(result)
    assert enr["exit_reason"] == "exit_when"
    assert len(sends(result)) == 10
    assert enr["path"][:4] == ["tick", "pause", "again", "tick"] and len(enr["path"]) == 29


async def test_failed_send_parks_and_on_error_routes(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "err": """
        journey: err
        trigger: {event: go}
        steps:
          - id: needs_name
            send: {channel: wecom.app, to: ops, text: "hi {{ customer.name }}"}
            on_error: fallback
          - id: never
            exit: {}
          - id: fallback
            send: {channel: wecom.app, to: ops, text: "fallback"}
          - id: parks
            send: {channel: wecom.app, to: ops, text: "hi {{ customer.name }}"}
        """
        },
        """
        events:
          - {at: 0m, customer: nameless, name: go}
        until: 1h
        """,
    )
    [enr] = enrollments(result)
    assert enr["status"] == "needs_attention"
    assert enr["path"] == ["needs_name", "fallback", "parks"]
    assert [(s["step"], s["status"], s["reason"]) for s in result["sends"]] == [
        ("needs_name", "failed", "template_error"), ("fallback", "sent", None), ("parks", "failed", "template_error"),
    ]  # fmt: skip


async def test_activity_results_feed_later_steps(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "act": """
        journey: act
        trigger: {event: purchase}
        steps:
          - id: points
            activity: profile.increment
            with: {attribute: points, by: "{{ trigger.amount }}"}
          - id: announce
            send: {channel: wecom.app, to: ops, text: "points now {{ steps.points.result.value }}"}
          - activity: journeys.emit_event
            with: {name: points.updated, properties: {total: "{{ customer.points }}"}}
        """,
            "chain": """
        journey: chain
        trigger: {event: points.updated, when: event.total == "150"}
        steps:
          - send: {channel: wecom.app, to: ops, text: "chained {{ trigger.total }}"}
        """,
        },
        """
        customers:
          - {id: a, points: 100}
        events:
          - {at: 0m, customer: a, name: purchase, properties: {amount: 50}}
        until: 1h
        """,
    )
    assert [s["text"] for s in result["sends"]] == ["points now 150", "chained 150"]


@pytest.mark.parametrize("bad_input", ["{attribute: points, by: lots}", "{attribute: 'no spaces'}"])
async def test_activity_input_is_checked_at_compile_time(tmp_path: Path, bad_input: str) -> None:
    from engine.compiler import compile_text
    from engine.errors import SpecError

    with pytest.raises(SpecError) as info:
        compile_text(
            f"journey: a1\ntrigger: {{event: x}}\nsteps:\n  - activity: profile.increment\n    with: {bad_input}\n"
        )
    assert info.value.problems[0].path.startswith("steps[0].with.")
    assert info.value.problems[0].line == 5


async def test_engine_events_chain_journeys(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "first": """
        journey: first
        trigger: {event: signup}
        goal: {event: order.paid}
        steps:
          - id: hello
            send: {channel: wecom.app, to: ops, text: hello}
          - wait: 1h
        """,
            "after-first": """
        journey: after-first
        trigger: {event: journey.exited, when: event.journey == "first" and event.exit_reason == "completed"}
        steps:
          - send: {channel: wecom.app, to: ops, text: "first done"}
        """,
            "on-sent": """
        journey: on-sent
        trigger: {event: message.sent, when: event.step == "hello"}
        steps:
          - send: {channel: wecom.app, to: ops, text: "saw hello"}
        """,
            "converted": """
        journey: converted
        trigger: {event: journey.converted}
        steps:
          - send: {channel: wecom.app, to: ops, text: "converted {{ trigger.journey }}"}
        """,
            "on-entered": """
        journey: on-entered
        trigger: {event: journey.entered, when: event.journey == "first"}
        steps:
          - send: {channel: wecom.app, to: ops, text: "entered {{ trigger.journey }}"}
        """,
        },
        """
        events:
          - {at: 0m, customer: a, name: signup}
          - {at: 0m, customer: b, name: signup}
          - {at: 30m, customer: b, name: order.paid}
        until: 2h
        """,
    )
    texts = sorted((s["customer"], s["text"]) for s in result["sends"])
    assert texts == [
        ("a", "entered first"), ("a", "first done"), ("a", "hello"), ("a", "saw hello"),
        ("b", "converted first"), ("b", "entered first"), ("b", "hello"), ("b", "saw hello"),
    ]  # fmt: skip
