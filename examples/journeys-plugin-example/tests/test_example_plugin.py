"""The example plugin's activities in journeys, against the local gateway over HTTP."""

from __future__ import annotations

from pathlib import Path

from journeys_plugin_example.gateway import Gateway

from engine.registry import load_activities
from engine.testing import run_journeys, stand_in

HERE = Path(__file__).resolve().parents[1]
JOURNEY = HERE / "journeys" / "new-lead.yaml"

SCENARIO = """
customers:
  - {id: lilei, name: Li Lei, owner_userid: zhangsan}
  - {id: hanmeimei, name: Han Meimei, owner_userid: zhangsan}
  - {id: wanglei, name: Wang Lei, owner_userid: lisi}
events:
  - {at: 0m, customer: lilei, name: form.submitted, properties: {phone: "13800000001", form: fair}}
  - {at: 5m, customer: hanmeimei, name: form.submitted, properties: {phone: "138000", form: fair}}
  - {at: 10m, customer: wanglei, name: form.submitted, properties: {phone: "13900000009", form: fair}}
until: 2d
"""


def test_the_entry_point_registers_both_activities() -> None:
    registry = load_activities()
    for name in ("crm.create_lead", "sms.send"):
        definition = registry.get(name)
        assert definition is not None, f"{name} missing: is the plugin installed (pip install -e)?"
        assert definition.origin.startswith("plugin journeys-plugin-example"), definition.origin
    assert registry.get("crm.create_lead").timeout.total_seconds() == 10  # type: ignore[union-attr]


async def test_journey_creates_the_lead_and_texts_once_each(gateway: Gateway) -> None:
    # Wang Lei already has a lead under another key: the CRM refuses (409), a permanent error.
    gateway.effect("/crm/leads", "elsewhere", {"phone": "13900000009", "name": "Wang Lei"})
    gateway.fail_next = 1  # the CRM's next answer is a 503: Temporal retries the same call
    result = await run_journeys([JOURNEY], SCENARIO)

    state = gateway.snapshot()
    [lilei_lead] = [lead for lead in state["leads"] if lead.get("customer_id") == "lilei"]
    assert lilei_lead["phone"] == "13800000001" and lilei_lead["source"] == "fair" and lilei_lead["score"] == 40
    lead_calls = [key for path, key in state["requests"] if path == "/crm/leads" and key != "elsewhere"]
    lilei_key = lilei_lead["idempotency_key"]
    assert lilei_key.endswith(":lead:1")
    assert lead_calls.count(lilei_key) == 2, "503 then the retry, with the same key"
    assert [m["text"] for m in state["messages"]] == [f"Li Lei, thank you! Your reference is {lilei_lead['lead_id']}."]

    assert [(s["customer"], s["text"]) for s in result["sends"]] == [
        ("lilei", f"Lead {lilei_lead['lead_id']} (Li Lei) came in yesterday: please call them.")
    ]
    status = {e["customer"]: e["status"] for e in result["enrollments"]}
    assert status == {"lilei": "exited", "hanmeimei": "needs_attention", "wanglei": "needs_attention"}
    reasons = {a["customer"]: a["reason"] for a in result["attention"]}
    # A templated value that renders to a bad phone number never reaches the CRM.
    assert "InvalidActivityInput" in reasons["hanmeimei"] and "with.phone" in reasons["hanmeimei"]
    assert "'138000'" in reasons["hanmeimei"]
    assert not any(lead.get("customer_id") == "hanmeimei" for lead in state["leads"])
    # The 409 is not retried: one request, and the CRM's words in the reason.
    conflict = "rejected: /crm/leads answered 409: a lead with phone 13900000009 already exists"
    assert reasons["wanglei"] == f"step lead failed: {conflict}"
    assert len([k for p, k in state["requests"] if p == "/crm/leads" and k.endswith(":lead:1")]) == 3


async def test_stand_ins_replace_the_plugin_by_name(gateway: Gateway) -> None:
    crm = stand_in("crm.create_lead", result={"lead_id": "L-STUB", "created": True})
    sms = stand_in("sms.send", result={"message_id": "M-STUB"})
    scenario = """
    customers: [{id: lilei, name: Li Lei, owner_userid: zhangsan}]
    events: [{at: 0m, customer: lilei, name: form.submitted, properties: {phone: "13800000001", form: fair}}]
    until: 2d
    """
    result = await run_journeys([JOURNEY], scenario, stand_ins=[crm, sms])
    assert gateway.snapshot()["requests"] == [], "the real activities were not called"
    [call] = crm.calls
    assert call.input == {"name": "Li Lei", "phone": "13800000001", "source": "fair", "score": 40}
    assert call.idempotency_key.endswith(":lead:1") and call.step_id == "lead" and call.attempt == 1
    assert [c.input["text"] for c in sms.calls] == ["Li Lei, thank you! Your reference is L-STUB."]
    assert result["sends"][0]["text"] == "Lead L-STUB (Li Lei) came in yesterday: please call them."
