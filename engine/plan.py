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

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

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
    schedule: str | None = None

    def matches_name(self, name: str) -> bool:
        """True when an event called ``name`` can trigger this journey."""
        return bool(self.event) and event_name_matches(self.event, name)


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
    customer_facing: bool = True
    timeout_s: float = 30.0
    retry: RetryPlan = RetryPlan()
    on_error: str = PARK


class ActivityNode(_Node):
    """Run a registered activity with ``with_`` as input (strings may be templates)."""

    kind: Literal["activity"] = "activity"
    activity: str
    with_: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = 30.0
    retry: RetryPlan = RetryPlan()
    on_error: str = PARK


class WaitNode(_Node):
    """Sleep for a fixed duration."""

    kind: Literal["wait"] = "wait"
    seconds: float


class WaitUntilNode(_Node):
    """Sleep until the next local ``time`` (HH:MM) strictly after now, on ``days`` if given."""

    kind: Literal["wait_until"] = "wait_until"
    time: str
    days: tuple[str, ...] | None = None


class WaitForNode(_Node):
    """Wait for a matching event or a timeout."""

    kind: Literal["wait_for"] = "wait_for"
    event: str
    when: str | None = None
    timeout_s: float
    on_event: str
    on_timeout: str


class BranchCase(_Frozen):
    """One case of a branch: where to go when ``when`` holds."""

    when: str
    target: str


class BranchNode(_Node):
    """First case whose rule holds wins; otherwise ``else_target``."""

    kind: Literal["branch"] = "branch"
    cases: tuple[BranchCase, ...]
    else_target: str


class SplitArm(_Frozen):
    """One arm of a split."""

    arm: str
    weight: float
    target: str


class SplitNode(_Node):
    """Sticky weighted A/B assignment."""

    kind: Literal["split"] = "split"
    arms: tuple[SplitArm, ...]


class TagNode(_Node):
    """Add and remove customer tags."""

    kind: Literal["tag"] = "tag"
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


class UpdateNode(_Node):
    """Set customer attributes from rules."""

    kind: Literal["update"] = "update"
    updates: dict[str, str]


class GotoNode(_Node):
    """Jump to ``next`` (the target)."""

    kind: Literal["goto"] = "goto"


class ExitNode(_Node):
    """End the enrollment (``exit_reason: exit_step``)."""

    kind: Literal["exit"] = "exit"
    reason: str | None = None


PlanNode = Annotated[
    SendNode
    | ActivityNode
    | WaitNode
    | WaitUntilNode
    | WaitForNode
    | BranchNode
    | SplitNode
    | TagNode
    | UpdateNode
    | GotoNode
    | ExitNode,
    Field(discriminator="kind"),
]

#: Node kinds that wait on the clock or for an event (a loop must contain one).
WAITING_KINDS = frozenset({"wait", "wait_until", "wait_for"})


def edges(node: PlanNode) -> list[str]:
    """Every node id (or reserved target) control can move to from ``node``."""
    if isinstance(node, WaitForNode):
        return [node.on_event, node.on_timeout]
    if isinstance(node, SendNode | ActivityNode):
        return [node.next, node.on_error]
    if isinstance(node, BranchNode):
        return [*(c.target for c in node.cases), node.else_target]
    if isinstance(node, SplitNode):
        return [a.target for a in node.arms]
    if isinstance(node, ExitNode):
        return [EXIT]
    return [node.next]


class ReentryPlan(_Frozen):
    """``once``, ``after_exit`` or ``cooldown`` (with its length)."""

    mode: Literal["once", "after_exit", "cooldown"] = "after_exit"
    cooldown_s: float | None = None


class MatcherPlan(_Frozen):
    """An event pattern plus optional rule (``exit_when`` entries)."""

    event: str
    when: str | None = None


class GoalPlan(MatcherPlan):
    """Conversion event, window from entry, and whether converting ends the enrollment."""

    within_s: float | None = None
    exit: bool = True


class QuietHoursPlan(_Frozen):
    """Quiet hours (local HH:MM) and what to do in them."""

    start: str
    end: str
    action: str = "defer"


class CapPlan(_Frozen):
    """At most ``max`` sends per ``per_s`` seconds."""

    max: int
    per_s: float


class PolicyPlan(_Frozen):
    """Delivery policy for proactive customer messages."""

    quiet_hours: QuietHoursPlan | None = None
    frequency_caps: tuple[CapPlan, ...] = ()
    on_capped: str = "skip"
    priority: int = 5


class JourneyPlan(_Frozen):
    """One compiled version of a journey."""

    schema_version: int = PLAN_SCHEMA
    journey_id: str
    name: str
    timezone: str
    category: str = "marketing"
    strict: bool = True
    trigger: TriggerPlan
    audience: str | None = None
    reentry: ReentryPlan = ReentryPlan()
    goal: GoalPlan | None = None
    exit_when: tuple[MatcherPlan, ...] = ()
    policy: PolicyPlan | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    start: str
    nodes: tuple[PlanNode, ...]
    plan_hash: str = ""
    _by_id: dict[str, Any] = PrivateAttr(default_factory=dict)

    def listens(self) -> list[str]:
        """Event patterns an enrollment of this plan can react to once it runs."""
        patterns = {m.event for m in self.exit_when}
        if self.goal is not None:
            patterns.add(self.goal.event)
        patterns.update(n.event for n in self.nodes if isinstance(n, WaitForNode))
        return sorted(patterns)

    def model_post_init(self, context: Any, /) -> None:
        """Index nodes by id once; the interpreter looks them up on every step."""
        self._by_id = {n.id: n for n in self.nodes}

    def node(self, node_id: str) -> PlanNode:
        """The node with this id (raises KeyError if absent)."""
        return self._by_id[node_id]

    def with_hash(self) -> JourneyPlan:
        """Return a copy stamped with the sha256 of its canonical JSON."""
        body = self.model_dump(mode="json", exclude={"plan_hash"})
        digest = hashlib.sha256(
            json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
        ).hexdigest()
        return self.model_copy(update={"plan_hash": digest})
