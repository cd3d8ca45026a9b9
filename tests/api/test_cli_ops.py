"""The operator CLI against a running API: deploy, status, stats, enrollment, pause/resume, bulk, archive."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

from tests.conftest import Stack
from tests.helpers import eventually


async def run_cli(stack: Stack, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    exe = str(Path(sys.executable).parent / "journeys")
    env = {**os.environ, "JOURNEYS_API_URL": stack.api.url, "JOURNEYS_API_KEY": stack.admin_key, "COLUMNS": "200"}
    # The API runs in this event loop: the CLI must run beside it, not block it.
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(exe, *args, env=env, stdin=pipe, stdout=pipe, stderr=pipe)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_operator_cli_walkthrough(stack: Stack, tmp_path: Path) -> None:
    jid = f"cli-{uuid.uuid4().hex[:6]}"
    path = tmp_path / f"{jid}.yaml"
    path.write_text(f"journey: {jid}\ntrigger: {{event: {jid}.go}}\nsteps:\n  - id: hello\n"
                    f"    send: {{channel: wecom.app, to: s1, text: hi}}\n  - id: later\n    wait: 1d\n")  # fmt: skip
    code, out, err = await run_cli(stack, "deploy", str(path), "--activate")
    assert code == 0, err
    async with stack.client() as api:
        events = [{"customer_id": f"{jid}-c{i}", "name": f"{jid}.go"} for i in range(3)]
        assert (await api.post("/v1/events", json={"events": events})).status_code == 202

        async def running() -> list[dict]:
            return (await api.get(f"/v1/journeys/{jid}/enrollments", params={"status": "running"})).json()

        rows = await eventually(running, until=lambda r: len(r) == 3)
        await eventually(lambda: api.get(f"/v1/journeys/{jid}/stats"),
                         until=lambda r: r.json()["steps"][0]["completed"] == 3)  # fmt: skip

    code, out, err = await run_cli(stack, "status", jid)
    assert code == 0, err
    header, _, line = out.splitlines()[:3]
    assert header.split() == ["journey", "status", "active", "latest", "entered", "running", "converted", "rate"]
    assert line.split() == [jid, "active", "1", "1", "3", "3", "0", "0.0%"]

    code, out, err = await run_cli(stack, "stats", jid)
    assert code == 0, err
    hello = next(line.split() for line in out.splitlines() if line.startswith("hello"))
    assert hello == ["hello", "send", "3", "3", "3", "0", "0", "-"], out

    code, out, err = await run_cli(stack, "enrollment", rows[0]["enrollment_id"])
    assert code == 0, err
    facts = dict(line.split(None, 1) if "  " in line else (line, "") for line in out.splitlines() if line.strip())
    assert "later" in out and "hello > later" in out and facts.get("customer", "").strip() == rows[0]["customer_id"]

    code, out, err = await run_cli(stack, "pause", jid, "--on-resume", "skip_stale", "--stale-after", "6h")
    assert (code, out.strip()) == (0, f"{jid}: paused (on resume: skip_stale)"), err
    code, out, err = await run_cli(stack, "resume", jid)
    assert code == 0 and out.startswith(f"{jid}: active"), err

    code, out, err = await run_cli(stack, "bulk", "retry", jid, "--status", "running")
    assert code == 1 and "0 done, 3 refused" in out and "not needs_attention" in err, (out, err)
    code, out, err = await run_cli(stack, "bulk", "exit", jid, "--status", "running")
    assert code == 0 and "3 done, 0 refused" in out, (out, err)

    code, out, err = await run_cli(stack, "archive", jid, stdin="n\n")
    assert code != 0, "archive asks first"
    code, out, err = await run_cli(stack, "archive", jid, "--yes")
    assert (code, out.strip()) == (0, f"{jid}: archived, 0 running enrollment(s) ended"), err

    code, out, err = await run_cli(stack, "status", jid, "--json")
    detail = json.loads(out)
    assert detail["status"] == "archived" and detail["counts"]["exited"] == {"operator": 3}
    code, out, err = await run_cli(stack, "stats", "no-such-journey")
    assert code == 1 and "HTTP 404" in err
