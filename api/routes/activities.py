"""Journey activities this installation can run (built-ins and plugins)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import CallerDep, RuntimeDep
from engine.registry import load_activities

router = APIRouter(prefix="/v1/activities", tags=["activities"])


@router.get("")
async def list_activities(rt: RuntimeDep, _: CallerDep) -> list[dict[str, Any]]:
    """Every activity a journey may name, with its description, defaults and input JSON Schema."""
    registry = load_activities(rt.settings.journeys_activity_modules)
    return [d.describe() for d in registry.definitions()]
