"""The JSON Schema of journey files, generated from the spec models.

Editors that speak yaml-language-server autocomplete and check journeys with it:
``# yaml-language-server: $schema=<path>/engine/schema/journey.schema.json``.

Activity names are offered for completion and each activity's ``with:`` is described by
its input model (any value may also be a ``{{ template }}``, checked after rendering).
The committed file lists the built-in activities only: the project cannot know which
plugins an installation has. ``journeys schema`` prints the schema of this installation,
plugins included, for editors of journeys that use them; any namespaced name is accepted
either way, because the compiler, not the schema, decides what is registered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.compiler import CHANNELS
from engine.registry import NAME_PATTERN, ActivityRegistry, builtin_registry
from engine.spec import JourneySpec

SCHEMA_PATH = Path(__file__).parent / "schema" / "journey.schema.json"
SCHEMA_ID = "https://journeys.invalid/schema/journey.schema.json"


#: A ``with:`` value may be a template whatever the field's type; it is checked after rendering.
_TEMPLATE = {"type": "string", "pattern": r"\{\{", "description": "a {{ template }}, checked after rendering"}


def journey_json_schema(registry: ActivityRegistry | None = None) -> dict[str, Any]:
    """The schema, with channel and activity names offered for completion.

    Args:
        registry: Activities to describe (default: the built-ins, as in the committed file).
    """
    registry = registry or builtin_registry()
    schema = JourneySpec.model_json_schema(by_alias=True)
    defs = schema["$defs"]
    defs["SendSpec"]["properties"]["channel"] = {
        "enum": list(CHANNELS),
        "description": "wecom.customer (to the customer), wecom.app (staff), wecom.welcome, wecom.group_bot, webhook",
    }
    names = registry.names()
    defs["ActivityStep"]["properties"]["activity"] = {
        "anyOf": [{"enum": names}, {"type": "string", "pattern": NAME_PATTERN.pattern}],
        "description": "A registered activity: " + ", ".join(names),
    }
    conditions = []
    for definition in registry.definitions():
        key = f"with:{definition.name}"
        input_schema = definition.input_model.model_json_schema(ref_template=f"#/$defs/{key}:{{model}}")
        for model, sub in input_schema.pop("$defs", {}).items():
            defs[f"{key}:{model}"] = _templatable(sub)
        defs[key] = {**_templatable(input_schema), "description": definition.description}
        conditions.append({
            "if": {"properties": {"activity": {"const": definition.name}}, "required": ["activity"]},
            "then": {"properties": {"with": {"$ref": f"#/$defs/{key}"}}},
        })  # fmt: skip
    if conditions:
        defs["ActivityStep"]["allOf"] = conditions
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def _templatable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every property (and array item) also accepting a template string."""
    out = dict(schema)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {name: _or_template(prop) for name, prop in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _or_template(out["items"])
    return out


def _or_template(prop: dict[str, Any]) -> dict[str, Any]:
    inner = _templatable(prop)
    # Title and description stay on the outside, where editors look for hover text.
    outer = {k: inner.pop(k) for k in ("title", "description", "default") if k in inner}
    return {**outer, "anyOf": [inner, _TEMPLATE]}


def render_schema(registry: ActivityRegistry | None = None) -> str:
    """The schema as the committed file's text (built-ins only unless ``registry`` is given)."""
    return json.dumps(journey_json_schema(registry), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
