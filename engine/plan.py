"""The compiled, frozen journey plan: the workflow input contract.

A plan is plain data (no callables): rules and templates travel as source text and are
compiled (and cached) by the activities that evaluate them. The plan is frozen into each
enrollment's history, so a running enrollment keeps its version when the YAML changes.
Changing these models changes what old histories deserialize into: add optional fields
only, and bump ``PLAN_SCHEMA`` for anything else.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PLAN_SCHEMA = 1

#: Reserved targets: run past the last step, leave through an exit, park for an operator.
END = "$end"
EXIT = "$exit"
PARK = "$park"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RetryPlan(_Frozen):
    """Retry policy in seconds, ready for Temporal."""

    max_attempts: int = 5
    initial_s: float = 10.0
    backoff: float = 2.0
    max_interval_s: float = 600.0


class TriggerPlan(_Frozen):
    """Entry trigger: event name or ``prefix*`` and optional rules."""

    event: str
    when: str | None = None
    key: str | None = None

    def matches_name(self, name: str) -> bool:
        """True when an event called ``name`` can trigger this journey."""
        return event_name_matches(self.event, name)


def event_name_matches(pattern: str, name: str) -> bool:
    """Exact match, or prefix match when the pattern ends with ``*``."""
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


class _Node(_Frozen):
    id: str
    next: str = END


class SendNode(_Node):
    """Deliver one message. ``message`` holds channel fields whose strings are templates."""

    kind: Literal["send"] = "send"
    channel: str
    message: dict[str, Any]
    timeout_s: float = 30.0
    retry: RetryPlan = RetryPlan()
    on_error: str = PARK


class WaitNode(_Node):
    """Sleep for a fixed duration."""

    kind: Literal["wait"] = "wait"
    seconds: float


class WaitForNode(_Node):
    """Wait for a matching event or a timeout."""

    kind: Literal["wait_for"] = "wait_for"
    event: str
    when: str | None = None
    timeout_s: float
    on_event: str
    on_timeout: str


PlanNode = Annotated[SendNode | WaitNode | WaitForNode, Field(discriminator="kind")]


class JourneyPlan(_Frozen):
    """One compiled version of a journey."""

    schema_version: int = PLAN_SCHEMA
    journey_id: str
    name: str
    timezone: str
    category: str = "marketing"
    strict: bool = True
    trigger: TriggerPlan
    vars: dict[str, Any] = Field(default_factory=dict)
    start: str
    nodes: tuple[PlanNode, ...]
    plan_hash: str = ""

    def node(self, node_id: str) -> PlanNode:
        """The node with this id (raises KeyError if absent)."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def with_hash(self) -> JourneyPlan:
        """Return a copy stamped with the sha256 of its canonical JSON."""
        body = self.model_dump(mode="json", exclude={"plan_hash"})
        digest = hashlib.sha256(
            json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
        ).hexdigest()
        return self.model_copy(update={"plan_hash": digest})
