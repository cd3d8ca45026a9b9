"""Read-only evaluation contexts and the names rules may use."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
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


_SCALARS = frozenset({str, int, float, bool, type(None)})


class ReadOnlyView(Mapping[str, Any]):
    """A read-only mapping over caller data that freezes values only as they are read.

    ``freeze`` copies everything up front; a rule usually reads two or three fields of
    a large profile or event, so copying was most of the cost of evaluating it. What the
    rule reads is frozen the same way (dicts viewed read-only, lists as tuples); the
    underlying data is never handed out.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[Any, Any]) -> None:
        self._data = data

    def __getitem__(self, key: Any) -> Any:
        return read_only(self._data[key])

    def get(self, key: Any, default: Any = None) -> Any:
        """The frozen value of ``key``, or ``default``."""
        value = self._data.get(key, _MISSING)
        return default if value is _MISSING else read_only(value)

    def __iter__(self) -> Iterator[str]:
        return (str(k) for k in self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return f"ReadOnlyView({self._data!r})"


_MISSING = object()


def read_only(value: Any) -> Any:
    """Like ``freeze``, but lazy for mappings: a ``ReadOnlyView`` instead of a deep copy."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, ReadOnlyView):
        return value
    if isinstance(value, Mapping):
        return ReadOnlyView(value)
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(read_only(v) for v in value)
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
