"""The curated, pure functions available to rules.

Every function here is deterministic given its arguments and the evaluation's ``now``
(taken from the context, never from the clock), so a rule gives the same answer when
an activity is retried or a workflow is replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from rules.errors import RuleEvaluationError


def _parse_ts(value: Any) -> datetime:
    """Accept a datetime, an ISO-8601 string or a UNIX timestamp (seconds)."""
    if isinstance(value, datetime):
        ts = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        ts = datetime.fromtimestamp(value, tz=UTC)
    elif isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"not a timestamp: {value!r}") from exc
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def contains_any(text: Any, needles: Iterable[Any]) -> bool:
    """True when ``text`` contains any of ``needles`` (None contains nothing)."""
    if text is None:
        return False
    haystack = str(text)
    return any(str(n) in haystack for n in needles)


def _lower(value: Any) -> Any:
    return None if value is None else str(value).lower()


def _upper(value: Any) -> Any:
    return None if value is None else str(value).upper()


_PURE: dict[str, Callable[..., Any]] = {
    "contains_any": contains_any,
    "len": len,
    "lower": _lower,
    "upper": _upper,
    "int": int,
    "float": float,
    "str": str,
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
}

#: Every function name a rule may call.
FUNCTION_NAMES: frozenset[str] = frozenset({*_PURE, "has_tag", "days_since", "hours_since", "count_events"})


def bind_functions(context: Mapping[str, Any]) -> dict[str, Callable[..., Any]]:
    """Return the function table for one evaluation, bound to its context.

    Args:
        context: The evaluation context. ``now`` (a datetime) drives the time helpers;
            ``customer.tags`` drives ``has_tag``; ``count_events`` (a callable) is
            supplied by the caller that owns the event history.

    Returns:
        Name to callable.
    """
    now = context.get("now")
    customer = context.get("customer") or {}

    def has_tag(tag: Any) -> bool:
        return str(tag) in (customer.get("tags") or ())

    def _since(ts: Any, unit_s: float) -> float:
        if ts is None:
            raise ValueError("days_since/hours_since got no timestamp")
        if not isinstance(now, datetime):
            raise RuleEvaluationError("this rule has no clock to compare with", expression="")
        return (now - _parse_ts(ts)).total_seconds() / unit_s

    def days_since(ts: Any) -> float:
        return _since(ts, 86400.0)

    def hours_since(ts: Any) -> float:
        return _since(ts, 3600.0)

    def count_events(name: str, within: str = "24h", where: Any = None) -> int:
        counter = context.get("count_events")
        if counter is None:
            raise ValueError("count_events is not available where this rule runs")
        return int(counter(name, within, where))

    return {
        **_PURE,
        "has_tag": has_tag,
        "days_since": days_since,
        "hours_since": hours_since,
        "count_events": count_events,
    }
