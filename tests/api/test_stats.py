"""Journey stats: exact counters that agree with the message log and the enrollments."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from engine.counters import send_label
from engine.models import CounterRow
from engine.stats import MIN_PER_ARM, build_stats, two_proportion_p_value, wilson_interval
from tests.conftest import Stack
from tests.helpers import eventually

YAML = {"Content-Type": "application/yaml"}


def journey_yaml(jid: str) -> str:
    # Quiet hours cover "now" in UTC and not in UTC+12, so the zone decides who is skipped.
    now = datetime.now(UTC)
    start, end = (now - timedelta(hours=2)).strftime("%H:%M"), (now + timedelta(hours=2)).strftime("%H:%M")
    return f"""
journey: {jid}
trigger: {{event: {jid}.go}}
goal: {{event: {jid}.paid, within: 1h, exit: false}}
policy:
  quiet_hours: {{start: "{start}", end: "{end}", action: skip}}
steps:
  - id: ab
    split:
      - arm: a
        weight: 1
        steps:
          - id: offer_a
            send: {{channel: wecom.customer, sender: s1, text: "A {{{{ customer.id }}}}"}}
      - arm: b
        weight: 1
        steps:
          - id: offer_b
            send: {{channel: wecom.customer, sender: s1, text: "B {{{{ customer.id }}}}"}}
  - id: pause
    wait: 12s
  - id: nudge
    send: {{channel: wecom.app, to: s1, text: "follow up {{{{ customer.id }}}}"}}
