"""Read-only evaluation contexts and the names rules may use."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

#: Names a rule may reference, by where the rule appears. Functions are added separately.
RULE_NAMES: frozenset[str] = frozenset({"customer", "event", "trigger", "vars", "journey", "steps"})


def freeze(value: Any) -> Any:
    """Return a deep read-only copy of plain data.

    Dicts become ``MappingProxyType`` and lists/sets become tuples, so nothing a rule or
    template does can change the caller's data.

    Args:
        value: JSON-like data.

    Returns:
        The same data, immutable.
    """
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain JSON-friendly data from what ``freeze`` made (rule results leave this way)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


def suggest(name: str, known: Iterable[str]) -> str | None:
    """Return the known name closest to ``name``, if any is close enough to be a typo."""
    matches = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return matches[0] if matches else None
