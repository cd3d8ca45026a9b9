"""SQL data access: journeys, customers, events, enrollments, message log.

Synchronous on purpose (SQLAlchemy's sync engine works the same on SQLite and
PostgreSQL); async callers go through ``Store.offload``, which runs the call on the
store's own SQL threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, ParamSpec, TypeVar

from sqlalchemy import Connection, delete, func, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from engine import counters
from engine.counters import CountBatch, CounterKey, bump, send_label
from engine.db import insert_for
from engine.errors import JourneyStateError, NotFoundError
from engine.models import (
    ApiKeyRow,
    AuditRow,
    CounterRow,
    CustomerRow,
    EffectRow,
    EnrollmentRow,
    EventRow,
    JourneyRow,
    JourneyVersionRow,
    MessageRow,
    ScheduleRunRow,
)
from engine.plan import JourneyPlan
from engine.statements import Executor, statements_for

log = logging.getLogger("journeys.store")

P = ParamSpec("P")
R = TypeVar("R")
#: SQL threads per process on PostgreSQL, whose server runs statements side by side.
SERVER_DB_THREADS = 8


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def aware(ts: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything we store is UTC."""
    if ts is None or ts.tzinfo is not None:
        return ts
    return ts.replace(tzinfo=UTC)


class Store:
    """All SQL reads and writes of Journeys.

    Args:
        engine: A SQLAlchemy engine whose schema exists (see ``engine.db.make_engine``).
        threads: Threads that run ``offload``-ed calls. Default: one on SQLite, whose one
            writer at a time makes more threads queue on its file lock while they contend
            for the GIL (a busy worker spent twice the CPU per call with six, and waited 5x
            longer: bench/RESULTS.md); ``SERVER_DB_THREADS`` on PostgreSQL.
    """

    def __init__(self, engine: Engine, *, threads: int | None = None) -> None:
        self.engine = engine
        if threads is None:
            threads = 1 if engine.dialect.name == "sqlite" else SERVER_DB_THREADS
        # Its own threads, not the event loop's default executor: that one also resolves
        # host names, and a slow DNS answer must not hold up the database (or the reverse).
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sql")

    async def offload(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a blocking call that uses the database on the store's SQL threads.

        Like ``asyncio.to_thread`` (the caller's context variables go along), on the
        store's executor.
        """
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        """Stop the SQL threads (after the calls under way) and close the connections."""
        self._executor.shutdown(wait=True)
        self.engine.dispose()

    def _session(self) -> Session:
        # Rows outlive their session (they are returned to callers), so never expire them.
        return Session(self.engine, expire_on_commit=False)

    def _connect(self) -> Connection:
        """A Core connection for the hot path's prebuilt statements (``engine.statements``)."""
        return self.engine.connect()

    # -- journeys -----------------------------------------------------------------

    def create_version(self, *, yaml_text: str, plan: JourneyPlan, author: str | None) -> tuple[JourneyRow, int]:
        """Store a new version of a journey (creating the journey on first use).

        Returns:
            The journey row and the new version number.

        Raises:
            JourneyStateError: The journey is archived.
        """
        now = utcnow()
        with self._session() as s:
            row = s.get(JourneyRow, plan.journey_id, with_for_update=True)
            if row is None:
                row = JourneyRow(id=plan.journey_id, name=plan.name, created_at=now, updated_at=now)
            elif row.status == "archived":
                raise JourneyStateError(
                    f"journey {plan.journey_id!r} is archived", current="archived", requested="new version"
                )
            row.latest_version += 1
            row.name = plan.name
            row.updated_at = now
            version = row.latest_version
            s.add(row)
            s.add(
                JourneyVersionRow(
                    journey_id=plan.journey_id,
                    version=version,
                    yaml=yaml_text,
                    plan=plan.model_dump(mode="json"),
                    plan_hash=plan.plan_hash,
                    author=author,
                    created_at=now,
                )
            )
            s.commit()
            s.refresh(row)
            return row, version

    def get_journey(self, journey_id: str) -> JourneyRow:
        """The journey row.

        Raises:
            NotFoundError: No such journey.
        """
        with self._session() as s:
            row = s.get(JourneyRow, journey_id)
            if row is None:
                raise NotFoundError("journey", journey_id)
            return row

    def list_journeys(self) -> list[JourneyRow]:
        """Every journey, by id."""
        with self._session() as s:
            return list(s.exec(select(JourneyRow).order_by(col(JourneyRow.id))))

    def get_version(self, journey_id: str, version: int) -> JourneyVersionRow:
        """One stored version.

        Raises:
            NotFoundError: No such journey or version.
        """
        with self._session() as s:
            row = s.exec(
                select(JourneyVersionRow).where(
                    JourneyVersionRow.journey_id == journey_id, JourneyVersionRow.version == version
                )
            ).first()
            if row is None:
                raise NotFoundError("journey version", f"{journey_id}@{version}")
            return row

    def activate(self, journey_id: str, version: int | None = None) -> JourneyRow:
        """Make a version active (default: the latest) and start admitting customers.

        Raises:
            NotFoundError: No such journey or version.
            JourneyStateError: The journey is archived.
        """
        with self._session() as s:
            row = s.get(JourneyRow, journey_id, with_for_update=True)
            if row is None:
                raise NotFoundError("journey", journey_id)
            if row.status == "archived":
                raise JourneyStateError(
                    f"journey {journey_id!r} is archived and cannot be activated",
                    current="archived",
                    requested="active",
                )
            chosen = version if version is not None else row.latest_version
            exists = s.exec(
                select(JourneyVersionRow.id).where(
                    JourneyVersionRow.journey_id == journey_id, JourneyVersionRow.version == chosen
                )
            ).first()
            if exists is None:
                raise NotFoundError("journey version", f"{journey_id}@{chosen}")
            row.status = "active"
            row.active_version = chosen
            row.updated_at = utcnow()
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def set_lifecycle(self, journey_id: str, *, status: str, on_resume: str | None = None,
                      stale_after_s: float | None = None) -> JourneyRow:  # fmt: skip
        """Pause, resume or archive a journey (the transition rules live in ``engine.lifecycle``).

        Raises:
            NotFoundError: No such journey.
        """
        with self._session() as s:
            row = s.get(JourneyRow, journey_id, with_for_update=True)
            if row is None:
                raise NotFoundError("journey", journey_id)
            row.status = status
            row.on_resume = on_resume if status == "paused" else None
            row.stale_after_s = stale_after_s if status == "paused" else None
            row.paused_at = utcnow() if status == "paused" else None
            row.updated_at = utcnow()
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def customers_after(self, cursor: str, limit: int) -> list[dict[str, Any]]:
        """Profiles with ids after ``cursor``, in id order (for paging through everyone)."""
        with self._session() as s:
            rows = s.exec(
                select(CustomerRow).where(CustomerRow.id > cursor).order_by(col(CustomerRow.id)).limit(limit)
            ).all()
            return [dict(r.profile) for r in rows]

    def entry_summary(self, journey_id: str, customer_ids: list[str]) -> dict[str, tuple[datetime | None, bool]]:
        """Per customer: last entry into the journey and whether an enrollment is running."""
        if not customer_ids:
            return {}
        with self._session() as s:
            rows = s.exec(
                select(EnrollmentRow.customer_id, EnrollmentRow.entered_at, EnrollmentRow.status).where(
                    EnrollmentRow.journey_id == journey_id, col(EnrollmentRow.customer_id).in_(customer_ids)
                )
            ).all()
        out: dict[str, tuple[datetime | None, bool]] = {}
        for customer_id, entered_at, status in rows:
            last, running = out.get(customer_id, (None, False))
            entered = aware(entered_at)
            out[customer_id] = (max(filter(None, (last, entered)), default=None), running or status != "exited")
        return out

    def record_schedule_run(self, row: ScheduleRunRow) -> None:
        """Store the counts of a scheduled run."""
        with self._session() as s:
            s.add(row)
            s.commit()

    def schedule_runs(self, journey_id: str) -> list[ScheduleRunRow]:
        """Runs of a scheduled journey, oldest first."""
        with self._session() as s:
            return list(
                s.exec(
                    select(ScheduleRunRow)
                    .where(ScheduleRunRow.journey_id == journey_id)
                    .order_by(col(ScheduleRunRow.run_at))
                )
            )

    def active_version_plan(self, journey_id: str) -> tuple[int, JourneyPlan] | None:
        """The active version number and plan of a journey, if it has one."""
        row = self.get_journey(journey_id)
        if row.active_version is None:
            return None
        version = self.get_version(journey_id, row.active_version)
        return version.version, JourneyPlan.model_validate(version.plan)

    def running_workflows(self, journey_id: str) -> list[tuple[str, str]]:
        """(workflow id, customer id) of every enrollment of the journey that has not exited."""
        with self._session() as s:
            rows = s.exec(
                select(EnrollmentRow.workflow_id, EnrollmentRow.customer_id).where(
                    EnrollmentRow.journey_id == journey_id, EnrollmentRow.status != "exited"
                )
            ).all()
            return [(w, c) for w, c in rows]

    def active_plans(self) -> list[tuple[int, JourneyPlan]]:
        """Plans of every active journey, with their version numbers."""
        with self._session() as s:
            rows = s.exec(
                select(JourneyVersionRow)
                .join(JourneyRow, col(JourneyRow.id) == col(JourneyVersionRow.journey_id))
                .where(JourneyRow.status == "active", JourneyRow.active_version == JourneyVersionRow.version)
            ).all()
            return [(r.version, JourneyPlan.model_validate(r.plan)) for r in rows]

    def journey_status(self, journey_id: str) -> str | None:
        """Lifecycle status of a journey, or None if it does not exist."""
        with self._session() as s:
            row = s.get(JourneyRow, journey_id)
            return row.status if row else None

    # -- customers ----------------------------------------------------------------

    def put_customer(self, customer_id: str, profile: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a profile. Returns the stored profile (with ``id``)."""
        now = utcnow()
        doc = {**profile, "id": customer_id}
        table = CustomerRow.__table__  # type: ignore[attr-defined]
        with self._session() as s:
            # One upsert statement: two concurrent PUTs of a new customer must not collide.
            stmt = insert_for(s.get_bind().dialect.name)(table).values(
                id=customer_id, profile=doc, created_at=now, updated_at=now
            )
            s.execute(stmt.on_conflict_do_update(index_elements=["id"], set_={"profile": doc, "updated_at": now}))
            s.commit()
        return doc

    def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        """The profile, or None."""
        with self._session() as s:
            row = s.get(CustomerRow, customer_id)
            return dict(row.profile) if row else None

    def ensure_customer(self, customer_id: str) -> dict[str, Any]:
        """The profile, creating one with just the id when the customer is new."""
        with self._session() as s:
            profile = _ensure_customer(s, customer_id)
            s.commit()
            return profile

    # -- events -------------------------------------------------------------------

    def insert_events(self, events: Sequence[EventRow]) -> list[bool]:
        """Durably record events. Returns, per event, True if new, False if a duplicate id."""
        with self._connect() as conn:
            results = [_insert_event(conn, ev) for ev in events]
            conn.commit()
        return results

    def mark_dispatched(self, event_ids: Sequence[str]) -> None:
        """Record that routing finished for these events."""
        if not event_ids:
            return
        with self._connect() as conn:
            conn.execute(statements_for(conn).mark_dispatched, {"w_ids": list(event_ids), "dispatched_at": utcnow()})
            conn.commit()

    def undispatched_events(self, *, received_before: datetime, limit: int = 500) -> list[EventRow]:
        """Accepted events whose routing never finished (the API stopped mid-way)."""
        with self._session() as s:
            return list(
                s.exec(
                    select(EventRow)
                    .where(col(EventRow.dispatched_at).is_(None), EventRow.received_at < received_before)
                    .order_by(col(EventRow.received_at))
                    .limit(limit)
                )
            )

    def count_events(self, customer_id: str, name: str, *, since: datetime, until: datetime,
                     limit: int = 10_000) -> list[dict[str, Any]]:  # fmt: skip
        """A customer's events called ``name`` (or ``prefix*``) with since < timestamp <= until.

        Returns each event's properties (plus ``name`` and ``timestamp``), newest first,
        at most ``limit`` of them: the count is bounded, as rules must be cheap.
        """
        q = select(EventRow).where(
            EventRow.customer_id == customer_id, EventRow.timestamp > since, EventRow.timestamp <= until
        )
        if name.endswith("*"):
            q = q.where(col(EventRow.name).startswith(name[:-1]))
        else:
            q = q.where(EventRow.name == name)
        with self._session() as s:
            rows = s.exec(q.order_by(col(EventRow.timestamp).desc()).limit(limit)).all()
            return [{**r.properties, "name": r.name, "timestamp": aware(r.timestamp).isoformat()} for r in rows]  # type: ignore[union-attr]

    def purge_events(self, *, older_than: datetime) -> int:
        """Delete routed events older than the retention horizon. Returns how many."""
        with self._session() as s:
            result = s.exec(
                delete(EventRow).where(col(EventRow.timestamp) < older_than, col(EventRow.dispatched_at).is_not(None))  # type: ignore[call-overload]
            )
            s.commit()
            return int(result.rowcount or 0)

    def apply_once(self, key: str, customer_id: str, compute: Any) -> dict[str, Any]:
        """Run ``compute(profile) -> changes`` and merge the changes into the profile, once per ``key``.

        A repeated call with the same key returns the first call's changes and touches
        nothing. The profile read, the write and the record commit together.
        """
        now = utcnow()
        with self._session() as s:
            done = s.get(EffectRow, key)
            if done is not None:
                return dict(done.result)
            row = s.get(CustomerRow, customer_id, with_for_update=True)
            if row is None:
                row = CustomerRow(id=customer_id, profile={"id": customer_id}, created_at=now, updated_at=now)
            changes = compute(dict(row.profile))
            row.profile = {**row.profile, **changes, "id": customer_id}
            row.updated_at = now
            s.add(row)
            s.add(EffectRow(key=key, result=changes, created_at=now))
            try:
                s.commit()
            except IntegrityError:  # a concurrent attempt with the same key won
                s.rollback()
                done = s.get(EffectRow, key)
                return dict(done.result) if done else changes
            return changes

    def update_customer(self, customer_id: str, change: Any) -> dict[str, Any]:
        """Apply ``change(profile) -> profile`` atomically (creating the profile if needed)."""
        now = utcnow()
        with self._session() as s:
            row = s.get(CustomerRow, customer_id, with_for_update=True)
            if row is None:
                row = CustomerRow(id=customer_id, profile={"id": customer_id}, created_at=now, updated_at=now)
            profile = change(dict(row.profile))
            profile["id"] = customer_id
            row.profile = profile
            row.updated_at = now
            s.add(row)
            s.commit()
            return profile

    # -- enrollments --------------------------------------------------------------

    def last_entry(self, journey_id: str, customer_id: str, key: str | None, *,
                   excluding: str | None = None) -> datetime | None:  # fmt: skip
        """When this customer (and key) last entered this journey, if ever."""
        q = select(EnrollmentRow.entered_at).where(
            EnrollmentRow.journey_id == journey_id, EnrollmentRow.customer_id == customer_id
        )
        q = q.where(col(EnrollmentRow.key).is_(None)) if key is None else q.where(EnrollmentRow.key == key)
        if excluding:
            q = q.where(EnrollmentRow.enrollment_id != excluding)
        with self._session() as s:
            found = s.exec(q.order_by(col(EnrollmentRow.entered_at).desc()).limit(1)).first()
            return aware(found)

    def admit(self, row: EnrollmentRow, entered: EventRow | None = None) -> bool | None:
        """Record an admitted enrollment, with the event that says so in the same transaction.

        Returns:
            True when recorded now (and ``entered`` with it), None when this run recorded
            it before (a retried admission), False when another enrollment holds this
            trigger event.
        """
        table = EnrollmentRow.__table__  # type: ignore[attr-defined]
        with self._connect() as conn:
            # One insert that claims both the enrollment id and the trigger event.
            if conn.execute(statements_for(conn).admit_enrollment, _values(row, table)).first() is None:
                found = select(table.c.enrollment_id).where(table.c.enrollment_id == row.enrollment_id)
                return None if conn.execute(found).first() is not None else False
            bump(conn, [(CounterKey(row.journey_id, row.version, counters.ENROLLED), 1)])
            if entered is not None:
                _insert_event(conn, entered)
            conn.commit()
            return True

    def record_end(self, end: EnrollmentEnd) -> bool:
        """Record how an enrollment ended (or that it needs attention), with its path and arm.

        Its last step counts are added in the same transaction, once per their key, and so
        is its ``exited`` event when the status is ``exited``. Only the first exit moves the
        exit counter.

        Returns:
            Whether ``exited`` was stored now (False: not given, or stored before).
        """
        with self._connect() as conn:
            stored = _record_end(conn, end)
            conn.commit()
            return stored

    def mark_converted(self, enrollment_id: str, *, at: datetime, arms: dict[str, str] | None = None) -> None:
        """Record an enrollment's goal conversion (first one wins), counted for it and its split arms."""
        table = EnrollmentRow.__table__  # type: ignore[attr-defined]
        stmt = (
            update(table)
            .where(table.c.enrollment_id == enrollment_id, table.c.converted_at.is_(None))
            .values(converted_at=at)
            .returning(table.c.journey_id, table.c.version)
        )
        with self._session() as s:
            changed = s.execute(stmt).first()
            if changed is not None:
                j, v = changed.journey_id, changed.version
                per_arm = [(CounterKey(j, v, counters.ARM_CONVERTED, k, a), 1) for k, a in (arms or {}).items()]
                bump(s, [(CounterKey(j, v, counters.CONVERTED), 1), *per_arm])
            s.commit()

    def apply_tally(self, counts: CountBatch) -> bool:
        """Add an enrollment's step counts once per their key (a retried flush adds nothing).

        Returns:
            False when this key was applied before.
        """
        with self._connect() as conn:
            applied = _claim_counts(conn, counts)
            conn.commit()
            return applied

    def counters(self, journey_id: str, version: int | None = None) -> list[CounterRow]:
        """Every counter of a journey (of one version, if given)."""
        q = select(CounterRow).where(CounterRow.journey_id == journey_id)
        if version is not None:
            q = q.where(CounterRow.version == version)
        with self._session() as s:
            return list(s.exec(q))

    def get_enrollment(self, enrollment_id: str) -> EnrollmentRow:
        """One enrollment.

        Raises:
            NotFoundError: No such enrollment.
        """
        with self._session() as s:
            row = s.get(EnrollmentRow, enrollment_id)
            if row is None:
                raise NotFoundError("enrollment", enrollment_id)
            return row

    def has_enrollment(self, enrollment_id: str) -> bool:
        """Whether this enrollment was recorded (admitted)."""
        table = EnrollmentRow.__table__  # type: ignore[attr-defined]
        with self._connect() as conn:
            found = select(table.c.enrollment_id).where(table.c.enrollment_id == enrollment_id)
            return conn.execute(found).first() is not None

    def list_enrollments(
        self,
        *,
        journey_id: str | None = None,
        customer_id: str | None = None,
        status: str | None = None,
        limit: int = 1000,
    ) -> list[EnrollmentRow]:
        """Enrollments, newest first, filtered."""
        q = select(EnrollmentRow)
        if journey_id:
            q = q.where(EnrollmentRow.journey_id == journey_id)
        if customer_id:
            q = q.where(EnrollmentRow.customer_id == customer_id)
        if status:
            q = q.where(EnrollmentRow.status == status)
        with self._session() as s:
            return list(s.exec(q.order_by(col(EnrollmentRow.entered_at).desc()).limit(limit)))

    # -- keys and audit -------------------------------------------------------------

    def add_key(self, row: ApiKeyRow) -> None:
        """Store a new API key (its secret hash)."""
        with self._session() as s:
            s.add(row)
            s.commit()

    def get_key(self, key_id: str) -> ApiKeyRow | None:
        """An API key by id."""
        with self._session() as s:
            return s.get(ApiKeyRow, key_id)

    def list_keys(self) -> list[ApiKeyRow]:
        """Every key, newest first."""
        with self._session() as s:
            return list(s.exec(select(ApiKeyRow).order_by(col(ApiKeyRow.created_at).desc())))

    def revoke_key(self, key_id: str) -> ApiKeyRow:
        """Revoke a key (it stops working at once).

        Raises:
            NotFoundError: No such key.
        """
        with self._session() as s:
            row = s.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFoundError("api key", key_id)
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                s.add(row)
                s.commit()
            return row

    def audit(self, *, actor: str, action: str, target: str, details: dict[str, Any] | None = None) -> None:
        """Append one entry to the audit log."""
        with self._session() as s:
            s.add(AuditRow(at=utcnow(), actor=actor, action=action, target=target, details=details or {}))
            s.commit()

    def list_audit(self, *, target: str | None = None, limit: int = 200) -> list[AuditRow]:
        """Audit entries, newest first."""
        q = select(AuditRow)
        if target:
            q = q.where(AuditRow.target == target)
        with self._session() as s:
            return list(s.exec(q.order_by(col(AuditRow.id).desc()).limit(limit)))

    # -- message log --------------------------------------------------------------

    def begin_send(self, row: MessageRow, *, counts: CountBatch | None = None) -> MessageRow | None:
        """Claim a send attempt. Returns the earlier attempt when this key already has one.

        ``counts`` (step counts the send carries) are added in the same transaction, once per
        their key, whether or not the claim is new.
        """
        with self._connect() as conn:
            earlier = _claim_send(conn, row)
            if counts is not None:
                _claim_counts(conn, counts)
            conn.commit()
            return earlier

    def open_send(self, key: str, customer_id: str, *, begin: MessageRow | None = None,
                  counts: CountBatch | None = None,
                  claim_if: Callable[[dict[str, Any]], bool] | None = None) -> OpenedSend:  # fmt: skip
        """Everything a send needs before it delivers, in one transaction.

        Reads the earlier attempt under ``key`` and the customer's profile (created when new);
        claims ``begin`` (an attempt under ``key``) when given, and adds ``counts`` once with
        it.

        Args:
            key: The send's idempotency key.
            customer_id: Whose profile to read.
            begin: The attempt to claim.
            counts: Step counts added with the claim (once per their key).
            claim_if: Claim only if this holds for the profile just read (a send's policy
                checks on the profile); otherwise nothing is written and the caller decides.
        """
        with self._connect() as conn:
            profile = _ensure_customer(conn, customer_id)
            claimed = begin is not None and (claim_if is None or claim_if(profile))
            if claimed:
                assert begin is not None
                earlier = _claim_send(conn, begin)
                if counts is not None:
                    _claim_counts(conn, counts)
            else:
                earlier = _message(conn, key)
            conn.commit()
            return OpenedSend(earlier, profile, claimed)

    def due_confirmations(self, now: datetime, *, limit: int) -> list[MessageRow]:
        """Tasks waiting for confirmation whose next check is due, the longest due first."""
        with self._session() as s:
            q = select(MessageRow).where(col(MessageRow.next_check_at) <= now,
                                         MessageRow.status == "pending_confirmation")  # fmt: skip
            return list(s.exec(q.order_by(col(MessageRow.next_check_at)).limit(limit)))

    def waiting_confirmations(self) -> int:
        """How many tasks wait for confirmation with a check scheduled."""
        with self._session() as s:
            q = select(func.count()).select_from(MessageRow).where(col(MessageRow.next_check_at).is_not(None))
            return int(s.exec(q).one())

    def get_send(self, idempotency_key: str) -> MessageRow | None:
        """The send attempt recorded under this key, if any."""
        with self._session() as s:
            return _message(s, idempotency_key)

    def claimed_msgids(self, customer_id: str, channel: str, *, excluding: str) -> set[str]:
        """WeCom msgids that other send attempts to this customer on this channel recorded."""
        with self._session() as s:
            rows = s.exec(
                select(MessageRow).where(
                    MessageRow.customer_id == customer_id,
                    MessageRow.channel == channel,
                    MessageRow.idempotency_key != excluding,
                )
            ).all()
        return {str(r.response["msgid"]) for r in rows if r.response and r.response.get("msgid")}

    def finish_send(
        self,
        idempotency_key: str,
        *,
        status: str,
        reason: str | None,
        response: dict[str, Any] | None,
        content: dict[str, Any] | None = None,
        recipients: list[str] | None = None,
        sender: str | None = None,
        expect: tuple[str, str | None] | None = ("sending", None),
        event: EventRow | None = None,
        end: EnrollmentEnd | None = None,
    ) -> SendRecorded:
        """Record the outcome of a send attempt.

        ``expect`` is the (status, reason) the attempt is believed to have (by default, just
        begun): only a hint, which saves a read when right. ``event`` (the ``message.sent``
        the outcome announces) and ``end`` (the enrollment's end, when this was its last
        step) are stored in the same transaction: one commit for all three, and neither
        event can exist without the outcome it reports.
        """
        fields: dict[str, Any] = {"response": response}
        if content is not None:
            fields["content"] = content
        if recipients is not None:
            fields["recipients"] = recipients
        if sender is not None:
            fields["sender"] = sender
        return self._move_message(idempotency_key, status, reason, fields, expect=expect, event=event, end=end)

    def _move_message(self, key: str, status: str, reason: str | None, fields: dict[str, Any], *,
                      expect: tuple[str, str | None] | None = None, event: EventRow | None = None,
                      end: EnrollmentEnd | None = None) -> SendRecorded:  # fmt: skip
        """Change a message's status (and fields), moving it between send counters in the same transaction.

        The update is conditional on the status and reason it read, so two concurrent
        writers (an attempt that outlived its timeout and its retry) cannot both move the
        counters from the same old status; the loser reads again and moves from the new one.
        ``expect`` is the (status, reason) the caller believes the row has: the first try
        skips the read, and a wrong guess costs one read more. A message that comes to wait
        for confirmation is due for a check at once (the confirmation sweep); one that stops
        waiting is due for none. ``event`` and ``end`` are stored in the same transaction.
        """
        known = expect
        while True:
            with self._connect() as conn:
                if known is None:
                    known = _message_status(conn, key)
                    if known is None:
                        raise NotFoundError(f"no send attempt {key}")
                moved = _move_from(conn, key, known, status, reason, fields)
                if moved is None:
                    conn.rollback()
                    known = None
                    continue
                # In this order: the message's event before the end that follows it.
                recorded = SendRecorded(event=event is not None and _insert_event(conn, event),
                                        exited=end is not None and _record_end(conn, end))  # fmt: skip
                conn.commit()
                return recorded

    def settle_confirmations(self, decided: Sequence[DecidedTask],
                             rechecks: Sequence[tuple[str, datetime | None]] = ()) -> list[bool]:  # fmt: skip
        """Record a sweep's findings in one transaction: decided tasks with their events, and next checks.

        A decided task moves from ``pending_confirmation``, with its counters, and its event
        is stored in the same transaction, so a decided task never lacks its event. One that
        another writer decided first (the sweep and a legacy tracker can ask WeCom about the
        same task at once) keeps that outcome and its event: WeCom's ``sent`` and ``failed``
        are final, while a finding of ``not_confirmed`` may be older news. One that is gone
        is left out. One commit for a round's tasks, where one each was most of the sweep's SQL.

        Args:
            decided: The tasks WeCom has an outcome for.
            rechecks: (key, when to check again, or None for never) of tasks still waiting.

        Returns:
            For each decided task, whether its event was stored now.
        """
        stored: list[bool] = []
        counted: list[tuple[CounterKey, int]] = []  # the group's counter moves, bumped in one statement
        with self._connect() as conn:
            for task in decided:
                known: tuple[str, str | None] | None = ("pending_confirmation", None)
                moved = None
                while known is not None and known[0] not in DECIDED and moved is None:
                    moved = _move_from(conn, task.key, known, task.status, task.reason, {}, counted=counted)
                    if moved is None:  # moved meanwhile: read again and move from there
                        known = _message_status(conn, task.key)
                if moved is None:
                    if known is None:
                        log.warning("confirmed task %s is no longer in the message log; not recorded", task.key)
                    else:
                        log.info("task %s was decided %s meanwhile; %s not recorded", task.key, known[0], task.status)
                    stored.append(False)
                    continue
                stored.append(task.event is not None and _insert_event(conn, task.event))
            for key, at in rechecks:
                conn.execute(statements_for(conn).schedule_check, {"w_key": key, "next_check_at": at})
            bump(conn, counted)
            conn.commit()
        return stored

    def purge_effects(self, *, older_than: datetime) -> int:
        """Forget effect records (idempotency keys of updates and step counts) older than the horizon.

        A retry of the same effect comes within minutes or hours, never months later.
        """
        with self._session() as s:
            result = s.exec(delete(EffectRow).where(col(EffectRow.created_at) < older_than))  # type: ignore[call-overload]
            s.commit()
            return int(result.rowcount or 0)

    def purge_messages(self, *, older_than: datetime) -> int:
        """Delete message-log rows older than the retention horizon. Returns how many."""
        with self._session() as s:
            result = s.exec(delete(MessageRow).where(col(MessageRow.at) < older_than))  # type: ignore[call-overload]
            s.commit()
            return int(result.rowcount or 0)

    def list_messages(
        self,
        *,
        journey_id: str | None = None,
        customer_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        status: str | None = None,
        limit: int = 1000,
    ) -> list[MessageRow]:
        """Message log rows, oldest first, filtered by journey, customer, time and status."""
        q = select(MessageRow)
        if journey_id:
            q = q.where(MessageRow.journey_id == journey_id)
        if customer_id:
            q = q.where(MessageRow.customer_id == customer_id)
        if since:
            q = q.where(MessageRow.at >= since)
        if until:
            q = q.where(MessageRow.at < until)
        if status:
            q = q.where(MessageRow.status == status)
        with self._session() as s:
            return list(s.exec(q.order_by(col(MessageRow.at), col(MessageRow.id)).limit(limit)))


def _message(s: Executor, key: str) -> MessageRow | None:
    found = s.execute(statements_for(s).message_by_key, {"w_key": key}).first()
    return MessageRow(**found._mapping) if found is not None else None


def _message_status(conn: Connection, key: str) -> tuple[str, str | None] | None:
    """The (status, reason) of a message, None if there is none under ``key``."""
    row = _message(conn, key)
    return (row.status, row.reason) if row is not None else None


def _move_from(conn: Connection, key: str, known: tuple[str, str | None], status: str, reason: str | None,
               fields: dict[str, Any], *, counted: list[tuple[CounterKey, int]] | None = None) -> Any:  # fmt: skip
    """Move a message from ``known`` (status, reason) to ``status`` and its send counters along.

    Args:
        conn: The transaction.
        key: The send attempt's idempotency key.
        known: The (status, reason) the caller believes the message has.
        status: The new status.
        reason: The new reason.
        fields: Other columns to set.
        counted: Where to add the counter moves for the caller to bump with others (one
            statement for many messages); None bumps them now.

    Returns:
        The moved row's counter columns, or None (nothing written) when the message no
        longer has ``known``: another writer moved it first.
    """
    old_status, old_reason = known
    sql = statements_for(conn)
    stmt = sql.move_message_reason_null if old_reason is None else sql.move_message
    params = {"w_key": key, "w_status": old_status, "status": status, "reason": reason, **fields,
              "next_check_at": utcnow() if status == "pending_confirmation" else None}  # fmt: skip
    if old_reason is not None:
        params["w_reason"] = old_reason
    moved = conn.execute(stmt, params).first()
    if moved is not None:
        before = CounterKey(moved.journey_id, moved.version, counters.SEND, moved.step_id,
                            send_label(old_status, old_reason))  # fmt: skip
        changes = [(before, -1), (before._replace(label=send_label(status, reason)), 1)]
        if counted is None:
            bump(conn, changes)
        else:
            counted.extend(changes)
    return moved


#: The outcomes of a task WeCom has decided; a later finding does not replace them.
DECIDED = frozenset({"sent", "failed"})


@dataclass(frozen=True)
class DecidedTask:
    """A mass-send task WeCom has an outcome for, as ``Store.settle_confirmations`` records it.

    Attributes:
        key: The send attempt's idempotency key.
        status: ``sent`` or ``failed``.
        reason: Why it failed (None when sent).
        event: The ``message.sent`` / ``message.failed`` that announces it.
    """

    key: str
    status: str
    reason: str | None
    event: EventRow | None = None


def _send_counter(row: MessageRow) -> CounterKey:
    return CounterKey(row.journey_id, row.version, counters.SEND, row.step_id, send_label(row.status, row.reason))


@dataclass(frozen=True)
class EnrollmentEnd:
    """How an enrollment ended (or that it needs attention), as ``Store.record_end`` records it.

    Attributes:
        enrollment_id: The enrollment.
        status: ``exited`` or ``needs_attention``.
        exit_reason: Why it exited.
        at: When.
        path: The steps it walked (unchanged when None).
        arm: Its split arm (unchanged when None).
        counts: Its last step counts, added once per their key.
        exited: The ``journey.exited`` event, stored when the status is ``exited``.
    """

    enrollment_id: str
    status: str
    exit_reason: str | None
    at: datetime
    path: list[str] | None = None
    arm: str | None = None
    counts: CountBatch | None = None
    exited: EventRow | None = None


class OpenedSend(NamedTuple):
    """What ``Store.open_send`` found and did."""

    #: The attempt recorded under the key before this one (None: this is the first).
    earlier: MessageRow | None
    #: The customer's profile.
    profile: dict[str, Any]
    #: Whether ``begin`` was claimed, with its counts (an earlier attempt under the key, if
    #: any, is returned instead of a second one).
    claimed: bool


class SendRecorded(NamedTuple):
    """What ``Store.finish_send`` stored besides the outcome (False: not given, or stored before)."""

    event: bool
    exited: bool


def _record_end(conn: Connection, end: EnrollmentEnd) -> bool:
    """Record ``end`` in ``conn``'s transaction. Whether its ``exited`` event was stored now."""
    values: dict[str, Any] = {"w_id": end.enrollment_id, "status": end.status, "exit_reason": end.exit_reason,
                              "exited_at": end.at if end.status == "exited" else None}  # fmt: skip
    if end.path is not None:
        values["path"] = list(end.path)
    if end.arm is not None:
        values["arm"] = end.arm
    sql = statements_for(conn)
    # Only the first exit moves the counter (a conditional update: see the statement).
    stmt = sql.exit_enrollment if end.status == "exited" else sql.finish_enrollment
    changed = conn.execute(stmt, values).first()
    if changed is not None and end.status == "exited":
        exits = CounterKey(changed.journey_id, changed.version, counters.EXITED, "", end.exit_reason or "")
        bump(conn, [(exits, 1)])
    if end.counts is not None:
        _claim_counts(conn, end.counts)
    return end.exited is not None and end.status == "exited" and _insert_event(conn, end.exited)


def _values(row: Any, table: Any) -> dict[str, Any]:
    """A row object's column values for a Core insert (an unset autoincrement id left out)."""
    values = {c.name: getattr(row, c.name) for c in table.columns}
    return {name: v for name, v in values.items() if v is not None or not table.c[name].primary_key}


def _insert_event(conn: Connection, event: EventRow) -> bool:
    """Store one event in ``conn``'s transaction. False if its id was stored before.

    ON CONFLICT DO NOTHING instead of catching the unique violation: a rollback would also
    undo the transaction's earlier writes (a batch's events already reported as accepted).
    """
    table = EventRow.__table__  # type: ignore[attr-defined]
    return conn.execute(statements_for(conn).insert_event, _values(event, table)).first() is not None


def _ensure_customer(s: Executor, customer_id: str) -> dict[str, Any]:
    """The profile, inserted with just the id when the customer is new (in ``s``'s transaction)."""
    sql = statements_for(s)
    found = s.execute(sql.customer_profile, {"w_id": customer_id}).first()
    if found is not None:
        return dict(found.profile)
    now = utcnow()
    doc = {"id": customer_id}
    # A concurrent first sight of the same customer inserts nothing here and its profile wins.
    new = {"id": customer_id, "profile": doc, "created_at": now, "updated_at": now}
    if s.execute(sql.insert_customer, new).first() is None:
        return dict(s.execute(sql.customer_profile, {"w_id": customer_id}).scalar_one())
    return doc


def _claim_send(s: Executor, row: MessageRow) -> MessageRow | None:
    """Insert a send attempt and count it; the earlier attempt instead when its key has one."""
    table = MessageRow.__table__  # type: ignore[attr-defined]
    # Insert ... on conflict do nothing: the conflict needs no exception handling.
    if s.execute(statements_for(s).claim_message, _values(row, table)).first():
        bump(s, [(_send_counter(row), 1)])
        return None
    earlier = _message(s, row.idempotency_key)
    assert earlier is not None, "the insert conflicted on this key"
    return earlier


def _claim_counts(s: Executor, counts: CountBatch) -> bool:
    """Add ``counts`` unless their key was claimed before (in ``s``'s transaction). True if added."""
    # A key claimed before, or by a concurrent attempt, claims nothing and counts nothing.
    claim = {"key": counts.key, "result": {"counters": len(counts.changes)}, "created_at": utcnow()}
    if s.execute(statements_for(s).claim_effect, claim).first() is None:
        return False
    bump(s, counts.changes)
    return True
