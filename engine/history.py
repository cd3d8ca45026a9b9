"""The customer's event history as rules see it: ``count_events``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any

from engine.durations import parse_duration
from engine.store import Store
from rules import RuleError, compile_rule
from rules.errors import RuleEvaluationError


@lru_cache(maxsize=1024)
def _where_rule(source: str) -> Any:
    return compile_rule(source, names={"event"})


def event_counter(store: Store, customer_id: str, now: datetime) -> Callable[[str, str, Any], int]:
    """``count_events(name, within="24h", where=None)`` over the customer's stored events.

    The window ends at ``now`` (the evaluation's clock) and includes the event being
    evaluated, which is stored before it is routed (journey-dsl §6a.9).
    """

    def count(name: str, within: str = "24h", where: Any = None) -> int:
        try:
            window = parse_duration(within)
        except ValueError as exc:
            raise RuleEvaluationError(f"count_events: {exc}", expression=str(within)) from exc
        events = store.count_events(customer_id, str(name), since=now - window, until=now)
        if where is None:
            return len(events)
        try:
            rule = _where_rule(str(where))
        except RuleError as exc:
            raise RuleEvaluationError(f"count_events where: {exc.message}", expression=str(where)) from exc
        return sum(1 for ev in events if rule.test({"event": ev}))

    return count
