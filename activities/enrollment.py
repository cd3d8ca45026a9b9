"""Admission and end-of-enrollment bookkeeping (local activities)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, overload

from redis.asyncio import Redis
from temporalio import activity

from engine import metrics, routing
from engine.counters import CountBatch, CounterKey
from engine.emitter import EngineEvents
from engine.errors import JourneyError
from engine.history import event_counter
from engine.lifecycle import Gate, check_gate, read_gate
from engine.models import EnrollmentRow, EventRow
from engine.store import EnrollmentEnd, Store
from rules import RuleError
from rules import cache as rule_cache
from workflows.messages import (
    ADMIT,
    CONVERTED,
    FINISH,
    GATE,
    TALLY,
    AdmitInput,
    AdmitResult,
    ConvertedInput,
    FinishInput,
    GateInput,
    GateState,
    TallyInput,
)


@dataclass
class PreparedAdmission:
    """An admission ready to decide (``EnrollmentActivities.prepare``)."""

    inp: AdmitInput
    #: The journey's status (None: no such journey).
    status: str | None
    #: The enrollment to record.
    row: EnrollmentRow
    #: Its ``journey.entered`` event, stored with it.
    entered: EventRow


class AdmissionDecision(NamedTuple):
    """What ``EnrollmentActivities.decide`` found."""

    #: Why the customer is refused (None: admitted).
    refused: str | None
    #: ``Store.admit``'s answer: True recorded now, None recorded before (a retry), False a
    #: duplicate trigger (or not recorded, when refused).
    recorded: bool | None

    @property
    def admitted(self) -> bool:
        """Whether the enrollment stands: not refused, and not a trigger admitted before."""
        return self.refused is None and self.recorded is not False


class EnrollmentActivities:
    """Admission checks, enrollment records in SQL, and the Redis active-enrollment index.

    Args:
        store: SQL store.
        redis: Redis holding the active-enrollment index.
        events: Emits ``journey.entered`` / ``exited`` / ``converted``.
    """

    def __init__(self, store: Store, redis: Redis, events: EngineEvents) -> None:
        self._store = store
        self._redis = redis
        self._events = events

    @activity.defn(name=ADMIT)
    async def admit(self, inp: AdmitInput) -> AdmitResult:
        """Admission (journey-dsl §6a.3): journey active, audience on a fresh profile, reentry.

        ``trigger.when`` was checked when the event was routed. The enrollment is recorded
        exactly once per trigger event.
        """
        return await self.enroll(inp, retried=possibly_run_before())

    async def enroll(self, inp: AdmitInput, *, retried: bool = False) -> AdmitResult:
        """Admit (or refuse) and record the enrollment: the admission activity's work.

        ``prepare``, ``decide`` (on the store's SQL thread) and ``conclude`` in turn. The
        first step's send runs those parts itself when it carries the admission
        (``SendInput.admit``), with ``decide`` in the thread trip of its own reads.

        Args:
            inp: The enrollment to admit.
            retried: An earlier attempt may have admitted it already. An enrollment
                already recorded stays admitted even if its checks would refuse it now,
                since the profile or the journey may have changed since they passed.

        Returns:
            Whether the customer is admitted and, if not, why.
        """
        prepared = await self.prepare(inp)
        decision = await self._store.offload(self.decide, prepared, retried=retried)
        return await self.conclude(prepared, decision)

    async def prepare(self, inp: AdmitInput) -> PreparedAdmission:
        """What the admission needs from Redis: the journey's status and the ``journey.entered`` row."""
        row = EnrollmentRow(
            enrollment_id=inp.enrollment_id, workflow_id=inp.workflow_id, journey_id=inp.journey_id,
            version=inp.version, customer_id=inp.customer_id, key=inp.key,
            trigger_event_id=inp.trigger_event_id, entered_at=datetime.fromisoformat(inp.entered_at),
        )  # fmt: skip
        # The journey's status from its Redis gate (SQL only if Redis lost it), not a SQL read
        # per enrollment; whether anything listens to journey.entered at the same time.
        status, entered = await asyncio.gather(
            self._status(inp.journey_id),
            self._events.prepare(
                event_id=f"{inp.enrollment_id}:entered",
                customer_id=inp.customer_id,
                name="journey.entered",
                at=row.entered_at,
                properties=_props(
                    inp.journey_id, inp.version, inp.enrollment_id, workflow_id=inp.workflow_id, key=inp.key
                ),  # fmt: skip
            ),
        )
        return PreparedAdmission(inp, status, row, entered)

    def decide(self, prepared: PreparedAdmission, *, retried: bool = False) -> AdmissionDecision:
        """Check and record the enrollment, in one commit (blocking: on the store's SQL thread).

        Args:
            prepared: From ``prepare``.
            retried: An enrollment an earlier attempt recorded stays admitted, whatever the
                checks say now.
        """
        inp = prepared.inp
        refused = self._check(inp, prepared.status)
        if refused is not None:
            # Looked up only now: a passing check admits a recorded enrollment anyway (``admit``
            # answers None for this run's own row), so the usual path costs no extra read.
            if retried and self._store.has_enrollment(inp.enrollment_id):
                return AdmissionDecision(None, None)
            return AdmissionDecision(refused, False)
        return AdmissionDecision(None, self._store.admit(prepared.row, prepared.entered))

    async def conclude(self, prepared: PreparedAdmission, decision: AdmissionDecision) -> AdmitResult:
        """After ``decide``: the listener index and the ``journey.entered`` routing; the answer."""
        inp = prepared.inp
        if decision.refused is not None:
            await routing.remove_active(self._redis, inp.customer_id, inp.workflow_id)
            return AdmitResult(admitted=False, reason=decision.refused)
        if not decision.admitted:
            # The same trigger event was routed twice (e.g. recovered after a crash).
            return AdmitResult(admitted=False, reason="duplicate_trigger")
        await routing.add_active(
            self._redis, inp.customer_id, inp.workflow_id, inp.listens if inp.listens is not None else ["*"]
        )
        if decision.recorded:  # else a retry: the first attempt stored the event (recovery routes it if need be)
            metrics.ENROLLED.labels(inp.journey_id).inc()
            await self._events.stored(prepared.entered, new=True)
        return AdmitResult(admitted=True)

    async def _status(self, journey_id: str) -> str | None:
        try:
            return (await read_gate(self._redis, self._store, journey_id)).status
        except JourneyError:
            return None

    def _check(self, inp: AdmitInput, status: str | None) -> str | None:
        if status != "active":
            return f"journey_{status or 'missing'}"
        entered = datetime.fromisoformat(inp.entered_at)
        if inp.audience:
            customer = self._store.ensure_customer(inp.customer_id)
            trigger = inp.trigger.as_context() if inp.trigger else {}
            context = {
                "customer": customer, "event": trigger, "trigger": trigger, "vars": inp.vars,
                "journey": {"id": inp.journey_id, "version": inp.version, "key": inp.key},
                "now": entered, "count_events": event_counter(self._store, inp.customer_id, entered),
            }  # fmt: skip
            try:
                if not rule_cache.rule(inp.audience).test(context):
                    return "audience"
            except RuleError as exc:
                activity.logger.warning("audience rule failed, not admitting: %s", exc.message)
                return "audience_error"
        if inp.reentry in ("once", "cooldown"):
            last = self._store.last_entry(inp.journey_id, inp.customer_id, inp.key, excluding=inp.enrollment_id)
            if last is not None:
                if inp.reentry == "once":
                    return "reentry_once"
                if entered - last < timedelta(seconds=inp.cooldown_s or 0):
                    return "reentry_cooldown"
        return None

    @activity.defn(name=FINISH)
    async def finish(self, inp: FinishInput) -> None:
        """Record the enrollment's state; drop it from the index once it exited."""
        await record_finish(self._store, self._redis, self._events, inp)

    @activity.defn(name=GATE)
    async def gate(self, inp: GateInput) -> GateState:
        """The journey's gate; a workflow that finds it paused is registered as holding."""
        return gate_state(await check_gate(self._redis, self._store, inp.journey_id, inp.workflow_id))

    @activity.defn(name=CONVERTED)
    async def converted(self, inp: ConvertedInput) -> None:
        """Record a goal conversion and emit ``journey.converted``."""
        at = datetime.fromisoformat(inp.at)
        await self._store.offload(self._store.mark_converted, inp.enrollment_id, at=at, arms=inp.arms)
        await self._events.emit(
            event_id=f"{inp.enrollment_id}:converted", customer_id=inp.customer_id, name="journey.converted",
            at=at,
            properties=_props(inp.journey_id, inp.version, inp.enrollment_id, workflow_id=activity.info().workflow_id,
                              goal_event_id=inp.event_id),  # fmt: skip
        )  # fmt: skip

    @activity.defn(name=TALLY)
    async def tally(self, inp: TallyInput) -> None:
        """Add a batch of step counts to the journey's counters, once per (enrollment, seq).

        The effect key's shape (``tally/...``) cannot collide with a step's
        ``{enrollment}:{step}:{visit}`` key, whatever the step is called.
        """
        await self._store.offload(record_tally, self._store, inp)


def possibly_run_before() -> bool:
    """Whether an earlier run of the current activity may have done its work already.

    A retried attempt, or any local activity: it counts its attempts only within one
    workflow task, so run again after its worker died it is attempt 1 once more.
    """
    info = activity.info()
    return info.attempt > 1 or info.is_local


async def record_finish(store: Store, redis: Redis, events: EngineEvents | None, inp: FinishInput) -> None:
    """Record an enrollment's state with its last step counts (and, once it exited, say so).

    An enrollment that exited leaves the listener index and emits ``journey.exited``.
    Idempotent: a retry neither moves a counter nor emits twice. The ``FINISH`` activity
    records through here; the last step's send records the same end with its outcome
    (``prepare_end``, ``Store.finish_send``, ``announce_end``).
    """
    end = await prepare_end(events, inp)
    stored = await store.offload(store.record_end, end)
    await announce_end(redis, events, inp, end, stored=stored)


async def prepare_end(events: EngineEvents | None, inp: FinishInput) -> EnrollmentEnd:
    """The end ``inp`` reports, ready to store, with its ``journey.exited`` event once it exited."""
    at = datetime.fromisoformat(inp.at)
    exited = None
    if inp.status == "exited" and events is not None:
        # Stored with the end it reports: one commit, and no end without its event.
        exited = await events.prepare(
            event_id=f"{inp.enrollment_id}:exited", customer_id=inp.customer_id, name="journey.exited", at=at,
            properties=_props(inp.journey_id, inp.version, inp.enrollment_id, workflow_id=inp.workflow_id,
                              exit_reason=inp.exit_reason),  # fmt: skip
        )  # fmt: skip
    return EnrollmentEnd(inp.enrollment_id, status=inp.status, exit_reason=inp.exit_reason, at=at, path=inp.path,
                         arm=inp.arm, counts=count_batch(inp.tally), exited=exited)  # fmt: skip


async def announce_end(redis: Redis, events: EngineEvents | None, inp: FinishInput, end: EnrollmentEnd, *,
                       stored: bool) -> None:  # fmt: skip
    """After ``end`` was committed: an enrollment that exited leaves the index and its event is routed.

    ``stored``: whether its ``exited`` event was stored now (not by an earlier attempt).
    """
    if inp.status != "exited":
        return
    metrics.EXITED.labels(inp.journey_id, inp.exit_reason or "unknown").inc()
    await routing.remove_active(redis, inp.customer_id, inp.workflow_id)
    if events is not None and end.exited is not None:
        await events.stored(end.exited, new=stored)


def record_tally(store: Store, batch: TallyInput) -> bool:
    """Add a batch of step counts to its journey's counters, once per (enrollment, seq) (blocking).

    Returns:
        False when this batch was counted before (a retried activity).
    """
    return store.apply_tally(count_batch(batch))


@overload
def count_batch(batch: TallyInput) -> CountBatch: ...


@overload
def count_batch(batch: None) -> None: ...


def count_batch(batch: TallyInput | None) -> CountBatch | None:
    """A workflow's batch of step counts as counter increments, keyed once per (enrollment, seq)."""
    if batch is None:
        return None
    changes = [(CounterKey(batch.journey_id, batch.version, e.metric, e.step, e.label), 1) for e in batch.entries]
    return CountBatch(f"tally/{batch.enrollment_id}/{batch.seq}", changes)


def gate_state(gate: Gate) -> GateState:
    """The gate as the workflow receives it."""
    return GateState(status=gate.status, on_resume=gate.on_resume, stale_after_s=gate.stale_after_s)


def _props(journey_id: str, version: int, enrollment_id: str, **extra: Any) -> dict[str, Any]:
    return {"journey": journey_id, "version": version, "enrollment_id": enrollment_id, **extra}
