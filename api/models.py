"""Request and response models of the API."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from engine.durations import parse_duration
from engine.stats import EnrollmentStats

MAX_BATCH = 500


class EventIn(BaseModel):
    """An event about one customer."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "event_id": "evt-20261123-0001",
                    "customer_id": "c1",
                    "name": "order.created",
                    "properties": {"order_id": "A100", "status": "unpaid", "amount": 299},
                    "timestamp": "2026-11-23T10:00:00+08:00",
                }
            ]
        },
    )

    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Idempotency key: the same id is accepted once. Generated if absent.",
    )
    customer_id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:\-]+$")
    properties: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime | None = None


class EventBatch(BaseModel):
    """Several events in one request."""

    model_config = ConfigDict(extra="forbid")
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class EventAccepted(BaseModel):
    """What happened to one submitted event."""

    event_id: str
    duplicate: bool
    enrolled: list[str]
    signalled: list[str]
    deferred: bool = Field(
        default=False, description="Stored, but routing is waiting for Temporal/Redis; it will be routed automatically."
    )


class EventsAccepted(BaseModel):
    """Response of ``POST /v1/events``."""

    accepted: list[EventAccepted]


class CustomerIn(BaseModel):
    """A customer profile: known fields are checked, any other attribute is kept."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "name": "张三",
                    "external_userid": "wm_c1",
                    "owner_userid": "zhangsan",
                    "timezone": "Asia/Shanghai",
                    "tags": ["vip"],
                    "consent_marketing": True,
                    "tier": "gold",
                }
            ]
        },
    )

    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    timezone: str | None = None
    external_userid: str | None = None
    owner_userid: str | None = None
    consent_marketing: bool | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Asia/Shanghai") from exc
        return value


class JourneyCreated(BaseModel):
    """Response of ``POST /v1/journeys``."""

    journey: str
    version: int
    status: str
    plan_hash: str


class JourneyOut(BaseModel):
    """A journey's lifecycle state."""

    id: str
    name: str
    status: str
    active_version: int | None
    latest_version: int
    created_at: datetime
    updated_at: datetime
    paused_at: datetime | None = None
    on_resume: str | None = None


class JourneyDetail(JourneyOut):
    """A journey's lifecycle state and its enrollment counts (all versions)."""

    counts: EnrollmentStats


class PauseIn(BaseModel):
    """How held actions are treated when the journey resumes (journey-dsl §6a.4)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"on_resume": "skip_stale", "stale_after": "6h"},
    ]})  # fmt: skip
    on_resume: Literal["send_late", "skip_stale"] = "send_late"
    stale_after: Annotated[timedelta, BeforeValidator(parse_duration)] | None = None


class ActivateIn(BaseModel):
    """Which version to activate (default: the latest)."""

    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
