"""Built-in journey activities, registered under the ``journeys`` and ``profile`` namespaces."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.registry import ActivityContext, journey_activity


class EmitEvent(BaseModel):
    """Input of ``journeys.emit_event``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:\-]+$")
    properties: dict[str, Any] = Field(default_factory=dict)


@journey_activity("journeys.emit_event", input=EmitEvent)
async def emit_event(inp: EmitEvent, ctx: ActivityContext) -> dict[str, Any]:
    """Submit an event for this customer, e.g. to start or advance another journey."""
    await ctx.emit(inp.name, inp.properties)
    return {"emitted": inp.name}


class IncrementAttribute(BaseModel):
    """Input of ``profile.increment``."""

    model_config = ConfigDict(extra="forbid")
    attribute: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    by: float = 1


@journey_activity("profile.increment", input=IncrementAttribute)
async def increment(inp: IncrementAttribute, ctx: ActivityContext) -> dict[str, Any]:
    """Add ``by`` to a numeric customer attribute (missing counts as 0)."""
    value = await ctx.services().increment_attribute(ctx.customer_id, inp.attribute, inp.by)
    return {"attribute": inp.attribute, "value": value}
