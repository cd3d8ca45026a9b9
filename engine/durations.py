"""Durations (``30s``, ``1h30m``, ``2d``) and times of day (``"09:00"``)."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_duration(value: object, *, allow_zero: bool = False) -> timedelta:
    """Parse a journey duration such as ``30s``, ``15m``, ``1h30m``, ``2d`` or ``1w``.

    Integers are refused on purpose: ``wait: 30`` is ambiguous (seconds? minutes?).

    Args:
        value: The YAML value.
        allow_zero: Accept ``0s`` (offsets on a timeline); waits must be positive.

    Returns:
        The duration.

    Raises:
        ValueError: Not a duration string, or zero.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration; write it with a unit, e.g. 30s, 15m, 1h30m, 2d, 1w")
    text = value.strip().lower().replace(" ", "")
    match = _DURATION.match(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration; use e.g. 30s, 15m, 1h30m, 2d, 1w")
    seconds = sum(int(g) * mult for g, (_, mult) in zip(match.groups(), _UNITS, strict=True) if g)
    if seconds <= 0 and not allow_zero:
        raise ValueError(f"{value!r} must be longer than zero")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Render a duration in the journey syntax (``1h30m``)."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, mult in _UNITS:
        if seconds >= mult:
            parts.append(f"{seconds // mult}{unit}")
            seconds %= mult
    return "".join(parts)
