"""Every route of the API, called with every role: the allowed/denied matrix.

The matrix below is the access contract (architecture.md: viewer reads; marketer also
creates versions and submits events; operator also runs the lifecycle and enrollment
actions; admin also manages keys). A route the app has and the matrix lacks fails the test,
so a new route cannot ship without a decision about who may call it.
"""

from __future__ import annotations

import uuid

from tests.api.test_access import make_key
from tests.conftest import Stack

ROLES = ["anonymous", "viewer", "marketer", "operator", "admin"]
PUBLIC = "public"

#: (method, path) -> the least role allowed.
MATRIX: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/wecom/callback"): PUBLIC,  # authenticated by WeCom's signature instead
    ("POST", "/wecom/callback"): PUBLIC,
    ("GET", "/v1/journeys"): "viewer",
    ("GET", "/v1/journeys/{journey_id}"): "viewer",
    ("GET", "/v1/journeys/{journey_id}/versions/{version}"): "viewer",
    ("GET", "/v1/journeys/{journey_id}/stats"): "viewer",
    ("GET", "/v1/journeys/{journey_id}/enrollments"): "viewer",
    ("GET", "/v1/enrollments/{enrollment_id}"): "viewer",
    ("GET", "/v1/messages"): "viewer",
    ("GET", "/v1/customers/{customer_id}"): "viewer",
    ("GET", "/v1/activities"): "viewer",
    ("POST", "/v1/journeys"): "marketer",
    ("POST", "/v1/journeys/validate"): "marketer",
    ("POST", "/v1/events"): "marketer",
    ("PUT", "/v1/customers/{customer_id}"): "marketer",
    ("POST", "/v1/journeys/{journey_id}/activate"): "operator",
    ("POST", "/v1/journeys/{journey_id}/pause"): "operator",
    ("POST", "/v1/journeys/{journey_id}/resume"): "operator",
    ("POST", "/v1/journeys/{journey_id}/archive"): "operator",
    ("POST", "/v1/enrollments/{enrollment_id}/{action}"): "operator",
    ("GET", "/v1/audit"): "operator",
    ("GET", "/v1/keys"): "admin",
    ("POST", "/v1/keys"): "admin",
    ("DELETE", "/v1/keys/{key_id}"): "admin",
}


def app_routes(stack: Stack) -> set[tuple[str, str]]:
    # The OpenAPI document lists every route the app serves (none is hidden from it).
    paths = stack.api.server.config.app.openapi()["paths"]
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


def allowed(least: str, role: str) -> bool:
    return least == PUBLIC or (role != "anonymous" and ROLES.index(role) >= ROLES.index(least))


async def test_every_route_with_every_role(stack: Stack) -> None:
    routes = app_routes(stack)
    assert routes == {r for r in MATRIX if r in routes}, f"routes missing from the matrix: {routes - set(MATRIX)}"
    assert set(MATRIX) == routes, f"matrix lists unknown routes: {set(MATRIX) - routes}"
    keys = {"anonymous": None, "admin": stack.admin_key}
    for role in ("viewer", "marketer", "operator"):
        keys[role] = (await make_key(stack, role))["key"]
    jid = f"matrix-{uuid.uuid4().hex[:6]}"
    text = f"journey: {jid}\ntrigger: {{event: a}}\nsteps:\n  - wait: 1h\n"
    async with stack.client() as admin:
        assert (await admin.post("/v1/journeys", content=text, headers={"Content-Type": "application/yaml"})).is_success
    params = {"journey_id": jid, "version": "1", "enrollment_id": "no-such-enrollment", "customer_id": "matrix-c",
              "key_id": "no-such-key", "action": "exit"}  # fmt: skip
    bodies = {
        "/v1/journeys": text,
        "/v1/journeys/validate": text,
        "/v1/events": {"customer_id": "matrix-c", "name": "matrix.ping"},
        "/v1/customers/{customer_id}": {"name": "M"},
        "/v1/keys": {"name": "matrix", "role": "viewer"},
    }
    seen: list[tuple[str, str, str, int]] = []
    for method, path in sorted(routes):
        url = path.format(**params)
        body = bodies.get(path)
        for role in ROLES:
            async with stack.client(keys[role]) as api:
                if isinstance(body, str):
                    resp = await api.request(method, url, content=body, headers={"Content-Type": "application/yaml"})
                else:
                    resp = await api.request(method, url, json=body)
            seen.append((method, path, role, resp.status_code))
            assert resp.status_code != 500, (method, path, role, resp.text)
            if allowed(MATRIX[(method, path)], role):
                assert resp.status_code not in (401, 403), (method, path, role, resp.text)
            else:
                expected = 401 if role == "anonymous" else 403
                assert resp.status_code == expected, (method, path, role, resp.text)
                assert resp.json()["error"]["code"] in ("unauthorized", "forbidden")
    assert len(seen) == len(routes) * len(ROLES)
