"""Exact journey counters: increments that commit with the change they count.

Every counter write goes through :func:`bump` inside the caller's session, so a counter
can never disagree with the rows it summarises (a message's status, an enrollment's exit).
The upsert is one statement on both SQLite and PostgreSQL, so concurrent writers add up
instead of overwriting each other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from sqlalchemy import Connection, func, select
from sqlmodel import Session

from engine.models import EnrollmentRow, MessageRow
from engine.statements import Executor, statements_for

#: Metric names (the ``metric`` column).
ENROLLED = "enrollment.entered"
EXITED = "enrollment.exited"
CONVERTED = "enrollment.converted"
STEP_ENTERED = "step.entered"
STEP_COMPLETED = "step.completed"
SEND = "send"
ARM_ENROLLED = "arm.enrolled"
ARM_CONVERTED = "arm.converted"


class CounterKey(NamedTuple):
    """Which counter of a journey version."""

    journey_id: str
    version: int
    metric: str
    step: str = ""
    label: str = ""


class CountBatch(NamedTuple):
    """Counter increments applied at most once, under ``key`` (a retried write adds nothing)."""

    key: str
    changes: Sequence[tuple[CounterKey, int]]


def send_label(status: str, reason: str | None) -> str:
    """The counter label of a message-log row: ``status|reason``.

    A partial delivery's reason lists the recipients that failed; the counter keeps only
    ``partial`` so that labels stay few (the message log keeps the names).
    """
    if reason and reason.startswith("partial"):
        reason = "partial"
    return f"{status}|{reason or ''}"


def bump(session: Executor, changes: Iterable[tuple[CounterKey, int]]) -> None:
    """Add ``delta`` to each counter, creating it at zero first (in ``session``'s transaction)."""
    totals: Counter[CounterKey] = Counter()
    for key, delta in changes:
        totals[key] += delta
    rows = [{**key._asdict(), "value": delta} for key, delta in totals.items() if delta]
    if not rows:
        return
    # One statement for all rows (built once per dialect), in a fixed order: two
    # transactions bumping the same counters cannot lock them crosswise.
    session.execute(
        statements_for(session).bump_counters,
        sorted(rows, key=lambda r: (r["metric"], r["step"], r["label"], r["version"], r["journey_id"])),
    )


def backfill(conn: Connection) -> int:
    """Count what a database from before the counters already holds (enrollments and message log).

    Step counts and split arms cannot be rebuilt (their history was never kept), so those
    start from zero. Returns the number of counters written.
    """
    enrollments = EnrollmentRow.__table__  # type: ignore[attr-defined]
    messages = MessageRow.__table__  # type: ignore[attr-defined]
    e, m = enrollments.c, messages.c
    changes: list[tuple[CounterKey, int]] = []
    for j, v, n in conn.execute(select(e.journey_id, e.version, func.count()).group_by(e.journey_id, e.version)):
        changes.append((CounterKey(j, v, ENROLLED), n))
    exited = select(e.journey_id, e.version, e.exit_reason, func.count()).where(e.status == "exited")
    for j, v, reason, n in conn.execute(exited.group_by(e.journey_id, e.version, e.exit_reason)):
        changes.append((CounterKey(j, v, EXITED, "", reason or ""), n))
    converted = select(e.journey_id, e.version, func.count()).where(e.converted_at.is_not(None))
    for j, v, n in conn.execute(converted.group_by(e.journey_id, e.version)):
        changes.append((CounterKey(j, v, CONVERTED), n))
    sends = select(m.journey_id, m.version, m.step_id, m.status, m.reason, func.count())
    for j, v, step, status, reason, n in conn.execute(
        sends.group_by(m.journey_id, m.version, m.step_id, m.status, m.reason)
    ):
        changes.append((CounterKey(j, v, SEND, step, send_label(status, reason)), n))
    with Session(bind=conn) as session:
        bump(session, changes)
        session.flush()
    return len(changes)
