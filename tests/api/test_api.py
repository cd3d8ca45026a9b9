"""The HTTP contract: auth, error shape, journey validation, customers, events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from tests.conftest import Stack

YAML = {"Content-Type": "application/yaml"}


async def test_requests_without_a_valid_key_are_401(stack: Stack) -> None:
    async with stack.client(key=None) as anon:
        resp = await anon.get("/v1/journeys")
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "unauthorized"
    async with stack.client(key="wrong") as wrong:
        assert (await wrong.post("/v1/events", json={"customer_id": "x", "name": "a"})).status_code == 401


async def test_healthz_reports_each_dependency(stack: Stack) -> None:
    async with stack.client(key=None) as anon:
        resp = await anon.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "checks": {"temporal": "up", "db": "up", "redis": "up"}}


async def test_invalid_yaml_syntax_is_422_with_line(stack: Stack) -> None:
    broken = "journey: broken\ntrigger: {event: a\nsteps: []\n"
    async with stack.client() as api:
        resp = await api.post("/v1/journeys", content=broken, headers=YAML, params={"filename": "broken.yaml"})
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "invalid_journey"
    assert err["message"].startswith("broken.yaml:")
    assert err["details"][0]["line"] in (2, 3, 4)


async def test_invalid_journey_is_422_naming_path_and_line(stack: Stack) -> None:
    text = """journey: bad-one
trigger: {event: order.created}
steps:
  - id: hello
    send:
      channel: wecom.custmer
      text: hi
  - wait: 30
