"""Examples for the OpenAPI document: a realistic answer for every operation.

Kept in one place, keyed by (method, path), and merged into the generated document, so
route code stays about behaviour; a test checks that every operation has one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

_T = "2026-11-23T10:00:00+08:00"
_JOURNEY = {
    "id": "unpaid-order", "name": "未付款订单挽回", "status": "active", "active_version": 2, "latest_version": 2,
    "created_at": _T, "updated_at": _T, "paused_at": None, "on_resume": None,
}  # fmt: skip
_COUNTS = {"entered": 1200, "running": 310, "exited": {"completed": 640, "goal": 250}, "converted": 262,
           "conversion_rate": 0.2183}  # fmt: skip
_ENROLLMENT = {
    "enrollment_id": "3f1c9a52-6a0e-4d4f-9a8b-1b2c3d4e5f60", "workflow_id": "journey/unpaid-order/c1/A100",
    "journey_id": "unpaid-order", "version": 2, "customer_id": "c1", "key": "A100", "trigger_event_id": "evt-1",
    "status": "running", "exit_reason": None, "entered_at": _T, "exited_at": None, "converted_at": None,
    "arm": None, "path": None,
}  # fmt: skip
_LIVE = {
    "enrollment_id": _ENROLLMENT["enrollment_id"], "workflow_id": _ENROLLMENT["workflow_id"],
    "journey_id": "unpaid-order", "version": 2, "customer_id": "c1", "key": "A100", "status": "running",
    "current_step": "wait_2h", "next_wake_at": "2026-11-23T12:00:00+08:00", "path": ["wait_1h", "nudge", "wait_2h"],
    "steps": {"wait_1h": {"matched": False, "event": None}, "nudge": {"status": "sent", "reason": None,
                                                                     "msgid": "msgGCAAAXtWyQaaa"}},
    "entered_at": _T, "exit_reason": None, "attention_reason": None, "converted": False, "arm": None,
}  # fmt: skip
_MESSAGE = {
    "id": 81, "idempotency_key": f"{_ENROLLMENT['enrollment_id']}:nudge:1",
    "enrollment_id": _ENROLLMENT["enrollment_id"],
    "journey_id": "unpaid-order", "version": 2, "step_id": "nudge", "visit": 1, "customer_id": "c1",
    "channel": "wecom.customer", "recipients": ["wmqPQxCgAA3zU_c1"], "sender": "zhangsan",
    "content": {"text": {"content": "张三，您的订单 A100 还未支付"}}, "status": "sent", "reason": None,
    "response": {"errcode": 0, "errmsg": "ok", "msgid": "msgGCAAAXtWyQaaa"}, "at": _T, "created_at": _T,
}  # fmt: skip
_KEY = {"id": "k7f3a9", "name": "ops-dashboard", "role": "viewer", "created_at": _T, "created_by": "admin",
        "revoked_at": None}  # fmt: skip
_STATS = {
    "journey": "unpaid-order", "versions": [1, 2], "enrollments": _COUNTS,
    "steps": [
        {"step": "wait_1h", "kind": "wait_for", "entered": 1200, "completed": 1150, "sends": {}, "reasons": {}},
        {"step": "nudge", "kind": "send", "entered": 1020, "completed": 1020,
         "sends": {"sent": 950, "skipped": 40, "deferred": 30},
         "reasons": {"skipped:opted_out": 25, "skipped:frequency_cap": 15, "deferred:quiet_hours": 30}},
    ],
    "sends": {"sent": 950, "skipped": 40, "deferred": 30},
    "reasons": {"skipped:opted_out": 25, "skipped:frequency_cap": 15, "deferred:quiet_hours": 30},
    "splits": [{"step": "ab", "ready": True, "arms": [
        {"arm": "a", "enrolled": 600, "converted": 120, "rate": 0.2, "ci95": [0.1696, 0.2342], "p_value": None,
         "significant": None},
        {"arm": "b", "enrolled": 600, "converted": 142, "rate": 0.2367, "ci95": [0.2042, 0.2724], "p_value": 0.1233,
         "significant": False},
    ]}],
}  # fmt: skip
_ACTIVITY = {
    "name": "crm.create_lead", "description": "Create a lead in the CRM (idempotent on the step's key).",
    "timeout_s": 30.0, "max_attempts": 5,
    "input_schema": {"type": "object", "properties": {"name": {"type": "string"}, "mobile": {"type": "string"}},
                     "required": ["name", "mobile"]},
}  # fmt: skip

#: (method, path) -> example of the success answer.
RESPONSES: dict[tuple[str, str], Any] = {
    ("get", "/healthz"): {"status": "ok", "checks": {"temporal": "up", "db": "up", "redis": "up"}},
    ("get", "/metrics"): "# HELP journeys_events_accepted_total Events accepted by the API\n"
    'journeys_events_accepted_total{outcome="new"} 1200.0\n',
    ("get", "/wecom/callback"): "1616140317555161061",
    ("post", "/wecom/callback"): "success",
    ("get", "/v1/journeys"): [_JOURNEY],
    ("post", "/v1/journeys"): {"journey": "unpaid-order", "version": 3, "status": "active",
                               "plan_hash": "9c1e7a0d4b2f..."},  # fmt: skip
    ("post", "/v1/journeys/validate"): {"journey": "unpaid-order", "valid": True, "plan_hash": "9c1e7a0d4b2f...",
                                        "graph": 'flowchart TD\n  n0["wait_1h"]\n'},  # fmt: skip
    ("get", "/v1/journeys/{journey_id}"): {**_JOURNEY, "counts": _COUNTS},
    ("get", "/v1/journeys/{journey_id}/versions/{version}"): {
        "journey": "unpaid-order", "version": 2, "yaml": "journey: unpaid-order\n...", "plan": {"nodes": ["..."]},
        "plan_hash": "9c1e7a0d4b2f...", "author": "k7f3a9", "created_at": _T},  # fmt: skip
    ("get", "/v1/journeys/{journey_id}/stats"): _STATS,
    ("post", "/v1/journeys/{journey_id}/activate"): _JOURNEY,
    ("post", "/v1/journeys/{journey_id}/pause"): {**_JOURNEY, "status": "paused", "paused_at": _T,
                                                  "on_resume": "skip_stale"},  # fmt: skip
    ("post", "/v1/journeys/{journey_id}/resume"): {"journey": _JOURNEY, "released": 37},
    ("post", "/v1/journeys/{journey_id}/archive"): {"journey": {**_JOURNEY, "status": "archived"}, "ended": 310},
    ("get", "/v1/journeys/{journey_id}/enrollments"): [_ENROLLMENT],
    ("get", "/v1/enrollments/{enrollment_id}"): {**_ENROLLMENT, "live": _LIVE},
    ("post", "/v1/enrollments/{enrollment_id}/{action}"): {"enrollment_id": _ENROLLMENT["enrollment_id"],
                                                           "action": "retry", "result": "nudge"},  # fmt: skip
    ("get", "/v1/messages"): [_MESSAGE],
    ("post", "/v1/events"): {"accepted": [{"event_id": "evt-20261123-0001", "duplicate": False,
                                           "enrolled": ["journey/unpaid-order/c1/A100"], "signalled": [],
                                           "deferred": False}]},  # fmt: skip
    ("put", "/v1/customers/{customer_id}"): {"id": "c1", "name": "张三", "external_userid": "wm_c1",
                                             "owner_userid": "zhangsan", "timezone": "Asia/Shanghai", "tags": ["vip"],
                                             "consent_marketing": True, "tier": "gold"},  # fmt: skip
    ("get", "/v1/customers/{customer_id}"): {"id": "c1", "name": "张三", "external_userid": "wm_c1",
                                             "owner_userid": "zhangsan", "tags": ["vip"], "tier": "gold"},  # fmt: skip
    ("get", "/v1/activities"): [_ACTIVITY],
    ("get", "/v1/keys"): [_KEY],
    ("post", "/v1/keys"): {**_KEY, "key": "jk_k7f3a9_5x0u2...(shown once)"},
    ("delete", "/v1/keys/{key_id}"): {**_KEY, "revoked_at": _T},
    ("get", "/v1/audit"): [{"id": 12, "at": _T, "actor": "k7f3a9", "action": "journey.pause",
                            "target": "unpaid-order", "details": {"on_resume": "skip_stale", "stale_after_s": 21600}}],
}  # fmt: skip

#: (method, path) -> example request body, for bodies whose model has none.
REQUESTS: dict[tuple[str, str], Any] = {
    ("post", "/v1/journeys/{journey_id}/activate"): {"version": 2},
    ("post", "/v1/keys"): {"name": "ops-dashboard", "role": "viewer"},
    ("post", "/wecom/callback"): "<xml><ToUserName><![CDATA[ww1234]]></ToUserName>"
    "<Encrypt><![CDATA[RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo...]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>",
}


def install_examples(app: FastAPI) -> None:
    """Merge :data:`RESPONSES` and :data:`REQUESTS` into ``app``'s OpenAPI document (built once)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()
        for (method, path), example in RESPONSES.items():
            op = spec["paths"].get(path, {}).get(method)
            if op is None:
                continue
            ok = next((code for code in op.get("responses", {}) if code.startswith("2")), "200")
            response = op.setdefault("responses", {}).setdefault(ok, {"description": "Successful Response"})
            media = "application/json" if not isinstance(example, str) else "text/plain"
            response.setdefault("content", {}).setdefault(media, {})["example"] = example
        for (method, path), example in REQUESTS.items():
            op = spec["paths"].get(path, {}).get(method)
            if op is None:
                continue
            media = "application/json" if not isinstance(example, str) else "application/xml"
            body = op.setdefault("requestBody", {"required": False})
            body.setdefault("content", {}).setdefault(media, {})["example"] = example
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
