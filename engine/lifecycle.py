"""Journey lifecycle: activate, pause, resume, archive (journey-dsl §6a.4).

The journey's status lives in SQL (the source of truth) and in a Redis "gate" key that
enrollments read, through a local activity, before every ``send`` or ``activity``:

- **pause** takes effect at once: the dispatcher stops admitting (plan epoch) and the gate
  closes, so in-flight enrollments hold before their next action, timers still running;
- **resume** opens the gate and signals only the enrollments that are holding (they
  registered themselves in a Redis set), with the pause's policy;
- **archive** closes the journey for good and tells every running enrollment to exit.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass

from redis.asyncio import Redis
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from engine import routing
from engine.errors import JourneyStateError
from engine.models import JourneyRow
from engine.store import Store
from workflows.messages import ARCHIVE_SIGNAL, RESUME_SIGNAL, OperatorExit, ScheduleInput
from workflows.scheduler import AudienceScheduleWorkflow

#: How many signals a resume or archive sends at once.
FANOUT = 64


@dataclass
class Gate:
    """What an enrollment needs to know before acting: may it, and if not, how to resume."""

    status: str  # active | paused | archived | draft
    on_resume: str | None = None
    stale_after_s: float | None = None

    @property
    def closed(self) -> bool:
        """True when actions must wait (paused) or stop (archived)."""
        return self.status in ("paused", "archived")


def scheduler_workflow_id(journey_id: str) -> str:
    """The scheduler of a scheduled journey (one per journey, across versions)."""
    return f"schedule/{journey_id}"


def gate_key(journey_id: str) -> str:
    """Redis key of a journey's gate."""
    return f"journeys:gate:{journey_id}"


def held_key(journey_id: str) -> str:
    """Redis set of the workflow ids holding at a closed gate."""
    return f"journeys:held:{journey_id}"


async def read_gate(redis: Redis, store: Store, journey_id: str) -> Gate:
    """The gate from Redis, or from SQL when Redis lost it (then written back)."""
    raw = await redis.get(gate_key(journey_id))
    if raw:
        return Gate(**json.loads(raw))
    row = await store.offload(store.get_journey, journey_id)
    gate = _gate_of(row)
    await redis.set(gate_key(journey_id), json.dumps(asdict(gate)))
    return gate


async def check_gate(redis: Redis, store: Store, journey_id: str, workflow_id: str) -> Gate:
    """The gate as an enrollment about to act sees it; one that finds it paused is registered as holding.

    Registering before reading again means a resume that happens meanwhile either sees
    this enrollment in the held set or is seen here as an open gate: none is stranded.
    """
    gate = await read_gate(redis, store, journey_id)
    if gate.status != "paused":
        # Open: nothing to register (one Redis read per action in the common case).
        return gate
    await redis.sadd(held_key(journey_id), workflow_id)  # type: ignore[misc]
    gate = await read_gate(redis, store, journey_id)
    if gate.status != "paused":
        await redis.srem(held_key(journey_id), workflow_id)  # type: ignore[misc]
    return gate


def _gate_of(row: JourneyRow) -> Gate:
    return Gate(status=row.status, on_resume=row.on_resume, stale_after_s=row.stale_after_s)


