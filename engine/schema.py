"""The JSON Schema of journey files, generated from the spec models.

Editors that speak yaml-language-server autocomplete and check journeys with it:
``# yaml-language-server: $schema=<path>/engine/schema/journey.schema.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.compiler import CHANNELS
from engine.registry import ActivityRegistry, load_builtin_activities
from engine.spec import JourneySpec

SCHEMA_PATH = Path(__file__).parent / "schema" / "journey.schema.json"
SCHEMA_ID = "https://journeys.invalid/schema/journey.schema.json"


def journey_json_schema(registry: ActivityRegistry | None = None) -> dict[str, Any]:
    """The schema, with channel and activity names offered for completion."""
    registry = registry or load_builtin_activities()
    schema = JourneySpec.model_json_schema(by_alias=True)
    defs = schema["$defs"]
    defs["SendSpec"]["properties"]["channel"] = {
        "enum": list(CHANNELS),
        "description": "wecom.customer (to the customer), wecom.app (staff), wecom.welcome, wecom.group_bot, webhook",
    }
    names = registry.names()
    defs["ActivityStep"]["properties"]["activity"] = {
        "anyOf": [{"enum": names}, {"type": "string", "pattern": r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"}],
        "description": "A registered activity: " + ", ".join(names),
    }
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def render_schema(registry: ActivityRegistry | None = None) -> str:
    """The schema as the committed file's text."""
    return json.dumps(journey_json_schema(registry), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