"""


async def test_stats_after_a_scripted_run_equal_the_message_log_and_enrollments(stack: Stack) -> None:
    jid = f"stats-{uuid.uuid4().hex[:6]}"
    customers = {
        **{f"{jid}-far{i}": {"external_userid": f"wm_{jid}_far{i}", "timezone": "Etc/GMT-12"} for i in range(10)},
        **{f"{jid}-utc{i}": {"external_userid": f"wm_{jid}_utc{i}", "timezone": "UTC"} for i in range(5)},
        **{
            f"{jid}-out{i}": {
                "external_userid": f"wm_{jid}_out{i}",
                "timezone": "Etc/GMT-12",
                "consent_marketing": False,
            }
            for i in range(3)
        },
    }
    async with stack.client() as api:
        assert (await api.post("/v1/journeys", content=journey_yaml(jid), headers=YAML)).status_code == 201
        assert (await api.post(f"/v1/journeys/{jid}/activate", json={})).status_code == 200
        for cid, profile in customers.items():
            assert (await api.put(f"/v1/customers/{cid}", json=profile)).status_code == 200
        events = [{"event_id": f"{cid}-go", "customer_id": cid, "name": f"{jid}.go"} for cid in customers]
        assert (await api.post("/v1/events", json={"events": events})).status_code == 202

        async def enrollments() -> list[dict]:
            return (await api.get(f"/v1/journeys/{jid}/enrollments")).json()

        # Some customers pay after they were assigned an arm, during the wait that follows.
        await eventually(enrollments, until=lambda rows: len(rows) == len(customers))
        await eventually(lambda: _messages(api, jid), until=lambda ms: len(ms) == len(customers))
        payers = [cid for cid in customers if cid.endswith(("0", "1", "2"))]
        # Sent while each payer waits (generous, for loaded machines): conversions after the arm.
        waiting = await enrollments()
        assert all(r["status"] == "running" for r in waiting if r["customer_id"] in payers)
        paid = [{"event_id": f"{cid}-paid", "customer_id": cid, "name": f"{jid}.paid"} for cid in payers]
        assert (await api.post("/v1/events", json={"events": paid})).status_code == 202
        rows = await eventually(enrollments, until=lambda rows: all(r["status"] == "exited" for r in rows), timeout=60)
        messages = await eventually(
            lambda: _messages(api, jid),
            until=lambda ms: (
                len(ms) == 2 * len(customers)
                and not any(m["status"] in ("sending", "pending_confirmation") for m in ms)
            ),
            timeout=60,
        )
        stats = (await api.get(f"/v1/journeys/{jid}/stats")).json()

    # Sends: per step, status and reason, exactly as the message log has them.
    from_log = Counter((m["step_id"], m["status"]) for m in messages)
    from_stats = Counter({(st["step"], status): n for st in stats["steps"] for status, n in st["sends"].items()})
    assert from_stats == from_log
    reasons_in_log = (send_label(m["status"], m["reason"]).split("|") for m in messages)
    assert Counter(stats["reasons"]) == Counter(f"{status}:{reason}" for status, reason in reasons_in_log if reason)
    assert stats["reasons"] == {"skipped:quiet_hours": 5, "skipped:opted_out": 3}
    assert stats["sends"]["sent"] == 10 + 18  # far customers' offers, and every staff nudge

    # Funnel: steps entered and completed, from the paths the enrollments recorded.
    visits = Counter(step for r in rows for step in r["path"])
    funnel = {s["step"]: (s["entered"], s["completed"]) for s in stats["steps"]}
    for step, n in visits.items():
        assert funnel[step] == (n, n), step
    assert funnel["ab"] == (18, 18) and funnel["nudge"] == (18, 18)

    # Arms and conversions, from the enrollments' arm and converted_at.
    (split,) = stats["splits"]
    arms = {a["arm"]: a for a in split["arms"]}
    assert {k: v["enrolled"] for k, v in arms.items()} == dict(Counter(r["arm"] for r in rows))
    converted = Counter(r["arm"] for r in rows if r["converted_at"])
    assert {k: v["converted"] for k, v in arms.items()} == {k: converted.get(k, 0) for k in arms}
    assert stats["enrollments"]["converted"] == len(payers) == sum(converted.values())
    assert stats["enrollments"]["entered"] == 18 and stats["enrollments"]["exited"] == {"completed": 18}
    assert split["ready"] is False and all(a["significant"] is None for a in split["arms"])
    for arm in split["arms"]:
        lo, hi = arm["ci95"]
        assert lo <= arm["rate"] <= hi


async def _messages(api, jid: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return (await api.get("/v1/messages", params={"journey": jid, "limit": 1000})).json()


async def test_stats_of_unknown_journey_or_version_is_404(stack: Stack) -> None:
    async with stack.client() as api:
        assert (await api.get("/v1/journeys/nope-nope/stats")).status_code == 404
        jid = f"stats-{uuid.uuid4().hex[:6]}"
        await api.post("/v1/journeys", content=f"journey: {jid}\ntrigger: {{event: x}}\nsteps:\n  - wait: 1h\n",
                       headers=YAML)  # fmt: skip
        assert (await api.get(f"/v1/journeys/{jid}/stats", params={"version": 7})).status_code == 404
        empty = (await api.get(f"/v1/journeys/{jid}/stats")).json()
        assert empty["enrollments"]["entered"] == 0 and empty["steps"][0]["entered"] == 0


def test_wilson_interval_and_significance_known_values() -> None:
    lo, hi = wilson_interval(10, 100)
    assert abs(lo - 0.0552) < 1e-3 and abs(hi - 0.1744) < 1e-3
    assert wilson_interval(0, 0) is None
    assert wilson_interval(6, 5) == wilson_interval(5, 5), "a conversion counted before its arm is no 500"
    assert two_proportion_p_value(6, 5, 5, 5) == 1.0
    assert wilson_interval(0, 50)[0] < 1e-12
    # 12% vs 20% on 400 each: z ≈ 3.04, p ≈ 0.0024
    assert abs(two_proportion_p_value(48, 400, 80, 400) - 0.0024) < 5e-4


def test_significance_is_shown_only_once_every_arm_has_enough() -> None:
    def rows(n_a: int, x_a: int, n_b: int, x_b: int) -> list[CounterRow]:
        return [
            CounterRow(journey_id="j", version=1, metric="arm.enrolled", step="ab", label="a", value=n_a),
            CounterRow(journey_id="j", version=1, metric="arm.converted", step="ab", label="a", value=x_a),
            CounterRow(journey_id="j", version=1, metric="arm.enrolled", step="ab", label="b", value=n_b),
            CounterRow(journey_id="j", version=1, metric="arm.converted", step="ab", label="b", value=x_b),
        ]

    early = build_stats("j", [], rows(MIN_PER_ARM, 20, MIN_PER_ARM - 1, 60), [1]).splits[0]
    assert not early.ready and early.arms[1].significant is None and early.arms[1].p_value is None
    ready = build_stats("j", [], rows(400, 48, 400, 80), [1]).splits[0]
    assert ready.ready and ready.arms[1].significant is True and ready.arms[0].significant is None
    same = build_stats("j", [], rows(400, 48, 400, 50), [1]).splits[0]
    assert same.arms[1].significant is False
