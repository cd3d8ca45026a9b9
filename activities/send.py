"""The send activity: at most one delivery per (enrollment, step, visit), always logged."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import Delivered, DeliveryError, Rendered, WebhookSender, customer_payload, deliver, render
from activities.enrollment import (
    AdmissionDecision,
    PreparedAdmission,
    announce_end,
    count_batch,
    gate_state,
    possibly_run_before,
    prepare_end,
    record_finish,
)
from activities.policy import CapLedger, opted_out, quiet_until
from activities.reconcile import find_mass_send
from activities.steps import customer_zone
from activities.wecom import WeComClient, WeComError
from activities.wecom.ratelimit import RateLimited
from engine import metrics
from engine.counters import CountBatch
from engine.emitter import EngineEvents
from engine.lifecycle import check_gate, read_gate
from engine.models import EventRow, MessageRow
from engine.store import EnrollmentEnd, OpenedSend, SendRecorded, Store, aware, utcnow
from rules import RuleError
from workflows.messages import SEND, AdmitInput, AdmitResult, FinishInput, SendInput, SendResult


class Admission(Protocol):
    """Admits (or refuses) an enrollment in three parts: ``EnrollmentActivities``.

    In parts so that a first send can decide the admission in the thread trip of its own
    reads (``decide`` is blocking, for the store's SQL thread).
    """

    async def enroll(self, inp: AdmitInput, *, retried: bool = False) -> AdmitResult:
        """The three parts in turn; ``retried``: an earlier attempt may have admitted it."""
        ...

    async def prepare(self, inp: AdmitInput) -> PreparedAdmission:
        """What deciding needs from Redis."""
        ...

    def decide(self, prepared: PreparedAdmission, *, retried: bool = False) -> AdmissionDecision:
        """Check and record the enrollment (blocking)."""
        ...

    async def conclude(self, prepared: PreparedAdmission, decision: AdmissionDecision) -> AdmitResult:
        """Index and announce an admitted enrollment; the answer."""
        ...


def idempotency_key(inp: SendInput) -> str:
    """The message log key: one delivery per enrollment step visit."""
    return f"{inp.enrollment_id}:{inp.step_id}:{inp.visit}"


class SendActivities:
    """Delivers journey messages and records every attempt in the message log.

    Args:
        store: SQL store (profiles, message log).
        wecom: WeCom client.
        events: Emits ``message.sent`` / ``message.failed``.
        caps: The frequency-cap ledger (default: on the WeCom client's Redis).
        webhook: Sends ``webhook`` steps.
        confirmations: Wakes the confirmation sweep; called whenever a customer mass-send
            task is logged ``pending_confirmation`` (without it, the task is logged ``sent``
            when WeCom accepts it). It should not raise (``ConfirmationSweep`` retries on its
            own): after the last step the task is logged with the enrollment's end, which
            stands even if the attempt then fails.
        admission: Admits the customer when the first step's send carries the admission
            (``SendInput.admit``): ``EnrollmentActivities``.
    """

    def __init__(self, store: Store, wecom: WeComClient, events: EngineEvents | None = None,
                 caps: CapLedger | None = None, webhook: WebhookSender | None = None,
                 confirmations: Callable[[], Awaitable[None]] | None = None,
                 admission: Admission | None = None) -> None:  # fmt: skip
        self._store = store
        self._wecom = wecom
        self._events = events
        self._caps = caps or CapLedger(wecom.redis)
        self._webhook = webhook
        self._confirmations = confirmations
        self._admission = admission
        #: Deliveries under way in this process, by message log key (``_delivering``).
        self._in_flight: dict[str, asyncio.Task[tuple[SendResult, _Settled]]] = {}

    @activity.defn(name=SEND)
    async def send(self, inp: SendInput) -> SendResult:
        """Deliver one message and emit ``message.sent`` or ``message.failed``.

        Raises:
            ApplicationError: Non-retryable for permanent failures (see ``_deliver``).
            WeComError: Retryable WeCom or transport failures, left to Temporal's retries.
        """
        try:
            result, settled = await self._deliver(inp)
        except ApplicationError as exc:
            metrics.SENDS.labels(inp.channel, "retry" if not exc.non_retryable else "failed", exc.type or "").inc()
            if exc.non_retryable:
                await self._emit(inp, "message.failed", {"reason": exc.type, "error": exc.message})
            raise
        except WeComError as exc:
            metrics.SENDS.labels(inp.channel, "retry", f"wecom_{exc.errcode}").inc()
            raise
        if result.status in ("held", "refused"):
            return result  # not a send (yet, or ever): neither counted nor announced
        metrics.SENDS.labels(inp.channel, result.status, result.reason or "").inc()
        if result.status == "sent" and not settled.announced:
            await self._emit(inp, "message.sent", {"msgid": result.msgid})
        elif result.status == "failed":
            await self._emit(inp, "message.failed", {"reason": result.reason})
        if inp.finish is not None and result.status != "deferred":
            if settled.finished is not None:
                result.finished = settled.finished
            else:
                result.finished = await self._finish_enrollment(inp.finish)
        return result

    async def _finish_enrollment(self, finish: FinishInput) -> bool:
        """Record the enrollment's end the last step's send carries. False if that failed."""
        return await self._end_recorded(record_finish(self._store, self._wecom.redis, self._events, finish), finish)

    @staticmethod
    async def _end_recorded(recording: Awaitable[None], finish: FinishInput) -> bool:
        """Await the recording (or announcing) of an enrollment's end. False if that failed.

        A failure here must not fail the send (the message is out and logged): the workflow
        then records the same ``finish`` itself, and recording it twice changes nothing.
        """
        try:
            await recording
        except Exception:  # noqa: BLE001 - handed back to the workflow (see above)
            activity.logger.warning("send: recording the end of enrollment %s failed; the workflow records it",
                                    finish.enrollment_id, exc_info=True)  # fmt: skip
            return False
        return True

    async def _emit(self, inp: SendInput, name: str, extra: dict[str, Any]) -> None:
        if self._events is None:
            return
        await self._events.emit(**_event_fields(inp, name, extra))

    async def _deliver(self, inp: SendInput) -> tuple[SendResult, _Settled]:
        """Apply the delivery policy, render for the fresh profile, deliver, log the outcome.

        Returns:
            The outcome, and what was recorded with it (a delivered message's
            ``message.sent`` and, after the last step, the enrollment's end).

        Raises:
            ApplicationError: Non-retryable for permanent failures (bad template, WeCom
                refusing the request); the workflow's ``on_error`` decides what follows.
            WeComError: Retryable WeCom or transport failures, left to Temporal's retries.
        """
        key = idempotency_key(inp)
        running = self._in_flight.get(key)
        if running is not None:
            # An earlier attempt of this step visit is still delivering here (it timed out, and
            # a local activity's retry runs in the same process): let it log what it did first.
            await asyncio.wait([running])
        counts = count_batch(inp.tally)
        # Policies govern proactive marketing messages to the customer (§6a.5), nothing else.
        governed = inp.category == "marketing" and inp.customer_facing
        now = datetime.fromisoformat(inp.now)
        # The attempt is claimed, with the step counts it carries, in the same transaction as
        # the send's reads: one thread trip and one commit before the delivery (thread
        # hand-offs and commits were most of a busy worker, bench/RESULTS.md). A governed send
        # is claimed there too when the policy's checks on the profile (opt-out, quiet hours)
        # let it go; one under frequency caps, or one the profile holds back, is claimed (and
        # counted) only once the whole policy lets it go.
        capped = governed and inp.policy is not None and bool(inp.policy.frequency_caps)
        begin = None if capped or inp.skip_reason else self._attempt_row(inp, key, "sending")

        def lets_go(profile: dict[str, Any]) -> bool:
            return _held_by_profile(inp, now, profile) is None

        claim_if = lets_go if governed and begin is not None else None
        open_send = functools.partial(self._store.open_send, key, inp.customer_id, begin=begin,
                                      counts=counts if begin else None, claim_if=claim_if)  # fmt: skip
        opened = None
        if inp.admit is not None:
            # First the admission: a refused customer gets nothing, and nothing of it counts.
            refused, opened = await self._admit_then_open(inp.admit, open_send)
            if refused is not None:
                return refused, _UNSETTLED
        if opened is None:
            if inp.gate:
                held = await self._hold_if_closed(inp, key, counts)
                if held is not None:
                    return held, _UNSETTLED
            opened = await self._store.offload(open_send)
        earlier, customer, claimed = opened
        if earlier is not None and earlier.status in ("sent", "skipped", "pending_confirmation"):
            # A retry after the message already went out (the worker crashed before
            # reporting): report the recorded outcome, never send twice.
            if counts is not None and not claimed:
                await self._store.offload(self._store.apply_tally, counts)
            if earlier.status == "pending_confirmation" and self._confirmations is not None:
                # The crash may have come before the sweep was signalled; signalling again is harmless.
                await self._confirmations()
            recorded = SendResult(
                status=earlier.status,
                reason=earlier.reason,
                msgid=(earlier.response or {}).get("msgid"),
                recipients=list(earlier.recipients),
            )
            return recorded, _UNSETTLED
        if inp.skip_reason:
            return await self._skip(inp, key, inp.skip_reason, counts), _UNSETTLED
        if governed and not claimed:
            held = await self._apply_policy(inp, key, customer, now, counts)
            if held is not None:
                return held, _UNSETTLED
            await self._store.offload(self._store.begin_send, self._attempt_row(inp, key, "sending"), counts=counts)
        context = _context(inp, customer)
        try:
            rendered = render(inp.channel, inp.message, customer, context, strict=inp.strict)
        except DeliveryError as exc:
            await self._give_back(governed, inp, key)
            await self._finish(key, "skipped", exc.reason, None)
            return SendResult(status="skipped", reason=exc.reason), _UNSETTLED
        except RuleError as exc:
            await self._give_back(governed, inp, key)
            await self._finish(key, "failed", "template_error", {"error": exc.message})
            raise ApplicationError(exc.message, type="TemplateError", non_retryable=True) from exc
        # Before delivering: nothing may stand between a delivery and logging it (a failure or
        # a cancellation there would leave the attempt "sending", and a retry would send again).
        settling = await self._prepare_settlement(inp)
        delivery = self._deliver_and_log(inp, key, earlier, rendered, governed, now, settling)
        return await self._delivering(key, delivery)

    async def _delivering(
        self, key: str, delivery: Coroutine[Any, Any, tuple[SendResult, _Settled]]
    ) -> tuple[SendResult, _Settled]:
        """Run ``delivery`` to its end even if this attempt is cancelled meanwhile.

        A local activity's timeout cancels its attempt (the SDK enforces it in the worker),
        and a cancellation between WeCom's answer and the log would leave the attempt
        ``sending`` for the retry to deliver again. Shielded, the delivery goes on and logs
        its outcome; a retry of the same step visit in this process waits for it (``_deliver``).
        """
        task = asyncio.create_task(delivery)
        self._in_flight[key] = task

        def done(finished: asyncio.Task[tuple[SendResult, _Settled]]) -> None:
            if self._in_flight.get(key) is finished:
                del self._in_flight[key]
            if not finished.cancelled():
                finished.exception()  # retrieved: an attempt cancelled meanwhile never awaits it

        task.add_done_callback(done)
        return await asyncio.shield(task)

    async def _deliver_and_log(self, inp: SendInput, key: str, earlier: MessageRow | None, rendered: Rendered,
                               governed: bool, now: datetime,
                               settling: _Settlement) -> tuple[SendResult, _Settled]:  # fmt: skip
        """Deliver the rendered message (or adopt the task an interrupted attempt created) and log the outcome."""
        try:
            delivered = None
            if earlier is not None and earlier.status == "sending" and inp.channel == "wecom.customer":
                # An earlier attempt may have created the task before dying: adopt it, not a second one.
                delivered = await self._reconcile(inp, key, earlier, rendered)
            if delivered is None:
                delivered = await deliver(self._wecom, inp.channel, rendered, webhook=self._webhook,
                                          idempotency_key=key)  # fmt: skip
        except RateLimited as exc:
            # Wait for the slot instead of sending into WeCom's silent drop; the row stays "sending".
            delay = timedelta(seconds=max(1.0, exc.retry_after_s))
            raise ApplicationError(str(exc), type="RateLimited", next_retry_delay=delay) from exc
        except WeComError as exc:
            if exc.retryable:
                raise  # Temporal retries with the step's policy; the row stays "sending"
            await self._give_back(governed, inp, key)
            await self._finish(key, "failed", f"wecom_{exc.errcode}", exc.body or {"errmsg": exc.errmsg}, rendered)
            raise ApplicationError(str(exc), exc.errcode, type="WeComError", non_retryable=True) from exc
        except DeliveryError as exc:
            await self._give_back(governed, inp, key)
            if exc.skip:
                await self._finish(key, "skipped", exc.reason, None, rendered)
                return SendResult(status="skipped", reason=exc.reason), _UNSETTLED
            await self._finish(key, "failed", exc.reason, None, rendered)
            raise ApplicationError(str(exc), type="DeliveryError", non_retryable=True) from exc
        if governed and not (inp.policy and inp.policy.frequency_caps):
            # Uncapped here, but other journeys' caps count this send too.
            await self._caps.record(inp.customer_id, key, now)
        reason = f"partial: {', '.join(delivered.failed_recipients)}" if delivered.failed_recipients else None
        if inp.channel == "wecom.customer" and delivered.msgid and self._confirmations is not None:
            # A task, not a delivery: the staff member must confirm it in the WeCom client.
            # The shared sweep checks it from its next round on (activities/confirmations.py);
            # its event comes from there. After the last step the enrollment's end is logged
            # with the task: waking the sweep, which follows the commit, never fails the attempt.
            settled = await self._settle(inp, key, "pending_confirmation", reason, delivered, rendered, settling)
            await self._confirmations()
            result = SendResult(status="pending_confirmation", msgid=delivered.msgid, recipients=rendered.recipients)
            return result, settled
        settled = await self._settle(inp, key, "sent", reason, delivered, rendered, settling)
        return SendResult(status="sent", reason=reason, msgid=delivered.msgid, recipients=rendered.recipients), settled

    async def _admit_then_open(
        self, admission: AdmitInput, open_send: Callable[[], OpenedSend]
    ) -> tuple[SendResult | None, OpenedSend | None]:
        """The admission this send carries, then (if admitted) the send's reads and claim.

        On a first attempt both in one thread trip to the SQL thread; the admission's fresh
        look at the journey's status stands in for the send's gate check. A retried attempt
        admits alone (its send then checks the gate as any other).

        Returns:
            (``refused`` if the customer is not admitted, ``open_send``'s answer if it ran).

        Raises:
            ApplicationError: Non-retryable if this worker was built without admissions.
        """
        if self._admission is None:
            raise ApplicationError("this send carries an admission and the worker has none to run it",
                                   type="ConfigurationError", non_retryable=True)  # fmt: skip
        parts = self._admission
        if activity.info().attempt > 1:
            admitted = await parts.enroll(admission, retried=True)
            return (None if admitted.admitted else SendResult(status="refused", reason=admitted.reason)), None
        prepared = await parts.prepare(admission)
        rerun_possible = possibly_run_before()

        def decide_then_open() -> tuple[AdmissionDecision, OpenedSend | None]:
            decision = parts.decide(prepared, retried=rerun_possible)
            return decision, (open_send() if decision.admitted else None)

        decision, opened = await self._store.offload(decide_then_open)
        admitted = await parts.conclude(prepared, decision)
        if not admitted.admitted:
            return SendResult(status="refused", reason=admitted.reason), None
        return None, opened

    async def _prepare_settlement(self, inp: SendInput) -> _Settlement:
        """What a delivery that is ``sent`` logs with its outcome, ready to store.

        Its ``message.sent`` (the ``msgid`` is added once known) and, after the last step,
        the enrollment's end. A customer task that will wait for confirmation gets no event
        here: the sweep announces its outcome.
        """
        event = None
        awaits_confirmation = inp.channel == "wecom.customer" and self._confirmations is not None
        if self._events is not None and not awaits_confirmation:
            event = await self._events.prepare(**_event_fields(inp, "message.sent", {}))
        end = None
        if inp.finish is not None:
            end = await prepare_end(self._events, inp.finish)
            if event is not None and end.exited is not None:
                # Recovery routes undispatched events in order of receipt: the message's first.
                end.exited.received_at = max(end.exited.received_at, event.received_at + timedelta(microseconds=1))
        return _Settlement(event, end)

    async def _settle(self, inp: SendInput, key: str, status: str, reason: str | None, delivered: Delivered,
                      rendered: Rendered, settling: _Settlement) -> _Settled:  # fmt: skip
        """Log a delivery's outcome (``status``) with its ``message.sent`` and, after the last step, the end.

        One commit for the three instead of three (thread trips and commits are most of a
        busy worker, bench/RESULTS.md), then both events are routed. Should the shared
        transaction fail, the outcome is logged alone as before and the event and the end
        are left to ``send`` and the workflow: the message is out, and its log must not
        wait on them.
        """
        event, end = settling
        if event is None and end is None:
            await self._finish(key, status, reason, delivered.response, rendered)
            return _UNSETTLED
        if event is not None:
            event.properties["msgid"] = delivered.msgid
        try:
            recorded = await self._finish(key, status, reason, delivered.response, rendered, event=event, end=end)
        except Exception:  # noqa: BLE001 - the outcome is logged alone below (or that raises)
            activity.logger.warning("send %s: logging the outcome with its event and end failed; logging it alone",
                                    key, exc_info=True)  # fmt: skip
            await self._finish(key, status, reason, delivered.response, rendered)
            return _UNSETTLED
        if event is not None and self._events is not None:
            await self._events.stored(event, new=recorded.event)
        if end is None or inp.finish is None:
            return _Settled(announced=event is not None, finished=None)
        announcing = announce_end(self._wecom.redis, self._events, inp.finish, end, stored=recorded.exited)
        return _Settled(announced=event is not None, finished=await self._end_recorded(announcing, inp.finish))

    async def _hold_if_closed(self, inp: SendInput, key: str, counts: CountBatch | None) -> SendResult | None:
        """``held`` when the journey is paused or archived and this step visit has not begun.

        The open gate costs one Redis read. A step an earlier attempt already began is
        finished, not held: a pause stops actions from starting, it does not interrupt one
        under way.
        """
        if not (await read_gate(self._wecom.redis, self._store, inp.journey_id)).closed:
            return None
        if await self._store.offload(self._store.get_send, key) is not None:
            return None
        gate = await check_gate(self._wecom.redis, self._store, inp.journey_id, activity.info().workflow_id)
        if not gate.closed:
            return None  # resumed meanwhile
        if counts is not None:
            await self._store.offload(self._store.apply_tally, counts)
        # Nothing is logged: the workflow holds and sends this step visit later (or never).
        return SendResult(status="held", gate=gate_state(gate))

    async def _reconcile(self, inp: SendInput, key: str, earlier: MessageRow, rendered: Rendered) -> Delivered | None:
        """The task an interrupted attempt of this send created, if WeCom has one (see ``activities.reconcile``)."""
        claimed = await self._store.offload(self._store.claimed_msgids, inp.customer_id, inp.channel, excluding=key)
        since = aware(earlier.created_at) or utcnow()
        msgid = await find_mass_send(self._wecom, customer_payload(rendered), since=since, until=utcnow(),
                                     claimed=claimed)  # fmt: skip
        if msgid is None:
            return None
        activity.logger.info("send %s: adopting mass-send task %s created by an interrupted attempt", key, msgid)
        metrics.SENDS.labels(inp.channel, "reconciled", "").inc()
        return Delivered(msgid=msgid, response={"errcode": 0, "errmsg": "ok", "fail_list": [], "msgid": msgid,
                                                "reconciled": True})  # fmt: skip

    async def _apply_policy(self, inp: SendInput, key: str, customer: dict[str, Any], now: datetime,
                            counts: CountBatch | None) -> SendResult | None:  # fmt: skip
        """Opt-out, quiet hours, then caps. Returns the outcome if the send may not go now.

        ``counts`` are added with the attempt a skip or a deferral logs.
        """
        held = _held_by_profile(inp, now, customer)
        if held is not None:
            reason, until = held
            if until is None:
                return await self._skip(inp, key, reason, counts)
            return await self._defer(inp, key, reason, until, counts)
        policy = inp.policy
        if policy is None:
            return None
        if policy.frequency_caps:
            decision = await self._caps.reserve(inp.customer_id, key, now, policy.frequency_caps)
            if not decision.allowed:
                if policy.on_capped == "defer" and decision.free_at is not None:
                    return await self._defer(inp, key, "frequency_cap", decision.free_at, counts)
                return await self._skip(inp, key, "frequency_cap", counts)
        return None

    async def _skip(self, inp: SendInput, key: str, reason: str, counts: CountBatch | None) -> SendResult:
        row = self._attempt_row(inp, key, "skipped")
        row.reason = reason
        earlier = await self._store.offload(self._store.begin_send, row, counts=counts)
        if earlier is not None and earlier.status not in ("sent", "skipped"):
            await self._finish(key, "skipped", reason, None, expect=(earlier.status, earlier.reason))
        return SendResult(status="skipped", reason=reason)

    async def _defer(self, inp: SendInput, key: str, reason: str, until: datetime,
                     counts: CountBatch | None) -> SendResult:  # fmt: skip
        """Log a ``deferred`` attempt; the workflow sleeps until ``until`` and sends again."""
        row = self._attempt_row(inp, f"{key}@{inp.now}", "deferred")
        row.reason = reason
        await self._store.offload(self._store.begin_send, row, counts=counts)
        return SendResult(status="deferred", reason=reason, retry_at=until.isoformat())

    async def _give_back(self, governed: bool, inp: SendInput, key: str) -> None:
        if governed and inp.policy and inp.policy.frequency_caps:
            await self._caps.release(inp.customer_id, key)

    def _attempt_row(self, inp: SendInput, key: str, status: str) -> MessageRow:
        return MessageRow(
            idempotency_key=key,
            enrollment_id=inp.enrollment_id,
            journey_id=inp.journey_id,
            version=inp.version,
            step_id=inp.step_id,
            visit=inp.visit,
            customer_id=inp.customer_id,
            channel=inp.channel,
            recipients=[],
            content={},
            status=status,
            at=datetime.fromisoformat(inp.now),
            created_at=utcnow(),
        )

    async def _finish(
        self, key: str, status: str, reason: str | None, response: dict[str, Any] | None, rendered: Any = None,
        expect: tuple[str, str | None] = ("sending", None), event: EventRow | None = None,
        end: EnrollmentEnd | None = None,
    ) -> SendRecorded:  # fmt: skip
        return await self._store.offload(
            self._store.finish_send,
            key,
            status=status,
            reason=reason,
            response=response,
            content=rendered.content if rendered else None,
            recipients=rendered.recipients if rendered else None,
            sender=rendered.sender if rendered else None,
            expect=expect,
            event=event,
            end=end,
        )


class _Settled(NamedTuple):
    """What a delivery recorded with its outcome."""

    #: Its ``message.sent`` was stored (and routed) with the outcome.
    announced: bool
    #: The enrollment's end the send carries: recorded (True), handed back to the workflow
    #: (False), or not recorded here (None: ``send`` records it).
    finished: bool | None


_UNSETTLED = _Settled(announced=False, finished=None)


class _Settlement(NamedTuple):
    """What a sent message logs with its outcome, prepared before the delivery."""

    event: EventRow | None
    end: EnrollmentEnd | None


def _event_fields(inp: SendInput, name: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The fields of the engine event ``name`` about this send (``EngineEvents.emit`` / ``prepare``)."""
    return {
        "event_id": f"{idempotency_key(inp)}:{name}", "customer_id": inp.customer_id, "name": name,
        "at": datetime.fromisoformat(inp.now),
        "properties": {"journey": inp.journey_id, "version": inp.version, "enrollment_id": inp.enrollment_id,
                       "workflow_id": activity.info().workflow_id, "step": inp.step_id, "channel": inp.channel,
                       **extra},
    }  # fmt: skip


def _held_by_profile(inp: SendInput, now: datetime, profile: dict[str, Any]) -> tuple[str, datetime | None] | None:
    """Why the policy's checks on the profile hold a governed send back now, if they do.

    Returns:
        None if they let it go, else (why, when to try again; None: skip it). Frequency caps
        are not checked here: they need Redis (``_apply_policy``).
    """
    if opted_out(profile):
        return "opted_out", None
    quiet = inp.policy.quiet_hours if inp.policy is not None else None
    if quiet is not None:
        until = quiet_until(now, customer_zone(profile, inp.timezone), quiet)
        if until is not None:
            return "quiet_hours", (None if quiet.action == "skip" else until)
    return None


def _context(inp: SendInput, customer: dict[str, Any]) -> dict[str, Any]:
    return {
        "customer": customer,
        "trigger": inp.trigger.as_context(),
        "vars": inp.vars,
        "journey": inp.journey,
        "steps": inp.steps,
        "now": datetime.fromisoformat(inp.now),
    }
