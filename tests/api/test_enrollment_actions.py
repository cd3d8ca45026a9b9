"""Operator actions on one enrollment over HTTP: retry, skip, exit; illegal ones are 409."""

from __future__ import annotations

import uuid

from tests.conftest import Stack
from tests.e2e.test_walking_skeleton import deploy
from tests.helpers import eventually


async def test_parked_enrollment_is_retried_after_the_cause_is_fixed(stack: Stack) -> None:
    jid = f"parks-{uuid.uuid4().hex[:6]}"
    cid = f"c-{uuid.uuid4().hex[:6]}"
    async with stack.client() as api:
        await deploy(
            api,
            f"""
journey: {jid}
trigger: {{event: go}}
steps:
  - send: {{channel: wecom.app, to: ops, text: "hi {{{{ customer.name }}}}"}}
  - wait: 1h
""",
        )
        await api.post("/v1/events", json={"customer_id": cid, "name": "go"})

        async def parked() -> list:
            return (await api.get(f"/v1/journeys/{jid}/enrollments", params={"status": "needs_attention"})).json()

        [enrollment] = await eventually(parked, until=lambda rows: len(rows) == 1)
        eid = enrollment["enrollment_id"]
        live = (await api.get(f"/v1/enrollments/{eid}")).json()["live"]
        assert live["status"] == "needs_attention" and "name" in live["attention_reason"]
        bogus = await api.post(f"/v1/enrollments/{eid}/jump")
        assert bogus.status_code == 422
        await api.put(f"/v1/customers/{cid}", json={"name": "修好了"})
        retried = await api.post(f"/v1/enrollments/{eid}/retry")
        assert retried.status_code == 200, retried.text

        async def status() -> dict:
            return (await api.get(f"/v1/enrollments/{eid}")).json()

        after = await eventually(status, until=lambda e: e["live"]["current_step"] == "steps[1]")
        assert after["live"]["steps"]["steps[0]"]["status"] == "sent"
        again = await api.post(f"/v1/enrollments/{eid}/retry")
        assert again.status_code == 409, "retrying an enrollment that is not parked is an illegal transition"
        assert again.json()["error"]["code"] == "invalid_state"
        ended = await api.post(f"/v1/enrollments/{eid}/exit")
        assert ended.status_code == 200
        final = await eventually(status, until=lambda e: e["status"] == "exited")
        assert final["exit_reason"] == "operator"
        assert (await api.post(f"/v1/enrollments/{eid}/exit")).status_code == 409
        assert (await api.post("/v1/enrollments/nope/exit")).status_code == 404
