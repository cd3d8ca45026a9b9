"""Delivery policy scenarios (journey-dsl §6a.5–7): opt-out, quiet hours, frequency caps."""

from __future__ import annotations

import textwrap
from pathlib import Path

from engine.simulate import simulate_file


async def run(tmp_path: Path, journeys: dict[str, str], scenario: str, start: str) -> dict:
    for name, text in journeys.items():
        (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(text))
    names = [f"{n}.yaml" for n in journeys]
    body = textwrap.dedent(scenario)
    (tmp_path / "s.yaml").write_text(f'journey: {names}\nstart: "{start}"\n{body}')
    return await simulate_file(tmp_path / "s.yaml")


def attempts(result: dict) -> list[tuple[str, str, str, str, str | None]]:
    return [(s["customer"], s["journey"], s["at"], s["status"], s["reason"]) for s in result["sends"]]


CUSTOMER_SEND = "{channel: wecom.customer, sender: s1, text: '%s'}"


async def test_quiet_hours_use_the_customers_time_zone(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "promo": f"""
        journey: promo
        timezone: Asia/Shanghai
        trigger: {{event: browse}}
        policy:
          quiet_hours: {{start: "21:00", end: "09:00", action: defer}}
        steps:
          - id: offer
            send: {CUSTOMER_SEND % "offer"}
          - id: staff
            send: {{channel: wecom.app, to: s1, text: follow up}}
        """
        },
        """
        customers:
          - {id: sh, external_userid: wm_sh, timezone: Asia/Shanghai}
          - {id: ldn, external_userid: wm_ldn, timezone: Europe/London}
        events:
          - {at: 0m, customer: sh, name: browse}
          - {at: 0m, customer: ldn, name: browse}
        until: 1d
        """,
        start="2026-11-23T22:00:00+08:00",
    )
    # The same UTC instant: 22:00 in Shanghai (quiet), 14:00 in London (not quiet).
    assert attempts(result) == [
        ("ldn", "promo", "2026-11-23T22:00:00+08:00", "sent", None),
        ("ldn", "promo", "2026-11-23T22:00:00+08:00", "sent", None),
        ("sh", "promo", "2026-11-23T22:00:00+08:00", "deferred", "quiet_hours"),
        ("sh", "promo", "2026-11-24T09:00:00+08:00", "sent", None),
        ("sh", "promo", "2026-11-24T09:00:00+08:00", "sent", None),
    ]
    steps = [s["step"] for s in result["sends"] if s["customer"] == "sh"]
    assert steps == ["offer", "offer", "staff"], "the staff reminder waits for the deferred send, not quiet hours"


async def test_quiet_hours_skip_and_staff_messages_are_never_held(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "skipper": f"""
        journey: skipper
        trigger: {{event: browse}}
        policy:
          quiet_hours: {{start: "21:00", end: "09:00", action: skip}}
        steps:
          - send: {CUSTOMER_SEND % "offer"}
          - send: {{channel: wecom.app, to: s1, text: staff note}}
        """
        },
        """
        customers: [{id: a, external_userid: wm_a}]
        events: [{at: 0m, customer: a, name: browse}]
        until: 1h
        """,
        start="2026-11-23T23:30:00+08:00",
    )
    assert [(s["channel"], s["status"], s["reason"]) for s in result["sends"]] == [
        ("wecom.customer", "skipped", "quiet_hours"), ("wecom.app", "sent", None),
    ]  # fmt: skip


async def test_opted_out_customers_get_no_marketing_but_transactional_still_goes(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "mkt": f"""
        journey: mkt
        trigger: {{event: paid}}
        steps:
          - send: {CUSTOMER_SEND % "promo"}
        """,
            "receipt": f"""
        journey: receipt
        category: transactional
        trigger: {{event: paid}}
        steps:
          - send: {CUSTOMER_SEND % "receipt"}
        """,
        },
        """
        customers:
          - {id: no, external_userid: wm_no, consent_marketing: false}
          - {id: unsub, external_userid: wm_unsub, tags: [unsubscribed]}
          - {id: yes, external_userid: wm_yes, consent_marketing: true}
        events:
          - {at: 0m, customer: no, name: paid}
          - {at: 0m, customer: unsub, name: paid}
          - {at: 0m, customer: yes, name: paid}
        until: 1h
        """,
        start="2026-11-23T10:00:00+08:00",
    )
    got = {(s["customer"], s["journey"]): (s["status"], s["reason"]) for s in result["sends"]}
    assert got == {
        ("no", "mkt"): ("skipped", "opted_out"), ("no", "receipt"): ("sent", None),
        ("unsub", "mkt"): ("skipped", "opted_out"), ("unsub", "receipt"): ("sent", None),
        ("yes", "mkt"): ("sent", None), ("yes", "receipt"): ("sent", None),
    }  # fmt: skip


