"""Scheduled audience runs: page through customers and enroll those the audience selects."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from temporalio import activity
from temporalio.client import Client

from engine import routing
from engine.cron import parse_cron
from engine.errors import NotFoundError
from engine.history import event_counter
from engine.lifecycle import read_gate
from engine.models import ScheduleRunRow
from engine.plan import JourneyPlan
from engine.store import Store, utcnow
from engine.temporal import start_enrollment
from rules import RuleError
from rules import cache as rule_cache
from workflows.messages import (
    AUDIENCE_RUN,
    SCHEDULE_GATE,
    SCHEDULE_NEXT,
    AudienceRunInput,
    AudienceRunResult,
    EnrollmentInput,
    EventData,
    GateState,
    ScheduleNext,
    ScheduleNextInput,
)

#: Customers read per page.
PAGE = 500


class AudienceActivities:
    """Everything a journey's scheduler asks of the outside world.

    Args:
        store: SQL store.
        redis: Redis (gate, listener index).
        client: Temporal client (starts enrollments).
        task_queue: Where enrollments run.
        max_starts_per_second: Bound on how fast one run starts enrollments.
    """

    def __init__(self, store: Store, redis: Redis, client: Client, *, task_queue: str,
                 max_starts_per_second: float = 50.0) -> None:  # fmt: skip
        self._store = store
        self._redis = redis
        self._client = client
        self._task_queue = task_queue
        self._interval = 1.0 / max_starts_per_second

    @activity.defn(name=SCHEDULE_NEXT)
    async def next_fire(self, inp: ScheduleNextInput) -> ScheduleNext:
        """Next fire time of the active version's cron, in the journey's time zone."""
        try:
            active = await self._store.offload(self._store.active_version_plan, inp.journey_id)
        except NotFoundError:
            return ScheduleNext(at=None)
        if active is None or not active[1].trigger.schedule:
            return ScheduleNext(at=None)
        plan = active[1]
        fire = parse_cron(plan.trigger.schedule or "").next_after(
            datetime.fromisoformat(inp.after), ZoneInfo(plan.timezone)
        )
        return ScheduleNext(at=fire.isoformat())

    @activity.defn(name=SCHEDULE_GATE)
    async def gate(self, journey_id: str) -> GateState:
        """The journey's gate, without registering as a held enrollment."""
        gate = await read_gate(self._redis, self._store, journey_id)
        return GateState(status=gate.status, on_resume=gate.on_resume, stale_after_s=gate.stale_after_s)

    @activity.defn(name=AUDIENCE_RUN)
    async def run(self, inp: AudienceRunInput) -> AudienceRunResult:
        """Enroll every customer the audience selects, under the journey's reentry rule.

        Heartbeats its cursor, so a retried run resumes where it stopped; enrollment ids
        derive from (journey, run, customer), so nobody is enrolled twice by one run.
        """
        active = await self._store.offload(self._store.active_version_plan, inp.journey_id)
        if active is None:
            return AudienceRunResult(checked=0, enrolled=0)
        version, plan = active
        run_at = datetime.fromisoformat(inp.run_at)
        details = activity.info().heartbeat_details
        cursor, checked, enrolled = (str(details[0]), int(details[1]), int(details[2])) if details else ("", 0, 0)
        next_start = time.monotonic()
        while True:
            page = await self._store.offload(self._store.customers_after, cursor, PAGE)
            if not page:
                break
            chosen = await self._store.offload(self._select, plan, version, page, run_at)
            for customer in chosen:
                # A bounded start rate keeps a big audience from flooding the cluster at once.
                delay = next_start - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_start = max(next_start, time.monotonic()) + self._interval
                await self._enroll(plan, version, customer, run_at, inp.clock_offset_s)
            checked += len(page)
            enrolled += len(chosen)
            cursor = str(page[-1]["id"])
            activity.heartbeat(cursor, checked, enrolled)
        await self._store.offload(self._store.record_schedule_run, ScheduleRunRow(
            journey_id=inp.journey_id, run_at=run_at, checked=checked, enrolled=enrolled, finished_at=utcnow(),
        ))  # fmt: skip
        return AudienceRunResult(checked=checked, enrolled=enrolled)

    def _select(
        self, plan: JourneyPlan, version: int, page: list[dict[str, Any]], run_at: datetime
    ) -> list[dict[str, Any]]:
        summary = self._store.entry_summary(plan.journey_id, [str(c["id"]) for c in page])
        rule = rule_cache.rule(plan.audience) if plan.audience else None
        chosen = []
        for customer in page:
            last, running = summary.get(str(customer["id"]), (None, False))
            if running:
                continue  # after_exit, once and cooldown all refuse while one runs
            if last is not None and plan.reentry.mode == "once":
                continue
            if last is not None and plan.reentry.mode == "cooldown":
                if run_at - last < timedelta(seconds=plan.reentry.cooldown_s or 0):
                    continue
            if rule is not None:
                context = {
                    "customer": customer, "vars": plan.vars, "journey": {"id": plan.journey_id, "version": version},
                    "now": run_at, "count_events": event_counter(self._store, str(customer["id"]), run_at),
                }  # fmt: skip
                try:
                    if not rule.test(context):
                        continue
                except RuleError:
                    continue  # an audience rule that cannot judge a customer does not select them
            chosen.append(customer)
        return chosen

    async def _enroll(self, plan: JourneyPlan, version: int, customer: dict[str, Any], run_at: datetime,
                      clock_offset_s: float) -> None:  # fmt: skip
        customer_id = str(customer["id"])
        trigger = EventData(
            event_id=f"schedule:{plan.journey_id}:{run_at.isoformat()}:{customer_id}", name="schedule",
            customer_id=customer_id, timestamp=run_at.isoformat(), properties={"run_at": run_at.isoformat()},
        )  # fmt: skip
        wid = routing.enrollment_workflow_id(plan.journey_id, customer_id)
        await routing.add_active(self._redis, customer_id, wid, plan.listens())
        await start_enrollment(self._client, task_queue=self._task_queue, inp=EnrollmentInput(
            plan=plan, version=version, customer_id=customer_id, trigger=trigger, clock_offset_s=clock_offset_s,
        ))  # fmt: skip
