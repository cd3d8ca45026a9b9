"""Event intake: record events durably, then route them to journeys and enrollments.

An event is stored (unique on ``event_id``) before anything else, so the API can answer
202 only once it is durable; routing then (1) signal-with-starts an enrollment for each
active journey whose trigger matches, and (2) signals every running enrollment of the
customer. ``dispatched_at`` is set last, in batches shortly after routing
(``engine.dispatch_marks``); events whose routing was interrupted, or whose mark was lost,
are found and routed again by ``recover``, and duplicates of either kind are absorbed
(workflows drop repeated event ids, admission is unique per trigger event).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from temporalio.client import Client

from engine import metrics, routing
from engine.dispatch_marks import PendingMarks
from engine.history import event_counter
from engine.models import EventRow
from engine.plan import JourneyPlan
from engine.store import Store, aware, utcnow
from engine.temporal import signal_event, start_enrollment
from rules import RuleError
from rules import cache as rule_cache
from workflows.messages import EnrollmentInput, EventData

log = logging.getLogger("journeys.dispatch")


#: Names of the events the engine itself emits (journey-dsl §6).
ENGINE_EVENTS = frozenset({"journey.entered", "journey.exited", "journey.converted", "message.sent", "message.failed"})


def is_engine_event(name: str) -> bool:
    """True for the events the engine emits about its own enrollments and messages."""
    return name in ENGINE_EVENTS


@dataclass
class IncomingEvent:
    """An event as a caller submits it."""

    event_id: str
    customer_id: str
    name: str
    properties: dict[str, Any]
    timestamp: datetime | None = None


@dataclass
class Accepted:
    """Outcome of submitting one event."""

    event_id: str
    duplicate: bool
    enrolled: list[str]
    signalled: list[str]
    deferred: bool = False


class _Unread:
    """Marks an epoch not read yet (``None`` is a real value: no journey was ever activated)."""


_UNREAD = _Unread()

#: Customers whose events one ``accept`` call routes at the same time.
ROUTE_CONCURRENCY = 32


class PlanCache:
    """Active journey plans, cached until the Redis epoch changes.

    Any process's activate, pause or archive bumps the epoch, so routing does no SQL read
    per event and still sees every change.
    """

    def __init__(self, store: Store, redis: Redis) -> None:
        self._store = store
        self._redis = redis
        self._epoch: bytes | None = b"<never>"
        self._plans: list[tuple[int, JourneyPlan]] = []
        self._lock = asyncio.Lock()

    async def plans(self, epoch: bytes | None | _Unread = _UNREAD) -> list[tuple[int, JourneyPlan]]:
        """(version, plan) of every active journey.

        Args:
            epoch: The epoch, if the caller just read it (as ``Dispatcher`` does, in the
                pipeline of ``routing.listener_indexes``); read here otherwise.
        """
        if isinstance(epoch, _Unread):
            epoch = await self._redis.get(routing.PLANS_EPOCH_KEY)
        if epoch != self._epoch:
            async with self._lock:
                if epoch != self._epoch:
                    self._plans = await self._store.offload(self._store.active_plans)
                    self._epoch = epoch
        return self._plans


class Dispatcher:
    """Routes events to journeys (new enrollments) and running enrollments (signals).

    Args:
        store: SQL store.
        redis: Redis (active index, plan epoch).
        client: Temporal client.
        task_queue: Queue the journey worker polls.
        clock_offset_s: Simulation only: offset of the simulated clock.
    """

    def __init__(
        self, store: Store, redis: Redis, client: Client, *, task_queue: str, clock_offset_s: float = 0.0
    ) -> None:
        self._store = store
        self._redis = redis
        self._client = client
        self._task_queue = task_queue
        self._clock_offset_s = clock_offset_s
        self.plans = PlanCache(store, redis)
        self.marks = PendingMarks(store)
        self._background: set[asyncio.Task[None]] = set()

    def now(self) -> datetime:
        """Current time on this dispatcher's clock (simulated in simulations)."""
        return utcnow() + timedelta(seconds=self._clock_offset_s)

    async def accept(self, events: list[IncomingEvent], *, route_in_background: bool = False) -> list[Accepted]:
        """Durably record events, then route the new ones.

        Returns:
            One ``Accepted`` per event, in order; duplicates (same ``event_id``) are
            reported and not routed again. An event whose routing failed (Temporal or Redis
            unreachable) is ``deferred``: it is stored, and ``recover`` routes it later.
        """
        received = utcnow()
        rows = [self.event_row(e, received) for e in events]
        indexes: dict[str, dict[bytes, bytes]] = {}
        plans: list[tuple[int, JourneyPlan]] | None = None
        if not route_in_background:
            # Nothing listens to most engine events (journey.entered, message.sent...): store
            # those already dispatched, one write instead of a write, a routing pass and a
            # second write. A listener that registers right after this check sees the event
            # as one that happened before it began listening, as it would anyway.
            idle, indexes, plans = await self._idle(rows)
            for row, is_idle in zip(rows, idle, strict=True):
                if is_idle:
                    row.dispatched_at = received
        fresh = await self._store.offload(self._store.insert_events, rows)
        for is_new in fresh:
            metrics.EVENTS.labels("new" if is_new else "duplicate").inc()
        if route_in_background:
            # Durable now; routing follows (the recovery loop covers a crash meanwhile).
            new_rows = [row for row, is_new in zip(rows, fresh, strict=True) if is_new]
            if new_rows:
                task = asyncio.create_task(self._route_rows(new_rows))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            return [Accepted(r.event_id, duplicate=not n, enrolled=[], signalled=[], deferred=n)
                    for r, n in zip(rows, fresh, strict=True)]  # fmt: skip
        outcomes: dict[str, tuple[list[str], list[str]] | None] = {}
        groups: dict[str, list[EventRow]] = {}
        for row, is_new in zip(rows, fresh, strict=True):
            if is_new and row.dispatched_at is None:
                groups.setdefault(row.customer_id, []).append(row)
        limit = asyncio.Semaphore(ROUTE_CONCURRENCY)

        async def route_group(group: list[EventRow]) -> None:
            # One customer's events in order (their enrollments see them in order); different
            # customers concurrently, so a batch costs about one round of Temporal calls.
            async with limit:
                # The index and plans read above serve the group's first event; later ones
                # read them again, since the events before them may have started enrollments
                # and a journey may have been activated or paused meanwhile.
                index, active = indexes.get(group[0].customer_id), plans
                for row in group:
                    (known, index), (known_plans, active) = (index, None), (active, None)
                    try:
                        outcomes[row.event_id] = await self.route(row, index=known, plans=known_plans)
                    except Exception:  # noqa: BLE001 - the event is stored; recovery routes it later
                        log.exception("routing event %s failed; it stays queued for recovery", row.event_id)
                        outcomes[row.event_id] = None

        await asyncio.gather(*(route_group(g) for g in groups.values()))
        results: list[Accepted] = []
        for row, is_new in zip(rows, fresh, strict=True):
            if not is_new:
                results.append(Accepted(row.event_id, duplicate=True, enrolled=[], signalled=[]))
            elif row.event_id not in outcomes:  # stored already dispatched: nothing listened
                results.append(Accepted(row.event_id, duplicate=False, enrolled=[], signalled=[]))
            elif (outcome := outcomes[row.event_id]) is None:
                results.append(Accepted(row.event_id, duplicate=False, enrolled=[], signalled=[], deferred=True))
            else:
                results.append(Accepted(row.event_id, duplicate=False, enrolled=outcome[0], signalled=outcome[1]))
        # Not awaited: the events are stored and routed, and the marks of many share a commit.
        self.marks.add(eid for eid, outcome in outcomes.items() if outcome is not None)
        return results

    async def close(self) -> None:
        """Write the pending dispatch marks (so recovery does not route those events again)."""
        await self.marks.close()

    def event_row(self, event: IncomingEvent, received: datetime) -> EventRow:
        """The row that stores ``event`` (received at ``received``), not yet dispatched."""
        return EventRow(
            event_id=event.event_id,
            customer_id=event.customer_id,
            name=event.name,
            properties=event.properties,
            timestamp=(event.timestamp or self.now()).astimezone(UTC),
            received_at=received,
        )

    async def mark_idle(self, rows: list[EventRow]) -> None:
        """Mark dispatched the rows nothing listens to, before the caller stores them itself.

        For engine events stored in the same transaction as the change they report (see
        ``EngineEvents.prepare``); the others go to ``route_stored`` once committed.
        """
        idle, _, _ = await self._idle(rows)
        for row, is_idle in zip(rows, idle, strict=True):
            if is_idle:
                row.dispatched_at = row.received_at

    async def route_stored(self, rows: list[EventRow]) -> None:
        """Route rows a caller stored itself, and mark them dispatched.

        Never raises: a row whose routing or marking failed stays undispatched, and
        ``recover`` routes it later, as for an event ``accept`` deferred.
        """
        await self._route_rows(rows)

    async def _idle(
        self, rows: list[EventRow]
    ) -> tuple[list[bool], dict[str, dict[bytes, bytes]], list[tuple[int, JourneyPlan]] | None]:
        """For each row, True when no active journey's trigger and no running enrollment wants it.

        Nor one that an earlier trigger of the batch may start. One plan lookup and one Redis
        round trip for the whole batch: the engine events of a busy worker arrive in batches
        (``EngineEvents``).

        Returns:
            The flags, the customers' listener indexes read for them (empty if unread), and
            the active plans read for them (None if unread), for routing to reuse.
        """
        try:
            # The plan epoch and the listener indexes in one round trip.
            epoch, indexes = await routing.listener_indexes(
                self._redis, sorted({r.customer_id for r in rows}), also_get=routing.PLANS_EPOCH_KEY
            )
            plans = await self.plans.plans(epoch)
        except Exception:  # noqa: BLE001 - cannot tell: route them the normal way (or defer them)
            return [False] * len(rows), {}, None
        idle = []
        # A trigger earlier in the batch may start an enrollment that waits for a later
        # event of the same customer, which the index read above cannot show yet.
        triggered: set[str] = set()
        for row in rows:
            if row.customer_id in triggered or any(plan.trigger.matches_name(row.name) for _, plan in plans):
                triggered.add(row.customer_id)
                idle.append(False)
                continue
            source = row.properties.get("workflow_id") if is_engine_event(row.name) else None
            idle.append(all(wid == source for wid in routing.listening_in(indexes[row.customer_id], row.name)))
        return idle, indexes, plans

    async def _route_rows(self, rows: list[EventRow]) -> None:
        """Route each row, then mark those routed; never raises (see ``route_stored``)."""
        routed = []
        for row in rows:
            try:
                await self.route(row)
                routed.append(row.event_id)
            except Exception:  # noqa: BLE001 - stays undispatched; recovery routes it later
                log.exception("background routing of event %s failed", row.event_id)
        self.marks.add(routed)

    async def route(self, row: EventRow, *, index: dict[bytes, bytes] | None = None,
                    plans: list[tuple[int, JourneyPlan]] | None = None) -> tuple[list[str], list[str]]:  # fmt: skip
        """Start or signal enrollments for one stored event.

        Args:
            row: The stored event.
            index: The customer's listener index, if it was just read (saves reading it again).
            plans: The active plans, if they were just read (saves reading the epoch again).

        Returns:
            (workflow ids signal-with-started for matching journeys, workflow ids signalled).
        """
        ts = aware(row.timestamp) or self.now()
        event = EventData(
            event_id=row.event_id,
            name=row.name,
            customer_id=row.customer_id,
            timestamp=ts.isoformat(),
            properties=dict(row.properties),
        )
        enrolled = await self._enroll(event, plans if plans is not None else await self.plans.plans())
        signalled = []
        # An engine event is not signalled back to the enrollment that emitted it: it
        # knows, and a signal racing its running workflow task would force a retry.
        source_workflow = event.properties.get("workflow_id") if is_engine_event(row.name) else None
        if index is None:
            listening = await routing.listening_workflows(self._redis, row.customer_id, row.name)
        else:
            listening = routing.listening_in(index, row.name)
        for wid in listening:
            if wid in enrolled or wid == source_workflow:
                continue  # signal-with-start already delivered the event there
            if await signal_event(self._client, wid, event):
                signalled.append(wid)
            else:
                await routing.remove_active(self._redis, row.customer_id, wid)
        return enrolled, signalled

    async def _enroll(self, event: EventData, plans: list[tuple[int, JourneyPlan]]) -> list[str]:
        # An engine event (journey.*, message.*) never re-triggers the journey it came from,
        # or a journey triggered by its own message.sent would loop forever.
        source = event.properties.get("journey") if is_engine_event(event.name) else None
        candidates = [(v, p) for v, p in plans if p.trigger.matches_name(event.name) and p.journey_id != source]
        if not candidates:
            return []
        if any(plan.trigger.when or plan.trigger.key for _, plan in candidates):
            admitted = await self._store.offload(self._evaluate_triggers, event, candidates)
        else:  # bare event names: nothing to evaluate, no trip to the SQL thread
            admitted = [(version, plan, None) for version, plan in candidates]
        started: list[str] = []
        for version, plan, key in admitted:
            wid = routing.enrollment_workflow_id(plan.journey_id, event.customer_id, key)
            # Index first, so an event arriving while the start is in flight still finds it.
            await routing.add_active(self._redis, event.customer_id, wid, plan.listens())
            await start_enrollment(
                self._client,
                task_queue=self._task_queue,
                inp=EnrollmentInput(
                    plan=plan,
                    version=version,
                    customer_id=event.customer_id,
                    trigger=event,
                    key=key,
                    clock_offset_s=self._clock_offset_s,
                ),
            )
            started.append(wid)
        return started

    def _evaluate_triggers(
        self, event: EventData, candidates: list[tuple[int, JourneyPlan]]
    ) -> list[tuple[int, JourneyPlan, str | None]]:
        """Apply ``trigger.when`` and ``trigger.key`` of each candidate journey.

        Runs in a thread: ``count_events`` reads the event history, which already holds
        this event (journey-dsl §6a.9).
        """
        # Most triggers are a bare event name: read (or create) the profile only when some
        # candidate's `when` or `key` may look at it.
        needs_profile = any(plan.trigger.when or plan.trigger.key for _, plan in candidates)
        customer = self._store.ensure_customer(event.customer_id) if needs_profile else {"id": event.customer_id}
        # Triggers are judged at the moment the event happened: count_events("x", "1h")
        # is the hour ending with this event, whenever it is routed.
        now = datetime.fromisoformat(event.timestamp)
        counter = event_counter(self._store, event.customer_id, now)
        out: list[tuple[int, JourneyPlan, str | None]] = []
        for version, plan in candidates:
            context = {
                "event": event.as_context(),
                "customer": customer,
                "vars": plan.vars,
                "journey": {"id": plan.journey_id, "version": version},
                "now": now,
                "count_events": counter,
            }
            try:
                if plan.trigger.when and not rule_cache.rule(plan.trigger.when).test(context):
                    continue
                key = None
                if plan.trigger.key:
                    value = rule_cache.rule(plan.trigger.key).evaluate(context)
                    if value is None:
                        log.info("event %s: trigger.key of %s is empty; not enrolled", event.event_id, plan.journey_id)
                        continue
                    key = str(value)
            except RuleError as exc:
                log.warning("event %s: journey %s trigger rule failed: %s", event.event_id, plan.journey_id, exc)
                continue
            out.append((version, plan, key))
        return out

    async def recover(self, *, older_than: timedelta = timedelta(seconds=30)) -> list[str]:
        """Route events whose routing was interrupted. Returns the ids of those routed now."""
        before = datetime.now(UTC) - older_than
        await self.marks.flush()  # routed already, only their marks were pending
        rows = await self._store.offload(self._store.undispatched_events, received_before=before)
        done = []
        for row in rows:
            try:
                await self.route(row)
            except Exception:  # noqa: BLE001 - try again next round
                log.exception("recovering event %s failed; will retry", row.event_id)
                continue
            done.append(row.event_id)
        await self._store.offload(self._store.mark_dispatched, done)
        return done
