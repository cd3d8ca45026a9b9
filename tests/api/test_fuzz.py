"""Property-based API test: generated requests against every operation of the OpenAPI document.

Hypothesis draws an operation, path and query values (well-formed, wrong type, hostile
text), a body (the documented example, the example with fields dropped or replaced, any
JSON, raw bytes under any content type) and a key of some role. The API answers every one
with something other than a 500, and errors are the documented JSON shape.

The API runs as a ``journeys api`` process on the session's real Temporal and Redis with
its own SQLite file: Hypothesis drives it synchronously, which would freeze an API served
from the test's own event loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.embedded import ChildProcess, free_port, wait_for_port
from tests.conftest import ADMIN_KEY

EXAMPLES = 1200
YAML_EXAMPLE = "journey: fuzz\ntrigger: {event: fuzz.go}\nsteps:\n  - wait: 1h\n"


@pytest.fixture(scope="module")
def api_process(redis_server: ChildProcess, temporal_server: ChildProcess, tmp_path_factory: Any) -> Iterator[str]:
    data = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{data / 'journeys.db'}",
        "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/5",
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_server.port}",
        "TEMPORAL_TASK_QUEUE": "fuzz-no-worker",
        "JOURNEYS_ADMIN_KEY": ADMIN_KEY,
        "JOURNEYS_DATA_DIR": str(data),
        "WECOM_CALLBACK_TOKEN": "fuzztoken",
        "WECOM_CALLBACK_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    }
    exe = str(Path(sys.executable).parent / "journeys")
    with open(data / "api.log", "wb") as log:
        proc = subprocess.Popen([exe, "api", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port("127.0.0.1", port, timeout=60, proc=proc, what="journeys api")
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
hostile_text = st.sampled_from(
    [
        "",
        " ",
        "0",
        "-1",
        "99999999999999999999",
        "../../etc",
        "%00",
        "a/b",
        "🙂",
        "'; DROP TABLE x;--",
        "{{ 7*7 }}",
        "x" * 300,
        "null",
        "true",
        "1e309",
        "\u202e",
        "é",
    ]  # fmt: skip
) | st.text(max_size=30)


def example_body(spec: dict[str, Any], op: dict[str, Any]) -> Any:
    content = op.get("requestBody", {}).get("content", {})
    for media in content.values():
        if "example" in media:
            return media["example"]
        schema = media.get("schema", {})
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].split("/")[-1]]
        if schema.get("examples"):
            return schema["examples"][0]
    return None


@st.composite
def mutated(draw: st.DrawFn, example: Any) -> Any:
    if isinstance(example, dict) and example:
        body = dict(example)
        for key in draw(st.lists(st.sampled_from(sorted(body)), max_size=3, unique=True)):
            if draw(st.booleans()):
                del body[key]
            else:
                body[key] = draw(json_values)
        if draw(st.booleans()):
            body[draw(st.text(max_size=8))] = draw(json_values)
        return body
    return draw(json_values)


def test_no_generated_request_gets_a_500(api_process: str) -> None:
    with httpx.Client(base_url=api_process, timeout=30) as client:
        spec = client.get("/openapi.json").json()
        keys = {"admin": ADMIN_KEY, "none": None, "forged": "jk_nope_nope"}
        for role in ("viewer", "marketer", "operator"):
            made = client.post("/v1/keys", json={"name": f"fuzz-{role}", "role": role},
                               headers={"Authorization": f"Bearer {ADMIN_KEY}"})  # fmt: skip
            keys[role] = made.json()["key"]
        client.post("/v1/journeys", content=YAML_EXAMPLE,
                    headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/yaml"})  # fmt: skip
        ops = operations(spec)
        statuses: Counter[int] = Counter()
        failures: list[str] = []
        resets = {"n": 0}

        @st.composite
        def requests(draw: st.DrawFn) -> dict[str, Any]:
            method, path, op = draw(st.sampled_from(ops))
            url = path
            params: dict[str, str] = {}
            for p in op.get("parameters", []):
                kind = p.get("schema", {}).get("type")
                good = draw(st.integers(1, 3).map(str)) if kind == "integer" else draw(st.sampled_from(["fuzz", "c1"]))
                value = draw(st.sampled_from([good, good, None]) | hostile_text)
                if p["in"] == "path":
                    url = url.replace("{" + p["name"] + "}", quote(value or "x", safe=""))
                elif value is not None:
                    params[p["name"]] = value
            example = example_body(spec, op)
            kind = draw(st.sampled_from(["example", "mutated", "json", "bytes", "none"]))
            headers = {"Content-Type": "application/json"}
            if kind == "example":
                body = example if isinstance(example, str) else json.dumps(example)
                if isinstance(example, str):
                    headers["Content-Type"] = "application/yaml"
            elif kind == "mutated":
                body = json.dumps(draw(mutated(example)))
            elif kind == "json":
                body = json.dumps(draw(json_values))
            elif kind == "bytes":
                body = draw(st.binary(max_size=200))
                headers["Content-Type"] = draw(st.sampled_from(["application/json", "application/yaml", "text/xml"]))
            else:
                body = None
            key = keys[draw(st.sampled_from(sorted(keys)))]
            if key:
                headers["Authorization"] = f"Bearer {key}"
            return {"method": method, "url": url, "params": params, "content": body, "headers": headers}

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(requests())
        def call(req: dict[str, Any]) -> None:
            try:
                resp = client.request(**req)
            except (httpx.ReadError, httpx.RemoteProtocolError):
                # The server may close a kept-alive connection after refusing a request whose
                # body it did not read; the request is retried once on a fresh connection.
                resets["n"] += 1
                resp = client.request(**req)
            statuses[resp.status_code] += 1
            if resp.status_code >= 500 and resp.status_code != 503:
                failures.append(f"{req['method']} {req['url']} {req['params']} -> {resp.status_code} {resp.text[:300]}")
            elif resp.status_code >= 400 and req["url"].startswith("/v1/"):
                assert "error" in resp.json(), (req, resp.text)

        call()
    assert sum(statuses.values()) >= 1000
    assert resets["n"] < 50, resets
    assert failures == [], "\n".join(failures[:20])
    assert statuses[503] == 0, "every dependency is up: a 503 means an error was misclassified"
    assert {200, 201, 202} & set(statuses) and {401, 403, 404, 422} <= set(statuses), statuses
