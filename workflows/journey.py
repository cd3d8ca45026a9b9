"""The journey interpreter: one workflow per enrollment, walking a frozen plan.

Each loop iteration runs one plan node. Waits are Temporal timers; events arrive by
signal and are matched against rules through a local activity (rules never run in
workflow code). A send that fails for good parks the enrollment in ``needs_attention``
until an operator retries, skips or exits it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from engine.plan import END, EXIT, PARK, SendNode, WaitForNode, WaitNode, event_name_matches
    from workflows.messages import (
        ADMIT,
        EVENT_SIGNAL,
        FINISH,
        MATCH,
        SEND,
        STATUS_QUERY,
        AdmitInput,
        AdmitResult,
        EnrollmentInput,
        EnrollmentState,
        EventData,
        FinishInput,
        MatchInput,
        OperatorExit,
        SendInput,
        SendResult,
    )

_LOCAL = timedelta(seconds=30)
#: How many event ids to remember for de-duplicating redelivered signals.
_SEEN_LIMIT = 512


class _Stop(Exception):
    """Internal: the enrollment must end now (operator exit)."""


@workflow.defn(name="JourneyWorkflow")
class JourneyWorkflow:
    """Runs one customer through one journey version."""

    def __init__(self) -> None:
        self._inp: EnrollmentInput | None = None
        self._events: list[EventData] = []
        self._events_base = 0  # absolute sequence number of self._events[0]
        self._seen: list[str] = []
        self._status = "starting"
        self._current: str | None = None
        self._wake_at: datetime | None = None
        self._path: list[str] = []
        self._visits: dict[str, int] = {}
        self._results: dict[str, Any] = {}
        self._exit_reason: str | None = None
        self._attention: str | None = None
        self._operator_exit: str | None = None
        self._operator_action: str | None = None
        self._entered_at: datetime | None = None

    # -- clock --------------------------------------------------------------------

    def _now(self) -> datetime:
        offset = self._inp.clock_offset_s if self._inp else 0.0
        return workflow.now() + timedelta(seconds=offset)

    # -- messages -----------------------------------------------------------------

    @workflow.signal(name=EVENT_SIGNAL)
    def event(self, ev: EventData) -> None:
        """Receive one of the customer's events (duplicates by id are dropped)."""
        if ev.event_id in self._seen:
            return
        self._seen.append(ev.event_id)
        if len(self._seen) > _SEEN_LIMIT:
            del self._seen[: len(self._seen) - _SEEN_LIMIT]
        self._events.append(ev)

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> EnrollmentState:
        """Live state: current step, next wake-up, path, step results."""
        inp = self._inp
        info = workflow.info()
        return EnrollmentState(
            enrollment_id=self._enrollment_id(),
            workflow_id=info.workflow_id,
            journey_id=inp.plan.journey_id if inp else "",
            version=inp.version if inp else 0,
            customer_id=inp.customer_id if inp else "",
            key=inp.key if inp else None,
            status=self._status,
            current_step=self._current,
            next_wake_at=self._wake_at.isoformat() if self._wake_at else None,
            path=list(self._path),
            steps=dict(self._results),
            entered_at=self._entered_at.isoformat() if self._entered_at else None,
            exit_reason=self._exit_reason,
            attention_reason=self._attention,
        )

    @workflow.update(name="exit")
    def exit_enrollment(self, request: OperatorExit) -> str:
        """Operator: end this enrollment now (``exit_reason: operator``)."""
        self._operator_exit = request.reason or "operator"
        return self._status

    @exit_enrollment.validator
    def _validate_exit(self, request: OperatorExit) -> None:
        del request
        if self._status in ("exited", "refused"):
            raise ApplicationError(f"enrollment already {self._status}", type="JourneyStateError")

    @workflow.update(name="retry")
    def retry_step(self) -> str:
        """Operator: run the parked step again."""
        self._operator_action = "retry"
        return self._current or ""

    @retry_step.validator
    def _validate_retry(self) -> None:
        self._require_parked("retry")

    @workflow.update(name="skip")
    def skip_step(self) -> str:
        """Operator: skip the parked step and continue with the next one."""
        self._operator_action = "skip"
        return self._current or ""

    @skip_step.validator
    def _validate_skip(self) -> None:
        self._require_parked("skip")

    def _require_parked(self, action: str) -> None:
        if self._status != "needs_attention":
            raise ApplicationError(
                f"cannot {action}: enrollment is {self._status}, not needs_attention", type="JourneyStateError"
            )

    # -- run ----------------------------------------------------------------------

    def _enrollment_id(self) -> str:
        info = workflow.info()
        return info.first_execution_run_id or info.run_id

    @workflow.run
    async def run(self, inp: EnrollmentInput) -> EnrollmentState:
        """Admit the customer, walk the plan, record how it ended."""
        self._inp = inp
        self._seen.append(inp.trigger.event_id)  # its own trigger is not a later event
        self._entered_at = self._now()
        info = workflow.info()
        admitted: AdmitResult = await workflow.execute_local_activity(
            ADMIT,
            AdmitInput(
                enrollment_id=self._enrollment_id(),
                workflow_id=info.workflow_id,
                journey_id=inp.plan.journey_id,
                version=inp.version,
                customer_id=inp.customer_id,
                key=inp.key,
                trigger_event_id=inp.trigger.event_id,
                entered_at=self._entered_at.isoformat(),
            ),
            result_type=AdmitResult,
            start_to_close_timeout=_LOCAL,
        )
        if not admitted.admitted:
            self._status = "refused"
            self._exit_reason = admitted.reason
            return self.status()
        self._status = "running"
        try:
            await self._walk(inp)
        except _Stop:
            self._exit_reason = "operator"
        self._status = "exited"
        self._current = None
        self._wake_at = None
        await self._record(status="exited")
        return self.status()

    async def _walk(self, inp: EnrollmentInput) -> None:
        plan = inp.plan
        node_id = plan.start
        # Bounded interpreter: the compiler rejects loops without a wait, so more
        # transitions than nodes between two waits means a bug, not a long journey.
        budget = len(plan.nodes) + 1
        while node_id not in (END, EXIT):
            self._check_stop()
            budget -= 1
            if budget < 0:
                workflow.logger.error("step budget exhausted at %s; ending enrollment", node_id)
                self._exit_reason = "error"
                return
            node = plan.node(node_id)
            self._current = node.id
            self._path.append(node.id)
            self._visits[node.id] = self._visits.get(node.id, 0) + 1
            if isinstance(node, SendNode):
                node_id = await self._send(node)
            elif isinstance(node, WaitNode):
                budget = len(plan.nodes) + 1
                await self._sleep(timedelta(seconds=node.seconds))
                node_id = node.next
            elif isinstance(node, WaitForNode):
                budget = len(plan.nodes) + 1
                node_id = await self._wait_for(node)
            else:  # pragma: no cover - the plan union is closed
                raise ApplicationError(f"unknown node kind {type(node).__name__}", non_retryable=True)
        self._exit_reason = "exit_step" if node_id == EXIT else "completed"

    def _check_stop(self) -> None:
        if self._operator_exit is not None:
            raise _Stop()

    async def _sleep(self, duration: timedelta) -> None:
        self._wake_at = self._now() + duration
        try:
            await workflow.wait_condition(lambda: self._operator_exit is not None, timeout=duration)
        except TimeoutError:
            pass
        finally:
            self._wake_at = None
        self._check_stop()

    # -- steps --------------------------------------------------------------------

    def _context(self) -> dict[str, Any]:
        assert self._inp is not None
        return {
            "vars": self._inp.plan.vars,
            "journey": {
                "id": self._inp.plan.journey_id,
                "version": self._inp.version,
                "entered_at": self._entered_at.isoformat() if self._entered_at else None,
                "key": self._inp.key,
            },
            "steps": dict(self._results),
        }

    async def _send(self, node: SendNode) -> str:
        assert self._inp is not None
        inp = self._inp
        while True:
            ctx = self._context()
            try:
                result: SendResult = await workflow.execute_activity(
                    SEND,
                    SendInput(
                        enrollment_id=self._enrollment_id(),
                        journey_id=inp.plan.journey_id,
                        version=inp.version,
                        step_id=node.id,
                        visit=self._visits[node.id],
                        customer_id=inp.customer_id,
                        channel=node.channel,
                        message=node.message,
                        trigger=inp.trigger,
                        vars=ctx["vars"],
                        journey=ctx["journey"],
                        steps=ctx["steps"],
                        now=self._now().isoformat(),
                        category=inp.plan.category,
                    ),
                    result_type=SendResult,
                    start_to_close_timeout=timedelta(seconds=node.timeout_s),
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(seconds=node.retry.initial_s),
                        backoff_coefficient=node.retry.backoff,
                        maximum_interval=timedelta(seconds=node.retry.max_interval_s),
                        maximum_attempts=node.retry.max_attempts,
                    ),
                )
            except ActivityError as err:
                reason = _failure_reason(err)
                self._results[node.id] = {"status": "failed", "reason": reason}
                if node.on_error != PARK:
                    return node.on_error
                action = await self._park(f"step {node.id} failed: {reason}")
                if action == "retry":
                    continue
                self._results[node.id] = {"status": "skipped", "reason": "operator"}
                return node.next
            self._results[node.id] = {"status": result.status, "reason": result.reason, "msgid": result.msgid}
            return node.next

    async def _park(self, why: str) -> str:
        """Wait for an operator; returns ``retry`` or ``skip`` (exit raises _Stop)."""
        self._status = "needs_attention"
        self._attention = why
        await self._record(status="needs_attention", exit_reason=None)
        await workflow.wait_condition(lambda: self._operator_action is not None or self._operator_exit is not None)
        action, self._operator_action = self._operator_action, None
        self._status = "running"
        self._attention = None
        await self._record(status="running", exit_reason=None)
        self._check_stop()
        assert action is not None
        return action

    async def _wait_for(self, node: WaitForNode) -> str:
        # Only events that arrive after the wait began count (journey-dsl §6a.2).
        self._drop_consumed()
        cursor = self._events_base + len(self._events)
        deadline = self._now() + timedelta(seconds=node.timeout_s)
        self._wake_at = deadline
        try:
            while True:
                while cursor < self._events_base + len(self._events):
                    ev = self._events[cursor - self._events_base]
                    cursor += 1
                    if await self._matches(node.event, node.when, ev):
                        self._results[node.id] = {"matched": True, "event": ev.as_context()}
                        return node.on_event
                remaining = deadline - self._now()
                if remaining <= timedelta(0):
                    self._results[node.id] = {"matched": False, "event": None}
                    return node.on_timeout
                try:
                    await workflow.wait_condition(
                        lambda seen=cursor: (
                            self._events_base + len(self._events) > seen  # type: ignore[misc]
                            or self._operator_exit is not None
                        ),
                        timeout=remaining,
                    )
                except TimeoutError:
                    pass
                self._check_stop()
        finally:
            self._wake_at = None
            self._drop_consumed()

    def _drop_consumed(self) -> None:
        self._events_base += len(self._events)
        self._events.clear()

    async def _matches(self, pattern: str, rule: str | None, ev: EventData) -> bool:
        if not event_name_matches(pattern, ev.name):
            return False
        if rule is None:
            return True
        assert self._inp is not None
        ctx = self._context()
        return bool(
            await workflow.execute_local_activity(
                MATCH,
                MatchInput(
                    rule=rule,
                    customer_id=self._inp.customer_id,
                    event=ev,
                    trigger=self._inp.trigger,
                    vars=ctx["vars"],
                    journey=ctx["journey"],
                    steps=ctx["steps"],
                    now=self._now().isoformat(),
                ),
                result_type=bool,
                start_to_close_timeout=_LOCAL,
            )
        )

    async def _record(self, *, status: str, exit_reason: str | None = None) -> None:
        assert self._inp is not None
        await workflow.execute_local_activity(
            FINISH,
            FinishInput(
                enrollment_id=self._enrollment_id(),
                workflow_id=workflow.info().workflow_id,
                customer_id=self._inp.customer_id,
                status=status,
                exit_reason=exit_reason if status != "exited" else self._exit_reason,
                at=self._now().isoformat(),
            ),
            start_to_close_timeout=_LOCAL,
        )


def _failure_reason(err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'error'}: {cause.message}"
    return str(cause or err)
