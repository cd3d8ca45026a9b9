"""``journeys activities``: every journey activity with its description and input JSON Schema."""

from __future__ import annotations

import json
from typing import Any

from engine.registry import ActivityDefinition, ActivityRegistry


def render_listing(registry: ActivityRegistry) -> str:
    """Human-readable listing: one block per activity, the input schema as one line of JSON."""
    blocks = [_block(d) for d in registry.definitions()]
    return "\n\n".join(blocks) + "\n" if blocks else "no activities registered\n"


def render_json(registry: ActivityRegistry) -> str:
    """The listing as ``GET /v1/activities`` returns it."""
    return json.dumps([d.describe() for d in registry.definitions()], ensure_ascii=False, indent=2) + "\n"


def _block(d: ActivityDefinition) -> str:
    info = d.describe()
    retry = info["retry"]
    lines = [
        f"{d.name}  {d.description}",
        f"  from: {d.origin}",
        f"  timeout: {_seconds(info['timeout_s'])}; retry: {retry['max_attempts']} attempts, first after "
        f"{_seconds(retry['initial_s'])}, x{retry['backoff']:g}, at most {_seconds(retry['max_interval_s'])} apart",
    ]
    schema = info["input_schema"]
    required = set(schema.get("required", []))
    for field, prop in schema.get("properties", {}).items():
        if field in required:
            note = "required"
        elif "default" in prop:
            note = f"default {json.dumps(prop['default'], ensure_ascii=False)}"
        else:
            note = "optional"
        about = f" - {prop['description']}" if prop.get("description") else ""
        lines.append(f"  with.{field}: {_type(prop)} ({note}){about}")
    lines.append("  input schema: " + json.dumps(schema, ensure_ascii=False, separators=(",", ":"), sort_keys=True))
    return "\n".join(lines)


def _type(prop: dict[str, Any]) -> str:
    if "type" in prop:
        return str(prop["type"])
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in prop:
            return " | ".join(_type(p) for p in prop[key])
    if "enum" in prop:
        return " | ".join(json.dumps(v, ensure_ascii=False) for v in prop["enum"])
    return "any"


def _seconds(value: float) -> str:
    return f"{value:g}s"
