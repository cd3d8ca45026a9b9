"""Following customer mass-send tasks to their outcome: the shared sweep (and the old per-task tracker)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import activity

from activities.wecom import WeComClient, WeComError
from engine.dispatch import IncomingEvent
from engine.emitter import EngineEvents
from engine.models import EventRow, MessageRow
from engine.store import DecidedTask, Store, aware, utcnow
from engine.sweep_promise import SweepPromise
from workflows.messages import SWEEP_CONFIRMATIONS, TRACK_MASS_SEND, SweepResult, TrackInput, TrackResult

log = logging.getLogger("journeys.confirmations")

#: WeCom's answer per recipient: 0 unconfirmed, 1 sent, 2 not a friend, 3 over the quota.
_OUTCOMES = {1: ("sent", None), 2: ("failed", "not_a_friend"), 3: ("failed", "quota_exceeded")}


def _outcome(status: int) -> tuple[str, str | None]:
    """The message-log outcome of a decided task (anything else at the end: never confirmed)."""
    return _OUTCOMES.get(status, ("failed", "not_confirmed"))


#: WeCom lets a task lapse after 3 days; the last check records it as never confirmed.
GIVE_UP_AFTER = timedelta(days=3)
#: Checks back off with the task's age (about 1, 2, 4, 8... minutes) up to this interval.
MAX_INTERVAL = timedelta(minutes=30)
#: The longest time between two sweeps while tasks wait.
SWEEP_EVERY_S = 10.0
#: The longest a round promises another (engine/sweep_promise.py); rounds come every
#: ``SWEEP_EVERY_S`` at most, so the promise stands between them.
PROMISE_FOR = timedelta(seconds=20)


def next_check(created_at: datetime, now: datetime, first_poll_s: float) -> datetime:
    """When to ask again about a task created at ``created_at`` that is still unconfirmed at ``now``.

    The wait grows with the task's age (doubling the time since it was created), from
    ``first_poll_s`` up to 30 minutes, and the last check comes when the task lapses.
    """
    age = now - created_at
    wait = min(max(age, timedelta(seconds=first_poll_s)), MAX_INTERVAL)
    return min(now + wait, created_at + GIVE_UP_AFTER)


#: Checks whose findings one commit records.
RECORD_EVERY = 50


@dataclass(frozen=True)
class _Finding:
    """What one check of a task found: its outcome (status, reason), or when to check again.

    Neither: the task cannot be checked (no msgid), and nothing will ask again.
    """

    row: MessageRow
    msgid: str | None = None
    outcome: tuple[str, str | None] | None = None
    recheck_at: datetime | None = None


def _announcement(found: _Finding) -> IncomingEvent:
    """The ``message.sent`` / ``message.failed`` that announces a decided task."""
    row, (outcome, reason) = found.row, found.outcome or ("failed", None)
    name = "message.sent" if outcome == "sent" else "message.failed"
    return IncomingEvent(
        event_id=f"{row.idempotency_key}:{name}", customer_id=row.customer_id, name=name, timestamp=row.at,
        properties={"journey": row.journey_id, "version": row.version, "enrollment_id": row.enrollment_id,
                    "step": row.step_id, "channel": row.channel, "msgid": found.msgid, "reason": reason},
    )  # fmt: skip


def _promise_until(now: datetime) -> datetime:
    """When this round's promise lapses: bounded by when the round was first scheduled.

    A retry of the round starts only after an attempt's timeout, so an attempt that outlived
    it can only write a promise that has lapsed by then (engine/sweep_promise.py).
    """
    if not activity.in_activity():
        return now + PROMISE_FOR
    info = activity.info()
    timeouts = [t for t in (info.heartbeat_timeout, info.start_to_close_timeout) if t]
    lasts = min([PROMISE_FOR, *(t * 2 / 3 for t in timeouts)])
    return info.scheduled_time + lasts


async def _heartbeat(every_s: float = 5.0) -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(every_s)


class ConfirmationActivities:
    """Checks waiting tasks with WeCom and records their outcomes in the message log.

    Args:
        store: SQL store (the message log).
        wecom: WeCom client.
        events: Emits ``message.sent`` / ``message.failed`` once a task is decided.
        first_poll_s: The shortest wait between two checks of a task; also the time between
            sweeps, if shorter than 10 s.
        batch: Tasks checked per sweep.
        concurrency: WeCom calls in flight at once during a sweep.
        promise: Where rounds promise another, so that senders need not signal the sweep
            (None: they always signal).
    """

    def __init__(self, store: Store, wecom: WeComClient, events: EngineEvents | None = None, *,
                 first_poll_s: float = 60.0, batch: int = 200, concurrency: int = 2,
                 promise: SweepPromise | None = None) -> None:  # fmt: skip
        self._store = store
        self._wecom = wecom
        self._events = events
        self._promise = promise
        self._first_poll_s = first_poll_s
        self._batch = batch
        self._concurrency = concurrency

    @property
    def interval_s(self) -> float:
        """Time between sweeps when none is behind.

        Shorter than the wait between two checks of one task: frequent small sweeps spread
        the checks out, where one sweep a minute was a burst of work that delayed sends.
        """
        return min(self._first_poll_s, SWEEP_EVERY_S)

    @activity.defn(name=SWEEP_CONFIRMATIONS)
    async def sweep(self) -> SweepResult:
        """Check every task whose check is due; schedule the next check of those still unconfirmed.

        One task's failing check (WeCom unreachable, or an answer we cannot read) is asked
        again after ``first_poll_s``, not retried by failing the whole sweep.
        """
        now = utcnow()
        # Heartbeats, so that a sweep whose worker died is retried within the heartbeat
        # timeout instead of its start-to-close timeout.
        beating = asyncio.create_task(_heartbeat()) if activity.in_activity() else None
        try:
            due = await self._store.offload(self._store.due_confirmations, now, limit=self._batch)
            limit = asyncio.Semaphore(self._concurrency)

            async def check(row: MessageRow) -> _Finding:
                async with limit:
                    try:
                        return await self._check(row, now)
                    except WeComError as exc:
                        # A failed look says nothing about the task: ask again soon, not after the backoff.
                        log.warning("confirmation check of %s failed, asking again: %s", row.idempotency_key, exc)
                    except Exception:  # noqa: BLE001 - e.g. a malformed answer
                        # Not raised: the group's other findings would be lost with it, and this
                        # task, due longest, would lead the next round and stop it again.
                        log.exception("confirmation check of %s failed unexpectedly, asking again", row.idempotency_key)
                    return _Finding(row, recheck_at=now + timedelta(seconds=self._first_poll_s))

            decided = 0
            # What a group of checks found is recorded in one commit (a crash before it only
            # means asking WeCom again); groups keep each commit, and what a crash loses, small.
            for start in range(0, len(due), RECORD_EVERY):
                found = await asyncio.gather(*(check(row) for row in due[start : start + RECORD_EVERY]))
                decided += await self._record(found)
            waiting = await self._store.offload(self._store.waiting_confirmations)
            if self._promise is not None:
                waiting = await self._promise_another_round(waiting, now)
        finally:
            if beating is not None:
                beating.cancel()
        # Behind (a full batch): sweep again at once instead of after the interval.
        return SweepResult(checked=len(due), decided=decided, waiting=waiting,
                           next_in_s=0.1 if len(due) >= self._batch else self.interval_s)  # fmt: skip

    async def _promise_another_round(self, waiting: int, now: datetime) -> int:
        """Promise senders another round while tasks wait; before a last zero, withdraw and count again.

        Returns the number of waiting tasks the workflow decides on (engine/sweep_promise.py).
        """
        assert self._promise is not None
        if waiting == 0:
            # A sender that saw the promise committed its task before this withdrawal, so the
            # count after it sees the task. Failing to withdraw fails the round: no ending.
            await self._promise.withdraw()
            waiting = await self._store.offload(self._store.waiting_confirmations)
        if waiting:
            await self._promise.hold(_promise_until(now))
        return waiting

    async def _check(self, row: MessageRow, now: datetime) -> _Finding:
        """Ask WeCom about one task: its outcome, or when to ask again."""
        msgid = (row.response or {}).get("msgid")
        if not msgid or not row.recipients:
            log.error("task %s waits for confirmation without a msgid or recipient; not checked", row.idempotency_key)
            return _Finding(row)
        created = aware(row.created_at) or now
        expired = now - created >= GIVE_UP_AFTER
        status = await self._ask(str(msgid), row.sender or "", row.recipients[0])
        if status == 0 and not expired:
            return _Finding(row, recheck_at=next_check(created, now, self._first_poll_s))
        return _Finding(row, msgid=str(msgid), outcome=_outcome(status))

    async def _ask(self, msgid: str, sender: str, external_userid: str) -> int:
        body = await self._wecom.groupmsg_send_result(msgid, sender)
        statuses = {str(r.get("external_userid")): int(r.get("status", 0)) for r in body.get("send_list") or []}
        return statuses.get(external_userid, 0)

    async def _record(self, found: Sequence[_Finding]) -> int:
        """Log what checks found in one commit: outcomes with the events that announce them, next checks.

        An outcome and its event together, because once the outcome is logged nothing checks
        the task again: an event emitted after it would be lost with a crash in between.
        Then the events are routed. Returns how many tasks were decided.
        """
        decided = [f for f in found if f.outcome is not None]
        events: list[EventRow | None] = [None] * len(decided)
        if self._events is not None and decided:
            events = list(await self._events.prepare_all([_announcement(f) for f in decided]))
        tasks = [DecidedTask(f.row.idempotency_key, *f.outcome, event=event)  # type: ignore[misc]
                 for f, event in zip(decided, events, strict=True)]  # fmt: skip
        rechecks = [(f.row.idempotency_key, f.recheck_at) for f in found if f.outcome is None]
        if not tasks and not rechecks:
            return 0
        stored = await self._store.offload(self._store.settle_confirmations, tasks, rechecks)
        if self._events is not None:
            for event, new in zip(events, stored, strict=True):
                if event is not None:
                    await self._events.stored(event, new=new)
        return len(tasks)

    @activity.defn(name=TRACK_MASS_SEND)
    async def track(self, inp: TrackInput, expired: bool) -> TrackResult:
        """One look at one task, for trackers started before the shared sweep existed."""
        row = await self._store.offload(self._store.get_send, inp.idempotency_key)
        if row is None or row.status != "pending_confirmation":
            return TrackResult(status=row.status if row else "failed", reason=row.reason if row else "missing")
        status = await self._ask(inp.msgid, inp.sender, inp.external_userid)
        if status == 0 and not expired:
            return TrackResult(status="pending")
        outcome, reason = _outcome(status)
        await self._record([_Finding(row, msgid=inp.msgid, outcome=(outcome, reason))])
        return TrackResult(status=outcome, reason=reason)
