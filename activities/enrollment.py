"""Admission and end-of-enrollment bookkeeping (local activities)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from redis.asyncio import Redis
from temporalio import activity

from engine import routing
from engine.models import EnrollmentRow
from engine.store import Store
from workflows.messages import ADMIT, FINISH, AdmitInput, AdmitResult, FinishInput


class EnrollmentActivities:
    """Records enrollments in SQL and keeps the Redis active-enrollment index.

    Args:
        store: SQL store.
        redis: Redis holding the active-enrollment index.
    """

    def __init__(self, store: Store, redis: Redis) -> None:
        self._store = store
        self._redis = redis

    @activity.defn(name=ADMIT)
    async def admit(self, inp: AdmitInput) -> AdmitResult:
        """Re-check the journey is active and record the enrollment exactly once."""
        status = await asyncio.to_thread(self._store.journey_status, inp.journey_id)
        if status != "active":
            await routing.remove_active(self._redis, inp.customer_id, inp.workflow_id)
            return AdmitResult(admitted=False, reason=f"journey_{status or 'missing'}")
        row = EnrollmentRow(
            enrollment_id=inp.enrollment_id,
            workflow_id=inp.workflow_id,
            journey_id=inp.journey_id,
            version=inp.version,
            customer_id=inp.customer_id,
            key=inp.key,
            trigger_event_id=inp.trigger_event_id,
            entered_at=datetime.fromisoformat(inp.entered_at),
        )
        if not await asyncio.to_thread(self._store.admit, row):
            # The same trigger event was routed twice (e.g. recovered after a crash).
            return AdmitResult(admitted=False, reason="duplicate_trigger")
        await routing.add_active(self._redis, inp.customer_id, inp.workflow_id)
        return AdmitResult(admitted=True)

    @activity.defn(name=FINISH)
    async def finish(self, inp: FinishInput) -> None:
        """Record the enrollment's state; drop it from the index once it exited."""
        await asyncio.to_thread(
            self._store.finish_enrollment,
            inp.enrollment_id,
            status=inp.status,
            exit_reason=inp.exit_reason,
            at=datetime.fromisoformat(inp.at),
        )
        if inp.status == "exited":
            await routing.remove_active(self._redis, inp.customer_id, inp.workflow_id)
