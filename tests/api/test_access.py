"""API keys, roles and the audit log."""

from __future__ import annotations

import uuid

from tests.conftest import Stack

YAML = {"Content-Type": "application/yaml"}


async def make_key(stack: Stack, role: str) -> dict:
    async with stack.client() as admin:
        resp = await admin.post("/v1/keys", json={"name": f"{role}-{uuid.uuid4().hex[:4]}", "role": role})
        assert resp.status_code == 201, resp.text
        return resp.json()


async def test_roles_are_enforced_on_every_kind_of_route(stack: Stack) -> None:
    viewer, marketer, operator = [await make_key(stack, r) for r in ("viewer", "marketer", "operator")]
    jid = f"acl-{uuid.uuid4().hex[:6]}"
    text = f"journey: {jid}\ntrigger: {{event: a}}\nsteps:\n  - wait: 1h\n"
    async with stack.client(viewer["key"]) as v, stack.client(marketer["key"]) as m, stack.client(operator["key"]) as o:
        assert (await v.get("/v1/journeys")).status_code == 200
        assert (await v.get("/v1/activities")).status_code == 200
        denied = await v.post("/v1/journeys", content=text, headers=YAML)
        assert denied.status_code == 403 and "marketer" in denied.json()["error"]["message"]
        assert (await v.post("/v1/events", json={"customer_id": "x", "name": "a"})).status_code == 403
        assert (await m.post("/v1/journeys", content=text, headers=YAML)).status_code == 201
        assert (await m.post(f"/v1/journeys/{jid}/activate", json={})).status_code == 403
        assert (await o.post(f"/v1/journeys/{jid}/activate", json={})).status_code == 200
        assert (await o.post(f"/v1/journeys/{jid}/pause", json={"on_resume": "skip_stale"})).status_code == 422
        assert (
            await o.post(f"/v1/journeys/{jid}/pause", json={"on_resume": "skip_stale", "stale_after": "6h"})
        ).status_code == 200
        assert (await o.post(f"/v1/journeys/{jid}/pause", json={})).status_code == 200
        assert (await o.post(f"/v1/journeys/{jid}/resume")).status_code == 200
        assert (await o.post(f"/v1/journeys/{jid}/resume")).status_code == 409, "resuming an active journey is illegal"
        assert (await o.get("/v1/keys")).status_code == 403
        entries = (await o.get("/v1/audit", params={"target": jid})).json()
        assert [e["action"] for e in entries] == [
            "journey.resume", "journey.pause", "journey.pause", "journey.activate", "journey.version",
        ]  # fmt: skip
        assert entries[-1]["actor"] == marketer["id"] and entries[0]["actor"] == operator["id"]


async def test_keys_are_hashed_listed_and_revoked(stack: Stack) -> None:
    key = await make_key(stack, "viewer")
    assert key["key"].startswith(f"jk_{key['id']}_")
    async with stack.client() as admin:
        listed = {k["id"]: k for k in (await admin.get("/v1/keys")).json()}
        assert key["id"] in listed and "key" not in listed[key["id"]] and "secret_hash" not in listed[key["id"]]
        row = stack.rt.store.get_key(key["id"])
        assert row is not None and key["key"].split("_", 2)[2] not in row.secret_hash
        assert (await admin.post("/v1/keys", json={"name": "x", "role": "god"})).status_code == 422
        async with stack.client(key["key"]) as holder:
            assert (await holder.get("/v1/journeys")).status_code == 200
            assert (await admin.delete(f"/v1/keys/{key['id']}")).status_code == 200
            assert (await holder.get("/v1/journeys")).status_code == 401
        async with stack.client(key["key"][:-1] + "x") as forged:
            assert (await forged.get("/v1/journeys")).status_code == 401


async def test_keys_cli_against_the_api(stack: Stack) -> None:
    import asyncio
    import json
    import os
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).parent / "journeys")
    env = {**os.environ, "JOURNEYS_API_URL": stack.api.url, "JOURNEYS_API_KEY": stack.admin_key}

    async def cli(*args: str) -> tuple[int, str, str]:
        # The API runs in this event loop: the CLI must run beside it, not block it.
        proc = await asyncio.create_subprocess_exec(exe, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = await cli("keys", "create", "--role", "viewer", "--name", "cli")
    assert code == 0, err
    key_id = json.loads(out)["id"]
    assert key_id in (await cli("keys", "list"))[1]
    code, out, _ = await cli("keys", "revoke", key_id)
    assert code == 0 and json.loads(out)["revoked_at"]
    code, _, err = await cli("keys", "revoke", "nope")
    assert code == 1 and "HTTP 404" in err
