"""The hot path's SQL statements, built once per dialect and executed with parameters.

A statement built per call (``insert(table).values(**row)``) is traversed again for
SQLAlchemy's cache key every time, and an ORM session adds its own bookkeeping on top: a
send's claim cost ~1.0 ms of CPU that way against ~0.3 ms with these statements run on a
Core connection (bench/RESULTS.md). The SQL is the same; the values go in as parameters.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Insert, Select, Update, bindparam, select, update
from sqlmodel import Session

from engine.db import insert_for
from engine.models import CounterRow, CustomerRow, EffectRow, EnrollmentRow, EventRow, MessageRow

_MESSAGES = MessageRow.__table__  # type: ignore[attr-defined]
_CUSTOMERS = CustomerRow.__table__  # type: ignore[attr-defined]
_EFFECTS = EffectRow.__table__  # type: ignore[attr-defined]
_COUNTERS = CounterRow.__table__  # type: ignore[attr-defined]
_ENROLLMENTS = EnrollmentRow.__table__  # type: ignore[attr-defined]
_EVENTS = EventRow.__table__  # type: ignore[attr-defined]

#: What runs the statements: an ORM session or a Core connection.
Executor = Session | Connection


@dataclass(frozen=True)
class Statements:
    """One dialect's statements (see the module docstring)."""

    claim_message: Insert
    message_by_key: Select[Any]
    move_message: Update
    move_message_reason_null: Update
    customer_profile: Select[Any]
    insert_customer: Insert
    claim_effect: Insert
    bump_counters: Insert
    admit_enrollment: Insert
    finish_enrollment: Update
    exit_enrollment: Update
    insert_event: Insert
    mark_dispatched: Update
    schedule_check: Update


@functools.cache
def statements(dialect: str) -> Statements:
    """The statements for ``dialect`` (``sqlite`` or ``postgresql``), built on first use.

    Bound parameters of WHERE clauses are named ``w_*``: an UPDATE takes its SET columns
    from the other parameters, named after the columns.
    """
    insert = insert_for(dialect)
    m, e = _MESSAGES.c, _ENROLLMENTS.c
    bump = insert(_COUNTERS)
    move = update(_MESSAGES).where(m.idempotency_key == bindparam("w_key"), m.status == bindparam("w_status"))
    returning = (m.journey_id, m.version, m.step_id)
    finish = update(_ENROLLMENTS).where(e.enrollment_id == bindparam("w_id"))
    return Statements(
        claim_message=insert(_MESSAGES).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(m.id),
        message_by_key=select(_MESSAGES).where(m.idempotency_key == bindparam("w_key")),
        move_message=move.where(m.reason == bindparam("w_reason")).returning(*returning),
        move_message_reason_null=move.where(m.reason.is_(None)).returning(*returning),
        customer_profile=select(_CUSTOMERS.c.profile).where(_CUSTOMERS.c.id == bindparam("w_id")),
        insert_customer=insert(_CUSTOMERS).on_conflict_do_nothing(index_elements=["id"]).returning(_CUSTOMERS.c.id),
        claim_effect=insert(_EFFECTS).on_conflict_do_nothing(index_elements=["key"]).returning(_EFFECTS.c.key),
        bump_counters=bump.on_conflict_do_update(
            index_elements=["journey_id", "version", "metric", "step", "label"],
            set_={"value": _COUNTERS.c.value + bump.excluded.value},
        ),
        admit_enrollment=insert(_ENROLLMENTS).on_conflict_do_nothing().returning(e.enrollment_id),
        finish_enrollment=finish.returning(e.journey_id, e.version),
        # Only the first exit moves the counter: two concurrent attempts (a retried activity)
        # cannot both see "not exited yet".
        exit_enrollment=finish.where(e.status != "exited").returning(e.journey_id, e.version),
        insert_event=insert(_EVENTS).on_conflict_do_nothing(index_elements=["event_id"]).returning(_EVENTS.c.event_id),
        mark_dispatched=update(_EVENTS).where(_EVENTS.c.event_id.in_(bindparam("w_ids", expanding=True))),
        # Only while the task waits: a decided one is never checked again.
        schedule_check=update(_MESSAGES).where(
            m.idempotency_key == bindparam("w_key"), m.status == "pending_confirmation"
        ),  # fmt: skip
    )


def statements_for(executor: Executor) -> Statements:
    """The statements for the database a session or connection talks to."""
    bind = executor.get_bind() if isinstance(executor, Session) else executor
    return statements(bind.dialect.name)
