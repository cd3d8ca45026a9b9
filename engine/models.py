"""SQL tables (sqlmodel). SQLite by default, PostgreSQL in production."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class JourneyRow(SQLModel, table=True):
    """A journey and its lifecycle state."""

    __tablename__ = "journeys"

    id: str = Field(primary_key=True)
    name: str
    status: str = "draft"  # draft | active | paused | archived
    active_version: int | None = None
    latest_version: int = 0
    on_resume: str | None = None  # send_late | skip_stale, while paused
    stale_after_s: float | None = None
    paused_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class JourneyVersionRow(SQLModel, table=True):
    """One stored version of a journey: its YAML and compiled plan."""

    __tablename__ = "journey_versions"
    __table_args__ = (UniqueConstraint("journey_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: str = Field(index=True)
    version: int
    yaml: str = Field(sa_column=Column(Text, nullable=False))
    plan: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    plan_hash: str
    author: str | None = None
    created_at: datetime


class CustomerRow(SQLModel, table=True):
    """A customer profile: well-known fields plus free attributes, as one JSON document."""

    __tablename__ = "customers"

    id: str = Field(primary_key=True)
    profile: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime
    updated_at: datetime


class EventRow(SQLModel, table=True):
    """An accepted event.

    The unique id makes ingestion idempotent; ``dispatched_at`` stays null until routing
    finished, so a crash between the two is recovered.
    """

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_customer_name_ts", "customer_id", "name", "timestamp"),)

    event_id: str = Field(primary_key=True)
    customer_id: str
    name: str
    properties: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    timestamp: datetime
    received_at: datetime
    dispatched_at: datetime | None = Field(default=None, index=True)


class EnrollmentRow(SQLModel, table=True):
    """One admitted enrollment.

    Unique per (journey, trigger event): a re-dispatched event can never admit the same
    customer twice.
    """

    __tablename__ = "enrollments"
    __table_args__ = (UniqueConstraint("journey_id", "trigger_event_id"),)

    enrollment_id: str = Field(primary_key=True)
    workflow_id: str = Field(index=True)
    journey_id: str = Field(index=True)
    version: int
    customer_id: str = Field(index=True)
    key: str | None = None
    trigger_event_id: str
    status: str = "running"  # running | exited | needs_attention
    exit_reason: str | None = None
    entered_at: datetime
    exited_at: datetime | None = None
    converted_at: datetime | None = None
    arm: str | None = None
    path: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class ScheduleRunRow(SQLModel, table=True):
    """One run of a scheduled audience journey: how many customers it checked and enrolled."""

    __tablename__ = "schedule_runs"

    id: int | None = Field(default=None, primary_key=True)
    journey_id: str = Field(index=True)
    run_at: datetime
    checked: int
    enrolled: int
    finished_at: datetime


class ApiKeyRow(SQLModel, table=True):
    """An API key: only a hash of its secret is stored."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True)
    name: str
    role: str  # viewer | marketer | operator | admin
    secret_hash: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None


class AuditRow(SQLModel, table=True):
    """One operator or marketer action (append-only)."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    actor: str
    action: str
    target: str
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class EffectRow(SQLModel, table=True):
    """The recorded result of a side effect, keyed by (enrollment, step, visit).

    Local activities run at least once (a workflow task that loses a race with a new
    signal is retried, re-running them), so non-idempotent effects such as
    ``update: {score: customer.score + 20}`` apply once and replay their result.
    """

    __tablename__ = "effects"

    key: str = Field(primary_key=True)
    result: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime


class MessageRow(SQLModel, table=True):
    """One send attempt.

    ``idempotency_key`` is (enrollment, step, visit): at most one delivery per step visit,
    across retries and worker crashes.
    """

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_journey_at", "journey_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True)
    enrollment_id: str = Field(index=True)
    journey_id: str
    version: int
    step_id: str
    visit: int
    customer_id: str = Field(index=True)
    channel: str
    recipients: list[str] = Field(sa_column=Column(JSON, nullable=False))
    sender: str | None = None
    content: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str  # sending | sent | skipped | deferred | failed
    reason: str | None = None
    response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    at: datetime
    created_at: datetime
    # When to ask WeCom again whether a ``pending_confirmation`` task was confirmed (None
    # once decided): the confirmation sweep reads the due ones through this index.
    next_check_at: datetime | None = Field(default=None, index=True)


class CounterRow(SQLModel, table=True):
    """One exact counter of a journey version, kept in the transaction that changes what it counts.

    ``metric`` names what is counted (``step.entered``, ``send``, ``arm.enrolled``...), ``step``
    the plan node it belongs to ('' for journey-wide counters) and ``label`` the breakdown
    (a send's ``status|reason``, an arm, an exit reason). Stats read these rows instead of
    scanning the message log or the enrollments.
    """

    __tablename__ = "journey_counters"

    journey_id: str = Field(primary_key=True)
    version: int = Field(primary_key=True)
    metric: str = Field(primary_key=True)
    step: str = Field(default="", primary_key=True)
    label: str = Field(default="", primary_key=True)
    value: int = 0
