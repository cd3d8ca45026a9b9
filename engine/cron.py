"""Five-field cron expressions (minute hour day-of-month month day-of-week), in a time zone.

Supports ``*``, lists (``1,15``), ranges (``1-5``), steps (``*/15``, ``8-18/2``) and
weekday names (``mon-fri``). As in classic cron, when both day-of-month and day-of-week
are restricted a day matches if either does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))


def _value(text: str, low: int, high: int, name: str) -> int:
    value = _NAMES.get(text.lower()) if name == "day of week" else None
    if value is None:
        if not text.isdigit():
            raise ValueError(f"{name}: {text!r} is not a number")
        value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is outside {low}-{high}")
    return value


def _field(text: str, low: int, high: int, name: str) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"{name}: bad step in {part!r}")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            start, end = _value(a, low, high, name), _value(b, low, high, name)
            if start > end:
                raise ValueError(f"{name}: range {base!r} runs backwards")
        else:
            start = _value(base, low, high, name)
            end = high if step else start
        values.update(range(start, end + 1, step or 1))
    if name == "day of week" and 7 in values:
        values.discard(7)
        values.add(0)  # 7 is Sunday too
    return frozenset(values), text != "*"


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def next_after(self, after: datetime, zone: ZoneInfo) -> datetime:
        """The first fire time strictly after ``after``, as an aware datetime in ``zone``."""
        local = after.astimezone(zone)
        day = local.date()
        for _ in range(366 * 5):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = datetime.combine(day, time(hour, minute), tzinfo=zone)
                        if candidate > local:
                            return candidate
            day += timedelta(days=1)
        raise ValueError("this cron expression never fires")


def parse_cron(expression: str) -> Cron:
    """Parse ``minute hour day-of-month month day-of-week``.

    Raises:
        ValueError: With the field and what is wrong.
    """
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(f"a schedule has 5 fields (minute hour day month weekday), got {len(parts)}: {expression!r}")
    parsed = [_field(text, low, high, name) for text, (name, low, high) in zip(parts, _FIELDS, strict=True)]
    return Cron(
        minutes=parsed[0][0], hours=parsed[1][0], days=parsed[2][0], months=parsed[3][0], weekdays=parsed[4][0],
        days_restricted=parsed[2][1], weekdays_restricted=parsed[4][1],
    )  # fmt: skip