class Lifecycle:
    """Journey state transitions that reach running enrollments.

    Args:
        store: SQL store.
        redis: Redis (gate, held set, plan epoch).
        client: Temporal client (signals, schedulers).
        task_queue: Where schedulers of scheduled journeys run.
        clock_offset_s: Simulation only: the simulated clock's offset.
    """

    def __init__(self, store: Store, redis: Redis, client: Client, *, task_queue: str = "journeys",
                 clock_offset_s: float = 0.0) -> None:  # fmt: skip
        self._store = store
        self._redis = redis
        self._client = client
        self._task_queue = task_queue
        self._clock_offset_s = clock_offset_s

    async def _publish(self, row: JourneyRow) -> None:
        await self._redis.set(gate_key(row.id), json.dumps(asdict(_gate_of(row))))
        await routing.bump_plans_epoch(self._redis)

    async def activate(self, journey_id: str, version: int | None = None) -> JourneyRow:
        """Admit customers with a version (default: latest).

        Raises:
            NotFoundError: No such journey or version.
            JourneyStateError: Archived journeys cannot be activated.
        """
        row = await self._store.offload(self._store.activate, journey_id, version)
        await self._publish(row)
        await self._ensure_scheduler(journey_id)
        if await self._redis.scard(held_key(journey_id)):  # type: ignore[misc]
            # Activating a paused journey resumes it with the pause's policy.
            await self._signal_held(journey_id, Gate(status="active"))
        return row

    async def pause(
        self, journey_id: str, *, on_resume: str = "send_late", stale_after_s: float | None = None
    ) -> JourneyRow:
        """Stop admissions now; in-flight enrollments hold before their next action.

        Raises:
            JourneyStateError: The journey is not active.
            ValueError: ``skip_stale`` without ``stale_after_s``.
        """
        if on_resume not in ("send_late", "skip_stale"):
            raise ValueError("on_resume must be send_late or skip_stale")
        if on_resume == "skip_stale" and not stale_after_s:
            raise ValueError("skip_stale needs stale_after (how late is too late)")
        row = await self._store.offload(self._store.get_journey, journey_id)
        if row.status not in ("active", "paused"):
            raise JourneyStateError(f"journey {journey_id!r} is {row.status}; only an active journey can be paused",
                                    current=row.status, requested="paused")  # fmt: skip
        row = await self._store.offload(self._store.set_lifecycle, journey_id, status="paused", on_resume=on_resume,
                                      stale_after_s=stale_after_s)  # fmt: skip
        await self._publish(row)
        return row

    async def resume(self, journey_id: str) -> tuple[JourneyRow, int]:
        """Admit again and release held enrollments with the pause's policy.

        Returns:
            The journey and how many held enrollments were signalled.

        Raises:
            JourneyStateError: The journey is not paused.
        """
        row = await self._store.offload(self._store.get_journey, journey_id)
        if row.status != "paused":
            raise JourneyStateError(f"journey {journey_id!r} is {row.status}, not paused",
                                    current=row.status, requested="active")  # fmt: skip
        policy = _gate_of(row)
        row = await self._store.offload(self._store.set_lifecycle, journey_id, status="active")
        await self._publish(row)
        released = await self._signal_held(journey_id, policy)
        return row, released

    async def archive(self, journey_id: str) -> tuple[JourneyRow, int]:
        """End every running enrollment (``exit_reason: operator``) and admit none.

        Returns:
            The journey and how many running enrollments were told to exit.
        """
        await self._store.offload(self._store.get_journey, journey_id)
        row = await self._store.offload(self._store.set_lifecycle, journey_id, status="archived")
        await self._publish(row)
        running = await self._store.offload(self._store.running_workflows, journey_id)
        await self._fanout([w for w, _ in running] + [scheduler_workflow_id(journey_id)], ARCHIVE_SIGNAL, None)
        await self._redis.delete(held_key(journey_id))
        return row, len(running)

    async def exit_customer(self, journey_id: str, customer_id: str) -> int:
        """End one customer's running enrollments in a journey (``exit_reason: operator``).

        Returns:
            How many enrollments were ended.
        """
        running = await self._store.offload(self._store.running_workflows, journey_id)
        ended = 0
        for wid, customer in running:
            if customer != customer_id:
                continue
            try:
                await self._client.get_workflow_handle(wid).execute_update("exit", OperatorExit(reason="operator"))
                ended += 1
            except (RPCError, WorkflowUpdateFailedError):
                continue  # it ended meanwhile
        return ended

    async def _ensure_scheduler(self, journey_id: str) -> None:
        """Start the journey's scheduler if its active version has a schedule (idempotent)."""
        active = await self._store.offload(self._store.active_version_plan, journey_id)
        if active is None or not active[1].trigger.schedule:
            return
        await self._client.start_workflow(
            AudienceScheduleWorkflow.run,
            ScheduleInput(journey_id=journey_id, clock_offset_s=self._clock_offset_s),
            id=scheduler_workflow_id(journey_id),
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )

    async def _signal_held(self, journey_id: str, policy: Gate) -> int:
        members = await self._redis.smembers(held_key(journey_id))  # type: ignore[misc]
        workflow_ids = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        await self._fanout(workflow_ids, RESUME_SIGNAL, asdict(policy))
        if workflow_ids:
            await self._redis.srem(held_key(journey_id), *workflow_ids)  # type: ignore[misc]
        return len(workflow_ids)

    async def _fanout(self, workflow_ids: list[str], signal: str, arg: object) -> None:
        limit = asyncio.Semaphore(FANOUT)

        async def one(wid: str) -> None:
            async with limit:
                try:
                    handle = self._client.get_workflow_handle(wid)
                    await (handle.signal(signal, arg) if arg is not None else handle.signal(signal))
                except RPCError as exc:
                    if exc.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                        raise

        await asyncio.gather(*(one(w) for w in workflow_ids))
