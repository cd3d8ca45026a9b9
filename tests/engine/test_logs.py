"""Structured logs: ids of what was running, phones and secrets masked."""

from __future__ import annotations

import io
import json
import logging
import uuid

from engine.logs import JsonFormatter, TextFormatter, bind, mask, unbind
from tests.conftest import Stack
from tests.helpers import eventually


def test_mask_hides_phones_and_secrets() -> None:
    line = (
        "customer 13812345678 (+86 13987654321) GET /cgi-bin/gettoken?corpid=ww1&corpsecret=s3cr3t-value "
        'access_token=ACCESS123 {"secret": "abc", "token": "t0k"} Authorization: Bearer jk_ab12_SECRETPART '
        "key jk_ab12_SECRETPART order 202611239999000011 at 2026-11-23"
    )
    masked = mask(line)
    for hidden in ("12345678", "87654321", "s3cr3t-value", "ACCESS123", '"abc"', "t0k", "SECRETPART"):
        assert hidden not in masked, (hidden, masked)
    assert "138****5678" in masked and "139****4321" in masked
    assert "202611239999000011" in masked, "long order numbers are not phone numbers"
    assert "corpid=ww1" in masked and "2026-11-23" in masked


def test_mask_covers_prefixed_names_reprs_and_spaced_phones() -> None:
    cases = {
        "WECOM_SECRET=abc123 WECOM_CALLBACK_AES_KEY=zzzz": ["abc123", "zzzz"],
        "client_secret: hush, x-api-key: k3y": ["hush", "k3y"],
        "{'access_token': 'T0K', 'corpsecret': 'C0R'}": ["T0K", "C0R"],
        "call 138 1234 5678 or 139-8765-4321": ["1234 5678", "8765-4321"],
        "msg_signature=5c4f0e&timestamp=1": ["5c4f0e"],
    }
    for line, hidden in cases.items():
        masked = mask(line)
        assert not any(h in masked for h in hidden), masked
    assert mask("tokens: 5, secrets are fun") == "tokens: 5, secrets are fun"


def test_json_formatter_masks_bodies_and_arguments() -> None:
    rec = record(
        "WeCom said %s for %s", {"errcode": 0, "access_token": "T0K"}, '{"secret": "abc", "mobile": "13812345678"}'
    )
    line = JsonFormatter().format(rec)
    entry = json.loads(line)
    assert "T0K" not in line and "abc" not in line and "13812345678" not in line, line
    assert "138****5678" in entry["message"]


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("journeys.test", logging.WARNING, __file__, 1, message, args, None)
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_the_ids_of_what_was_running() -> None:
    temporal = {"workflow_id": "journey/welcome/c13812345678", "workflow_run_id": "run-1",
                "activity_type": "journeys.send"}  # fmt: skip
    rec = record("send failed for %s", "13812345678", temporal_activity=temporal)
    token = bind(enrollment_id="enr-1", step_id="hello")
    try:
        entry = json.loads(JsonFormatter().format(rec))
    finally:
        unbind(token)
    assert entry["journey_id"] == "welcome" and entry["enrollment_id"] == "enr-1" and entry["step_id"] == "hello"
    assert entry["activity"] == "journeys.send" and entry["run_id"] == "run-1" and entry["level"] == "warning"
    assert "13812345678" not in json.dumps(entry) and entry["customer_id"] == "c138****5678"
    assert "enrollment_id=enr-1" not in TextFormatter().format(rec), "unbound after the activity"


async def test_a_worker_log_line_names_journey_enrollment_and_masks_the_phone(stack: Stack) -> None:
    jid = f"logs-{uuid.uuid4().hex[:6]}"
    customer = f"u{uuid.uuid4().int % 10**6}-13812345678"
    text = (f"journey: {jid}\ntrigger: {{event: {jid}.go}}\n"
            "audience: customer.score / customer.zero > 1\nsteps:\n  - wait: 1h\n")  # fmt: skip
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        async with stack.client() as api:
            assert (
                await api.post("/v1/journeys", content=text, headers={"Content-Type": "application/yaml"})
            ).is_success
            assert (await api.post(f"/v1/journeys/{jid}/activate", json={})).is_success
            assert (await api.put(f"/v1/customers/{customer}", json={"score": 3, "zero": 0})).is_success
            assert (
                await api.post("/v1/events", json={"customer_id": customer, "name": f"{jid}.go"})
            ).status_code == 202

            async def lines() -> list[dict]:
                return [json.loads(line) for line in stream.getvalue().splitlines() if jid in line]

            found = await eventually(lines, until=lambda ls: any("audience rule failed" in e["message"] for e in ls))
    finally:
        root.removeHandler(handler)
    entry = next(e for e in found if "audience rule failed" in e["message"])
    assert entry["journey_id"] == jid and entry["enrollment_id"] and entry["activity"] == "journeys.admit"
    assert "13812345678" not in stream.getvalue() and "138****5678" in entry["customer_id"]