"""
    async with stack.client() as api:
        resp = await api.post("/v1/journeys", content=text, headers=YAML)
    assert resp.status_code == 422
    details = resp.json()["error"]["details"]
    assert {"path": "steps[1].wait", "line": 8} == {k: details[-1][k] for k in ("path", "line")}
    assert "not a duration" in details[-1]["message"]
    async with stack.client() as api:
        fixed = text.replace("wait: 30", "wait: 30s")
        resp = await api.post("/v1/journeys", content=fixed, headers=YAML)
    assert resp.status_code == 422
    detail = resp.json()["error"]["details"][0]
    assert detail["path"] == "steps[0].send.channel" and detail["line"] == 6
    assert "did you mean 'wecom.customer'" in detail["message"]


async def test_journey_versions_and_errors(stack: Stack) -> None:
    jid = f"v-{uuid.uuid4().hex[:8]}"
    text = f"journey: {jid}\ntrigger: {{event: a.b}}\nsteps:\n  - wait: 1h\n"
    async with stack.client() as api:
        assert (
            await api.post("/v1/journeys", content=text, headers={"Content-Type": "application/json"})
        ).status_code == 415
        first = (await api.post("/v1/journeys", content=text, headers=YAML)).json()
        second = (await api.post("/v1/journeys", content=text.replace("1h", "2h"), headers=YAML)).json()
        assert (first["version"], second["version"]) == (1, 2)
        assert first["status"] == "draft"
        version = (await api.get(f"/v1/journeys/{jid}/versions/1")).json()
        assert version["plan"]["nodes"][0]["seconds"] == 3600
        assert (await api.get(f"/v1/journeys/{jid}/versions/9")).status_code == 404
        activated = (await api.post(f"/v1/journeys/{jid}/activate", json={"version": 1})).json()
        assert activated["active_version"] == 1
        missing = await api.post("/v1/journeys/nope-nope/activate", json={})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        bad_version = await api.post(f"/v1/journeys/{jid}/activate", json={"version": "x"})
        assert bad_version.status_code == 422


async def test_customers_roundtrip_and_validation(stack: Stack) -> None:
    cid = f"cust-{uuid.uuid4().hex[:6]}"
    async with stack.client() as api:
        assert (await api.get(f"/v1/customers/{cid}")).status_code == 404
        put = await api.put(
            f"/v1/customers/{cid}", json={"name": "王五", "tags": ["vip"], "tier": "gold", "timezone": "Europe/London"}
        )
        assert put.status_code == 200
        got = (await api.get(f"/v1/customers/{cid}")).json()
        assert got == {"id": cid, "name": "王五", "tags": ["vip"], "tier": "gold", "timezone": "Europe/London"}
        bad_tz = await api.put(f"/v1/customers/{cid}", json={"timezone": "Mars/Base"})
        assert bad_tz.status_code == 422
        assert "unknown time zone" in bad_tz.json()["error"]["message"]
        bad_tags = await api.put(f"/v1/customers/{cid}", json={"tags": "vip"})
        assert bad_tags.status_code == 422


async def test_event_validation_and_limits(stack: Stack) -> None:
    async with stack.client() as api:
        no_customer = await api.post("/v1/events", json={"name": "a.b"})
        assert no_customer.status_code == 422
        assert "customer_id" in no_customer.json()["error"]["message"]
        not_json = await api.post("/v1/events", content=b"{oops", headers={"Content-Type": "application/json"})
        assert not_json.status_code == 422
        huge = await api.post(
            "/v1/events", content=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"}
        )
        assert huge.status_code == 413
        assert huge.json()["error"]["code"] == "too_large"

        async def undeclared() -> AsyncIterator[bytes]:
            for _ in range(40):  # 2.5 MiB sent chunked, without a declared length
                yield b"x" * 65536

        chunked = await api.post("/v1/events", content=undeclared(), headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "too_large"
        batch = await api.post(
            "/v1/events",
            json={
                "events": [
                    {"event_id": "b-1", "customer_id": "bc", "name": "x.y"},
                    {"event_id": "b-1", "customer_id": "bc", "name": "x.y"},
                ]
            },
        )
        assert batch.status_code == 202
        assert [a["duplicate"] for a in batch.json()["accepted"]] == [False, True]


async def test_metrics_count_what_happened(stack: Stack) -> None:
    import re

    from tests.e2e.test_walking_skeleton import deploy, fake_messages
    from tests.helpers import eventually

    jid = f"metrics-{uuid.uuid4().hex[:6]}"
    async with stack.client() as api:
        await deploy(api, f"journey: {jid}\ntrigger: {{event: ping}}\nsteps:\n  - send: {{channel: wecom.app, to: ops, "
                          f"text: 'metric {jid}'}}\n")  # fmt: skip
        await api.post("/v1/events", json={"event_id": f"{jid}-1", "customer_id": f"{jid}-c", "name": "ping"})
        await api.post("/v1/events", json={"event_id": f"{jid}-1", "customer_id": f"{jid}-c", "name": "ping"})
        await eventually(lambda: fake_messages(stack, text=f"metric {jid}"), until=lambda m: len(m) == 1)

        async def scrape() -> str:
            return (await api.get("/metrics")).text

        text = await eventually(
            scrape, until=lambda t: f'journeys_enrollments_exited_total{{journey="{jid}",reason="completed"}}' in t
        )
    assert f'journeys_enrollments_started_total{{journey="{jid}"}} 1.0' in text
    assert re.search(r'journeys_events_accepted_total\{outcome="duplicate"\} [1-9]', text)
    assert re.search(r'journeys_sends_total\{channel="wecom.app",reason="",status="sent"\} [1-9]', text)
    assert 'journeys_activity_seconds_count{activity="journeys.send",outcome="ok"}' in text


async def test_a_batch_delivers_an_event_to_the_enrollment_an_earlier_event_of_it_started(stack: Stack) -> None:
    jid = f"batch-{uuid.uuid4().hex[:6]}"
    text = f"""
journey: {jid}
trigger: {{event: {jid}.signup}}
steps:
  - wait_for: {{event: {jid}.paid, timeout: 1h}}
"""
    async with stack.client() as api:
        assert (await api.post("/v1/journeys", content=text, headers=YAML)).status_code == 201
        assert (await api.post(f"/v1/journeys/{jid}/activate", json={"version": 1})).status_code == 200
        customer = f"{jid}-c"
        resp = await api.post("/v1/events", json={"events": [
            {"event_id": f"{jid}-1", "customer_id": customer, "name": f"{jid}.signup"},
            {"event_id": f"{jid}-2", "customer_id": customer, "name": f"{jid}.paid"},
        ]})  # fmt: skip
        assert resp.status_code == 202
        signup, paid = resp.json()["accepted"]
        assert len(signup["enrolled"]) == 1
        assert paid["signalled"] == signup["enrolled"], "the second event reaches the enrollment the first started"
