"""docs/write-a-custom-activity.md, followed as written: its commands, compared with its outputs.

The commands run from the repository root in subprocesses, with ``.venv/bin/`` meaning this
test's environment. The example plugin is found the way the page says: through its entry
point, installed by the page's one install command (``make install`` runs the same; if the
plugin is missing, this test runs it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import httpx
import pytest

from engine.embedded import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "write-a-custom-activity.md"
BIN = Path(sys.executable).parent
INSTALL = ".venv/bin/pip install -e examples/journeys-plugin-example"


def blocks() -> list[tuple[str, str]]:
    """(language, body) of every fenced block of the page, in order."""
    return [(m[1], m[2]) for m in re.finditer(r"^```(\w*)\n(.*?)^```", PAGE.read_text(), re.S | re.M)]


def output_after(command: str) -> list[str]:
    """The text block that follows the sh block running ``command``, as lines."""
    found = blocks()
    for i, (lang, body) in enumerate(found):
        if lang == "sh" and body.strip() == command:
            lang_out, out = found[i + 1]
            assert lang_out == "text", f"no output block after {command!r}"
            return out.splitlines()
    raise AssertionError(f"the page has no command {command!r}")


def run(command: str, *, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    args = shlex.split(command)
    args[0] = str(BIN / Path(args[0]).name) if args[0].startswith(".venv/bin/") else args[0]
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def squash(line: str) -> str:
    # Seconds vary: the simulated clock runs on while the activities make their HTTP calls.
    return re.sub(r"T(\d\d:\d\d):\d\d", r"T\1", " ".join(line.split()))


def test_the_page_installs_lists_simulates_and_validates(tmp_path: Path) -> None:
    commands = [line for lang, body in blocks() if lang == "sh" for line in body.splitlines()]
    assert commands[0] == INSTALL, "the first command installs the example"
    makefile = (ROOT / "Makefile").read_text()
    assert "EXAMPLE_PLUGIN := examples/journeys-plugin-example" in makefile
    assert "$(BIN)/pip install --quiet -e $(EXAMPLE_PLUGIN)" in makefile, "make install follows the page"
    try:
        distribution("journeys-plugin-example")
    except PackageNotFoundError:
        installed = run(INSTALL)
        assert installed.returncode == 0, installed.stderr

    listed = run(".venv/bin/journeys activities")
    assert listed.returncode == 0, listed.stderr
    for line in output_after(".venv/bin/journeys activities"):
        if "..." not in line:
            assert line in listed.stdout.splitlines(), f"{line!r} not in:\n{listed.stdout}"
    as_json = {a["name"]: a for a in json.loads(run(".venv/bin/journeys activities --json").stdout)}
    assert as_json["sms.send"]["input_schema"]["required"] == ["to", "text"]

    port = free_port()
    gateway_cmd = ".venv/bin/python -m journeys_plugin_example.gateway --port 8300"
    assert gateway_cmd in commands
    args = shlex.split(gateway_cmd.replace("8300", str(port)))
    gateway = subprocess.Popen([str(BIN / "python"), *args[1:]], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/_state", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and gateway.poll() is None, "the gateway did not start"
                time.sleep(0.1)
        simulate = ".venv/bin/journeys simulate examples/journeys-plugin-example/scenarios/new-lead.yaml"
        simulated = run(simulate, env={**os.environ, "JOURNEYS_EXAMPLE_GATEWAY_URL": url})
        assert simulated.returncode == 0, simulated.stderr
        assert [squash(line) for line in output_after(simulate)] == [
            squash(line) for line in simulated.stdout.splitlines()
        ]
        state = httpx.get(f"{url}/_state").json()
        assert [lead["name"] for lead in state["leads"]] == ["Li Lei"]
        assert [m["text"] for m in state["messages"]] == ["Li Lei, thank you! Your reference is L-0001."]
    finally:
        gateway.terminate()
        gateway.wait(timeout=10)

    [lead_yaml] = [body for lang, body in blocks() if lang == "yaml" and body.startswith("journey: lead\n")]
    (tmp_path / "lead.yaml").write_text(lead_yaml)
    checked = run(".venv/bin/journeys validate lead.yaml", cwd=tmp_path)
    assert checked.returncode == 1
    assert checked.stderr.splitlines() == output_after(".venv/bin/journeys validate lead.yaml")

    schema = json.loads(run(".venv/bin/journeys schema").stdout)
    assert "crm.create_lead" in schema["$defs"]["ActivityStep"]["properties"]["activity"]["anyOf"][0]["enum"]
    assert schema["$defs"]["with:crm.create_lead"]["required"] == ["name", "phone"]
