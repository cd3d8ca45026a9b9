"""Rule contexts for activities: the fresh profile, the enrollment's names and ``count_events``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.history import event_counter
from engine.store import Store
from workflows.messages import RuleContext


def rule_context(store: Store, rc: RuleContext, *, customer: dict[str, Any],
                 event: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Everything a rule or template of this enrollment can see."""
    now = datetime.fromisoformat(rc.now)
    ctx: dict[str, Any] = {
        "customer": customer,
        "trigger": rc.trigger.as_context(),
        "vars": rc.vars,
        "journey": rc.journey,
        "steps": rc.steps,
        "now": now,
        "count_events": event_counter(store, rc.customer_id, now),
    }
    if event is not None:
        ctx["event"] = event
    return ctx
