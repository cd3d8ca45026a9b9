"""The OpenAPI document shows an example for every operation's answer and request body."""

from __future__ import annotations

from typing import Any

from tests.conftest import Stack


def has_example(spec: dict[str, Any], media: dict[str, Any]) -> bool:
    if "example" in media or "examples" in media:
        return True
    schema = media.get("schema", {})
    refs = [schema.get("$ref"), (schema.get("items") or {}).get("$ref")]
    refs += [alt.get("$ref") for alt in schema.get("anyOf", []) + schema.get("oneOf", [])]
    return any(ref and spec["components"]["schemas"][ref.split("/")[-1]].get("examples") for ref in refs)


async def test_every_operation_has_examples(stack: Stack) -> None:
    async with stack.client(key=None) as anon:
        spec = (await anon.get("/openapi.json")).json()
    missing = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            ok = [r for code, r in op["responses"].items() if code.startswith("2")]
            if not any(has_example(spec, m) for r in ok for m in r.get("content", {}).values()):
                missing.append(f"{method.upper()} {path}: response")
            body = op.get("requestBody", {}).get("content", {})
            if body and not any(has_example(spec, m) for m in body.values()):
                missing.append(f"{method.upper()} {path}: request body")
    assert missing == []
    assert (
        spec["paths"]["/v1/journeys/{journey_id}/stats"]["get"]["responses"]["200"]["content"]["application/json"][
            "example"
        ]["splits"][0]["arms"][1]["significant"]
        is False
    )