async def test_caps_count_other_journeys_and_transactional_passes_a_full_cap(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "welcome": f"""
        journey: welcome
        trigger: {{event: signup}}
        steps:
          - send: {CUSTOMER_SEND % "welcome"}
        """,
            "promo": f"""
        journey: promo
        trigger: {{event: browse}}
        policy:
          frequency_caps: [{{max: 1, per: 1d}}]
        steps:
          - send: {CUSTOMER_SEND % "promo"}
        """,
            "receipt": f"""
        journey: receipt
        category: transactional
        trigger: {{event: paid}}
        policy:
          frequency_caps: [{{max: 1, per: 1d}}]
        steps:
          - send: {CUSTOMER_SEND % "receipt"}
        """,
        },
        """
        customers: [{id: a, external_userid: wm_a}, {id: b, external_userid: wm_b}]
        events:
          - {at: 0m, customer: a, name: signup}
          - {at: 1h, customer: a, name: browse}
          - {at: 2h, customer: a, name: paid}
          - {at: 2h, customer: b, name: paid}
          - {at: 3h, customer: b, name: browse}
          - {at: 25h, customer: a, name: browse}
        until: 2d
        """,
        start="2026-11-23T10:00:00+08:00",
    )
    got = [(s["customer"], s["journey"], s["offset_s"], s["status"], s["reason"]) for s in result["sends"]]
    assert got == [
        ("a", "welcome", 0, "sent", None),
        ("a", "promo", 3600, "skipped", "frequency_cap"),  # the welcome (another journey) used the slot
        ("a", "receipt", 7200, "sent", None),  # transactional: not capped by the full ledger
        ("b", "receipt", 7200, "sent", None),
        ("b", "promo", 10800, "sent", None),  # ...and not counted against marketing
        ("a", "promo", 90000, "sent", None),  # a day after the welcome, the slot is free again
    ]


async def test_on_capped_defer_waits_for_a_free_slot(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "drip": f"""
        journey: drip
        trigger: {{event: start}}
        policy:
          frequency_caps: [{{max: 2, per: 1d}}]
          on_capped: defer
        steps:
          - id: one
            send: {CUSTOMER_SEND % "one"}
          - id: two
            send: {CUSTOMER_SEND % "two"}
          - id: three
            send: {CUSTOMER_SEND % "three"}
        """
        },
        """
        customers: [{id: a, external_userid: wm_a}]
        events: [{at: 0m, customer: a, name: start}]
        until: 3d
        """,
        start="2026-11-23T10:00:00+08:00",
    )
    got = [(s["step"], s["offset_s"] // 60, s["status"], s["reason"]) for s in result["sends"]]
    assert got == [
        ("one", 0, "sent", None), ("two", 0, "sent", None),
        ("three", 0, "deferred", "frequency_cap"), ("three", 1440, "sent", None),
    ]  # fmt: skip


async def test_fifty_enrollments_in_five_journeys_race_for_two_slots(tmp_path: Path) -> None:
    journeys = {
        f"race-{j}": f"""
        journey: race-{j}
        trigger: {{event: flash.sale, key: event.n}}
        policy:
          frequency_caps: [{{max: 2, per: 1d}}]
        steps:
          - send: {CUSTOMER_SEND % f"offer {j}"}
        """
        for j in range(5)
    }
    events = "".join(f"  - {{at: 0m, customer: a, name: flash.sale, properties: {{n: {n}}}}}\n" for n in range(10))
    scenario = f"customers: [{{id: a, external_userid: wm_a}}]\nevents:\n{events}until: 1h\n"
    result = await run(tmp_path, journeys, scenario, start="2026-11-23T10:00:00+08:00")
    assert len(result["enrollments"]) == 50
    statuses = [(s["status"], s["reason"]) for s in result["sends"]]
    assert len(statuses) == 50
    assert statuses.count(("sent", None)) == 2
    assert statuses.count(("skipped", "frequency_cap")) == 48


async def test_staff_messages_are_neither_capped_nor_counted(tmp_path: Path) -> None:
    result = await run(
        tmp_path,
        {
            "mixed": f"""
        journey: mixed
        trigger: {{event: go}}
        policy:
          frequency_caps: [{{max: 1, per: 1d}}]
        steps:
          - send: {{channel: wecom.app, to: s1, text: staff one}}
          - send: {{channel: wecom.app, to: s1, text: staff two}}
          - send: {CUSTOMER_SEND % "customer one"}
          - send: {CUSTOMER_SEND % "customer two"}
        """
        },
        """
        customers: [{id: a, external_userid: wm_a}]
        events: [{at: 0m, customer: a, name: go}]
        until: 1h
        """,
        start="2026-11-23T10:00:00+08:00",
    )
    assert [(s["text"], s["status"], s["reason"]) for s in result["sends"]] == [
        ("staff one", "sent", None), ("staff two", "sent", None),
        ("customer one", "sent", None), (None, "skipped", "frequency_cap"),
    ]  # fmt: skip
