"""The journey interpreter: one workflow per enrollment, walking a frozen plan.

Each loop iteration runs one plan node. Waits are Temporal timers; events arrive by
signal and are consumed in arrival order: first against the journey's ``goal`` and
``exit_when`` (they take precedence, journey-dsl §6a.1), then against the ``wait_for`` in
progress, if any. Rules never run here: they are evaluated by local activities on the
customer's fresh profile. A step that fails for good parks the enrollment in
``needs_attention`` until an operator retries, skips or exits it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from engine.plan import (
        END,
        EXIT,
        PARK,
        ActivityNode,
        BranchNode,
        ExitNode,
        GotoNode,
        JourneyPlan,
        MatcherPlan,
        PlanNode,
        RetryPlan,
        SendNode,
        SplitNode,
        TagNode,
        UpdateNode,
        WaitForNode,
        WaitNode,
        WaitUntilNode,
        event_name_matches,
    )
    from workflows.messages import (
        ADMIT,
        ARCHIVE_SIGNAL,
        BRANCH,
        CONVERTED,
        EVENT_SIGNAL,
        FINISH,
        GATE,
        MATCH,
        NEXT_TIME,
        RESUME_SIGNAL,
        SEND,
        STATUS_QUERY,
        TAG,
        TALLY,
        UPDATE,
        ActivityCall,
        AdmitInput,
        AdmitResult,
        BranchInput,
        BranchResult,
        ConvertedInput,
        EnrollmentInput,
        EnrollmentState,
        EventData,
        FinishInput,
        GateInput,
        GateState,
        MatchInput,
        NextTimeInput,
        OperatorExit,
        ResumeState,
        RuleContext,
        SendInput,
        SendResult,
        TagInput,
        TallyEntry,
        TallyInput,
        UpdateInput,
    )

_LOCAL = timedelta(seconds=30)
#: Counter metrics (engine.counters; repeated here because workflows import no I/O modules).
_STEP_ENTERED = "step.entered"
_STEP_COMPLETED = "step.completed"
_ARM_ENROLLED = "arm.enrolled"
#: How many event ids to remember for de-duplicating redelivered signals.
_SEEN_LIMIT = 512
#: Patch: sends and the final record carry the step counts, and a send checks the pause gate
#: itself, instead of an activity and a local activity of their own (bench/RESULTS.md).
_CARRY = "send-carries-bookkeeping"
#: Patch: every change above under one marker. The SDK records a marker and upserts the
#: ``TemporalChangeVersion`` search attribute for each patch a run meets, and a new
#: enrollment met two to five; now it meets this one (bench/RESULTS.md). Histories from
#: before it replay the per-change patches, which stay checked for them.
_FOLDED = "interpreter-2"
_FOLDED_PATCHES = frozenset({"journey-converted-event", "pause-gate", "send-deferral", _CARRY, "step-tally"})
#: Patch: ``interpreter-2`` plus a trigger that comes only as the workflow's input, without
#: the start signal that repeated it (engine/temporal.py ``start_enrollment``): the run
#: queues it for goal and exit_when as the signal did. One marker, as before.
_TRIGGER_AS_INPUT = "interpreter-3"
#: Patch: ``interpreter-3`` plus the admission carried by the first step's send when the
#: plan starts with one and nothing listens to the trigger (no goal, no exit_when): one
#: local activity (a workflow activation and a marker) fewer before the first message
#: (bench/RESULTS.md). One marker, as before.
_ADMIT_WITH_SEND = "interpreter-4"
#: Step counts are not held back longer than this: a wait that would keep them waiting
#: longer sends them on their own as before.
_CARRY_WINDOW = timedelta(seconds=60)
#: A local send's retry whose backoff is longer than this waits on a timer (``_run_send``).
_LOCAL_SEND_RETRY_THRESHOLD = timedelta(seconds=1)


class _End(Exception):
    """Internal: the enrollment ends now (goal, exit_when or operator)."""


class _Refused(Exception):
    """Internal: the admission the first send carried refused the customer."""

    def __init__(self, reason: str | None) -> None:
        super().__init__(reason)
        self.reason = reason


def split_arm(journey_id: str, customer_id: str, arms: list[tuple[str, float]]) -> str:
    """Sticky weighted assignment: a stable hash of (journey, customer, arms and weights).

    The same customer gets the same arm on re-entry and in every version that keeps the
    arms and weights (journey-dsl §6a.12).
    """
    key = journey_id + "\x1f" + customer_id + "\x1f" + "\x1e".join(f"{a}={w:g}" for a, w in arms)
    fraction = int(hashlib.sha256(key.encode()).hexdigest()[:15], 16) / float(16**15)
    total = sum(w for _, w in arms)
    point = fraction * total
    for arm, weight in arms:
        if point < weight:
            return arm
        point -= weight
    return arms[-1][0]


class _JourneyInterpreter:
    """Runs one customer through one journey version: the interpreter both workflow types share.

    Which interpreter changes a run takes is decided by its type (``JourneyWorkflow``,
    ``JourneyV4Workflow`` and ``PatchedJourneyWorkflow`` below) before ``_interpret`` starts.
    """

    #: The type takes every change up to ``interpreter-4`` without asking for a patch.
    _PATCH_FREE = False
    #: The type runs its sends as local activities (``_run_send``).
    _local_sends = False

    def __init__(self) -> None:
        self._inp: EnrollmentInput | None = None
        self._inbox: list[EventData] = []
        self._seen: list[str] = []
        self._status = "starting"
        self._current: str | None = None
        self._wake_at: datetime | None = None
        self._path: list[str] = []
        self._visits: dict[str, int] = {}
        self._results: dict[str, Any] = {}
        self._arms: dict[str, str] = {}
        self._converted = False
        self._exit_reason: str | None = None
        self._attention: str | None = None
        self._operator_exit: str | None = None
        self._operator_action: str | None = None
        self._entered_at: datetime | None = None
        self._visits_this_run = 0
        self._resume: GateState | None = None
        self._tally: list[TallyEntry] = []
        self._tally_seq = 0
        self._tally_since: datetime | None = None
        self._flushing: list[workflow.ActivityHandle[Any]] = []
        # Set here, not in run: signal and update handlers may run before run does. A type
        # that is not patch-free decides them by its history's markers in run.
        self._folded = self._trigger_as_input = self._admit_with_send = self._PATCH_FREE
        #: The first step's send is still to admit the customer (``interpreter-4``).
        self._admission_pending = False
        #: The end of the enrollment, recorded with its last step's send (``_send``).
        self._closing: FinishInput | None = None
        self._closed = False

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
        self._inbox.append(ev)

    @workflow.signal(name=RESUME_SIGNAL)
    def resume(self, policy: GateState) -> None:
        """The journey was resumed: held actions go on under the pause's policy."""
        self._resume = policy

    @workflow.signal(name=ARCHIVE_SIGNAL)
    def archive(self) -> None:
        """The journey was archived: end now (``exit_reason: operator``)."""
        self._operator_exit = "archived"

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> EnrollmentState:
        """Live state: current step, next wake-up, path, step results, arm, conversion."""
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
            converted=self._converted,
            arm=next(iter(self._arms.values()), None),
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

    async def _interpret(self, inp: EnrollmentInput) -> EnrollmentState:
        """Admit the customer, walk the plan, record how it ended."""
        self._inp = inp
        start = inp.plan.start
        if inp.resume is not None:
            start = self._restore(inp.resume)
        else:
            if self._trigger_as_input and inp.trigger.event_id not in self._seen:
                # First, as the start signal's copy was: signals of this activation came after it.
                self._inbox.insert(0, inp.trigger)
            self._seen.append(inp.trigger.event_id)  # its own trigger is not a later event
            self._entered_at = self._now()
            if self._admits_with_first_send(inp):
                self._admission_pending = True
            else:
                admitted = await self._admit(inp)
                if not admitted.admitted:
                    return self._refuse(admitted.reason)
        self._status = "running"
        try:
            await self._walk(inp.plan, start)
        except _End:
            # Ended before the first send ran (an operator exit): admit first, so that the
            # end is recorded for an enrollment that exists.
            if self._admission_pending:
                self._admission_pending = False
                try:
                    await self._admit_or_refuse()
                except _Refused as refusal:
                    return self._refuse(refusal.reason)
        except _Refused as refusal:
            return self._refuse(refusal.reason)
        self._status = "exited"
        self._current = None
        self._wake_at = None
        if self._closing is not None:
            # The last send recorded the end (or, if it could not, hands it back to record here).
            if not self._closed:
                await self._record_finish(self._closing)
        elif self._carrying():
            await self._settled()
            await self._record(status="exited", tally=self._take_tally())
        else:
            await self._settle_tally()
            await self._record(status="exited")
        return self.status()

    def _admits_with_first_send(self, inp: EnrollmentInput) -> bool:
        """Whether the first step's send admits the customer (``interpreter-4``).

        Only when nothing runs before that send: the plan starts with it and no goal or
        exit_when looks at the trigger (a goal met by it would be recorded before the
        enrollment exists).
        """
        return self._admit_with_send and isinstance(inp.plan.node(inp.plan.start), SendNode) and not self._listens()

    def _admit_input(self, inp: EnrollmentInput) -> AdmitInput:
        plan = inp.plan
        return AdmitInput(
            enrollment_id=self._enrollment_id(), workflow_id=workflow.info().workflow_id, journey_id=plan.journey_id,
            version=inp.version, customer_id=inp.customer_id, key=inp.key, trigger_event_id=inp.trigger.event_id,
            entered_at=self._entered_at.isoformat() if self._entered_at else "", audience=plan.audience,
            reentry=plan.reentry.mode, cooldown_s=plan.reentry.cooldown_s, trigger=inp.trigger, vars=plan.vars,
            listens=plan.listens(),
        )  # fmt: skip

    async def _admit(self, inp: EnrollmentInput) -> AdmitResult:
        return await workflow.execute_local_activity(
            ADMIT, self._admit_input(inp), result_type=AdmitResult, start_to_close_timeout=_LOCAL
        )

    async def _admit_or_refuse(self) -> None:
        """Admit by the admission activity when the first send did not run, or could not tell.

        A failed send leaves open whether its admission ran; a retried admission of a
        recorded enrollment answers admitted without checking again.

        Raises:
            _Refused: The customer is not admitted.
        """
        assert self._inp is not None
        admitted = await self._admit(self._inp)
        if not admitted.admitted:
            raise _Refused(admitted.reason)

    def _refuse(self, reason: str | None) -> EnrollmentState:
        """End a run whose customer was not admitted: nothing of it counts or is recorded."""
        self._status = "refused"
        self._exit_reason = reason
        self._current = None
        self._path, self._visits, self._tally = [], {}, []
        return self.status()

    def _restore(self, state: ResumeState) -> str:
        self._path = list(state.path)
        self._results = dict(state.steps)
        self._visits = dict(state.visits)
        self._entered_at = datetime.fromisoformat(state.entered_at)
        self._converted = state.converted
        self._arms = dict(state.arms)
        self._seen = list(state.seen)
        self._inbox = list(state.pending)
        self._tally_seq = state.tally_seq
        return state.node

    async def _walk(self, plan: JourneyPlan, node_id: str) -> None:
        # Bounded interpreter: the compiler rejects loops without a wait, so more
        # transitions than nodes between two waits means a bug, not a long journey.
        budget = len(plan.nodes) + 1
        while node_id not in (END, EXIT):
            await self._drain()
            budget -= 1
            if budget < 0:
                workflow.logger.error("step budget exhausted at %s; ending enrollment", node_id)
                self._exit_reason = "error"
                return
            if self._should_continue_as_new():
                await self._continue_as_new(node_id)
            node = plan.node(node_id)
            self._current = node.id
            self._path.append(node.id)
            self._visits[node.id] = self._visits.get(node.id, 0) + 1
            self._visits_this_run += 1
            self._count(TallyEntry(_STEP_ENTERED, node.id))
            if node.kind in ("wait", "wait_until", "wait_for"):
                budget = len(plan.nodes) + 1
            node_id = await self._execute(node)
            if self._closing is None:  # else the closing record counted it
                self._count(TallyEntry(_STEP_COMPLETED, node.id))
        self._exit_reason = "exit_step" if node_id == EXIT else "completed"

    async def _execute(self, node: PlanNode) -> str:
        if isinstance(node, SendNode | ActivityNode):
            return await self._effect(node)
        if isinstance(node, WaitNode):
            await self._sleep_until(self._now() + timedelta(seconds=node.seconds))
            return node.next
        if isinstance(node, WaitUntilNode):
            await self._sleep_until(await self._next_time(node))
            return node.next
        if isinstance(node, WaitForNode):
            return await self._wait_for(node)
        if isinstance(node, BranchNode):
            return await self._branch(node)
        if isinstance(node, SplitNode):
            assert self._inp is not None
            arms = [(a.arm, a.weight) for a in node.arms]
            arm = split_arm(self._inp.plan.journey_id, self._inp.customer_id, arms)
            if node.id not in self._arms:
                self._count(TallyEntry(_ARM_ENROLLED, node.id, arm))
            self._arms.setdefault(node.id, arm)
            self._results[node.id] = {"arm": arm}
            return next(a.target for a in node.arms if a.arm == arm)
        if isinstance(node, TagNode):
            return await self._tag(node)
        if isinstance(node, UpdateNode):
            return await self._update(node)
        if isinstance(node, GotoNode):
            return node.next
        if isinstance(node, ExitNode):
            if node.reason:
                self._results[node.id] = {"reason": node.reason}
            return EXIT
        raise ApplicationError(f"unknown node kind {type(node).__name__}", non_retryable=True)  # pragma: no cover

    # -- continue-as-new ----------------------------------------------------------

    def _should_continue_as_new(self) -> bool:
        assert self._inp is not None
        return self._visits_this_run >= self._inp.max_visits_per_run or workflow.info().is_continue_as_new_suggested()

    async def _continue_as_new(self, node_id: str) -> None:
        assert self._inp is not None
        await self._settle_tally()
        await workflow.wait_condition(workflow.all_handlers_finished)
        state = ResumeState(
            node=node_id, path=self._path, steps=self._results, visits=self._visits,
            entered_at=self._entered_at.isoformat() if self._entered_at else self._now().isoformat(),
            converted=self._converted, arms=self._arms, seen=self._seen, pending=self._inbox,
            tally_seq=self._tally_seq,
        )  # fmt: skip
        inp = self._inp
        workflow.continue_as_new(
            EnrollmentInput(
                plan=inp.plan,
                version=inp.version,
                customer_id=inp.customer_id,
                trigger=inp.trigger,
                key=inp.key,
                clock_offset_s=inp.clock_offset_s,
                resume=state,
                max_visits_per_run=inp.max_visits_per_run,
            )  # fmt: skip
        )

    # -- events -------------------------------------------------------------------

    def _rule_context(self) -> RuleContext:
        assert self._inp is not None
        inp = self._inp
        return RuleContext(
            customer_id=inp.customer_id,
            trigger=inp.trigger,
            vars=inp.plan.vars,
            journey={
                "id": inp.plan.journey_id,
                "version": inp.version,
                "entered_at": self._entered_at.isoformat() if self._entered_at else None,
                "key": inp.key,
            },
            steps=dict(self._results),
            now=self._now().isoformat(),
        )

    async def _matches(self, pattern: str, rule: str | None, ev: EventData) -> bool:
        if not event_name_matches(pattern, ev.name):
            return False
        if rule is None:
            return True
        return bool(
            await workflow.execute_local_activity(
                MATCH,
                MatchInput(rule=rule, event=ev, context=self._rule_context()),
                result_type=bool,
                start_to_close_timeout=_LOCAL,
            )
        )

    async def _consume(self, ev: EventData) -> None:
        """Goal and exit conditions see every event after entry, before any wait does."""
        assert self._inp is not None
        plan = self._inp.plan
        goal = plan.goal
        if goal is not None and not self._converted and self._in_goal_window():
            if await self._matches(goal.event, goal.when, ev):
                self._converted = True
                self._results["$goal"] = {"event": ev.as_context(), "at": self._now().isoformat()}
                if self._patched("journey-converted-event"):
                    await workflow.execute_local_activity(
                        CONVERTED,
                        ConvertedInput(
                            enrollment_id=self._enrollment_id(),
                            journey_id=plan.journey_id,
                            version=self._inp.version,
                            customer_id=self._inp.customer_id,
                            event_id=ev.event_id,
                            at=self._now().isoformat(),
                            arms=dict(self._arms),
                        ),  # fmt: skip
                        start_to_close_timeout=_LOCAL,
                    )
                if goal.exit:
                    self._exit_reason = "goal"
                    raise _End()
        for cond in plan.exit_when:
            if await self._matches(cond.event, cond.when, ev):
                self._exit_reason = "exit_when"
                raise _End()

    def _in_goal_window(self) -> bool:
        assert self._inp is not None and self._inp.plan.goal is not None
        within = self._inp.plan.goal.within_s
        if within is None or self._entered_at is None:
            return True
        return self._now() <= self._entered_at + timedelta(seconds=within)

    def _listens(self) -> list[MatcherPlan]:
        assert self._inp is not None
        plan = self._inp.plan
        return [*([plan.goal] if plan.goal is not None else []), *plan.exit_when]

    async def _drain(self) -> None:
        """Consume every queued event (raises ``_End`` if one ends the enrollment)."""
        self._check_stop()
        while self._inbox:
            ev = self._inbox.pop(0)
            if self._listens():
                await self._consume(ev)

    def _check_stop(self) -> None:
        if self._operator_exit is not None:
            self._exit_reason = "operator"
            raise _End()

    async def _news_or(self, timeout: timedelta) -> None:
        """Wait until an event or an operator exit arrives, or ``timeout`` passes."""
        try:
            await workflow.wait_condition(lambda: bool(self._inbox) or self._operator_exit is not None, timeout=timeout)
        except TimeoutError:
            pass

    async def _sleep_until(self, deadline: datetime) -> None:
        """Sleep, still consuming events (a goal or exit_when may end the wait early)."""
        self._flush_tally_before(deadline)
        self._wake_at = deadline
        try:
            while True:
                await self._drain()
                remaining = deadline - self._now()
                if remaining <= timedelta(0):
                    return
                await self._news_or(remaining)
        finally:
            self._wake_at = None

    async def _wait_for(self, node: WaitForNode) -> str:
        # Only events that arrive after the wait began count (§6a.2): everything queued
        # before now was already consumed by the drain at the top of the loop.
        deadline = self._now() + timedelta(seconds=node.timeout_s)
        self._flush_tally_before(deadline)
        self._wake_at = deadline
        try:
            while True:
                self._check_stop()
                while self._inbox:
                    ev = self._inbox.pop(0)
                    if self._listens():
                        await self._consume(ev)
                    if await self._matches(node.event, node.when, ev):
                        self._results[node.id] = {"matched": True, "event": ev.as_context()}
                        return node.on_event
                remaining = deadline - self._now()
                if remaining <= timedelta(0):
                    self._results[node.id] = {"matched": False, "event": None}
                    return node.on_timeout
                await self._news_or(remaining)
        finally:
            self._wake_at = None

    # -- steps --------------------------------------------------------------------

    async def _next_time(self, node: WaitUntilNode) -> datetime:
        assert self._inp is not None
        iso: str = await workflow.execute_local_activity(
            NEXT_TIME,
            NextTimeInput(
                customer_id=self._inp.customer_id,
                time=node.time,
                days=list(node.days) if node.days else None,
                default_timezone=self._inp.plan.timezone,
                now=self._now().isoformat(),
            ),  # fmt: skip
            result_type=str,
            start_to_close_timeout=_LOCAL,
        )
        return datetime.fromisoformat(iso)

    async def _branch(self, node: BranchNode) -> str:
        result: BranchResult = await workflow.execute_local_activity(
            BRANCH,
            BranchInput(rules=[c.when for c in node.cases], context=self._rule_context()),
            result_type=BranchResult,
            start_to_close_timeout=_LOCAL,
        )
        taken = "else" if result.index < 0 else result.index
        self._results[node.id] = {"taken": taken, "errors": result.errors} if result.errors else {"taken": taken}
        return node.else_target if result.index < 0 else node.cases[result.index].target

    async def _tag(self, node: TagNode) -> str:
        assert self._inp is not None
        tags: list[str] = await workflow.execute_local_activity(
            TAG,
            TagInput(
                customer_id=self._inp.customer_id,
                add=list(node.add),
                remove=list(node.remove),
                idempotency_key=f"{self._enrollment_id()}:{node.id}:{self._visits[node.id]}",
            ),  # fmt: skip
            result_type=list[str],
            start_to_close_timeout=_LOCAL,
        )
        self._results[node.id] = {"tags": tags}
        return node.next

    async def _update(self, node: UpdateNode) -> str:
        while True:
            try:
                values: dict[str, Any] = await workflow.execute_local_activity(
                    UPDATE,
                    UpdateInput(
                        updates=dict(node.updates),
                        context=self._rule_context(),
                        idempotency_key=f"{self._enrollment_id()}:{node.id}:{self._visits[node.id]}",
                    ),  # fmt: skip
                    result_type=dict[str, Any],
                    start_to_close_timeout=_LOCAL,
                    retry_policy=RetryPolicy(maximum_attempts=5),
                )
            except FailureError as err:  # a local activity's failure comes unwrapped
                reason = _failure_reason(err)
                self._results[node.id] = {"status": "failed", "reason": reason}
                if await self._park(f"step {node.id} failed: {reason}") == "retry":
                    continue
                self._results[node.id] = {"status": "skipped", "reason": "operator"}
                return node.next
            self._results[node.id] = {"values": values}
            return node.next

    async def _hold_if_closed(self) -> bool:
        """Before an action: wait while the journey is paused (§6a.4).

        Returns:
            True when the held action is stale and must be skipped (``skip_stale``).
        """
        if not self._patched("pause-gate"):
            return False
        return await self._hold(await self._read_gate())

    async def _read_gate(self) -> GateState:
        assert self._inp is not None
        gate_input = GateInput(journey_id=self._inp.plan.journey_id, workflow_id=workflow.info().workflow_id)
        return await workflow.execute_local_activity(
            GATE, gate_input, result_type=GateState, start_to_close_timeout=_LOCAL
        )

    async def _hold(self, gate: GateState) -> bool:
        """Hold while ``gate`` (just read) is closed; True when the held action went stale."""
        if gate.status == "archived":
            self._operator_exit = "archived"
        self._check_stop()
        if gate.status != "paused":
            return False
        due = self._now()
        self._flush_tally()
        self._status = "paused"
        self._resume = None
        await self._record(status="paused", exit_reason=None)
        while self._resume is None:
            await self._drain()
            try:
                await workflow.wait_condition(
                    lambda: self._resume is not None or self._operator_exit is not None or bool(self._inbox),
                    timeout=timedelta(minutes=10),
                )
            except TimeoutError:
                # Safety net for a lost resume signal: look at the gate again now and then.
                gate = await self._read_gate()
                if gate.status == "archived":
                    self._operator_exit = "archived"
                elif gate.status != "paused":
                    self._resume = GateState(status=gate.status)
            self._check_stop()
        policy = self._resume
        self._status = "running"
        await self._record(status="running", exit_reason=None)
        late = (self._now() - due).total_seconds()
        return policy.on_resume == "skip_stale" and late > (policy.stale_after_s or 0)

    async def _effect(self, node: SendNode | ActivityNode) -> str:
        """Run a send or custom activity with its retry policy and ``on_error`` edge."""
        if isinstance(node, SendNode) and self._carrying():
            return await self._send(node)
        if await self._hold_if_closed():
            if isinstance(node, SendNode):
                await self._log_stale(node)
            self._results[node.id] = {"status": "skipped", "reason": "stale"}
            return node.next
        while True:
            try:
                if isinstance(node, SendNode):
                    result: SendResult = await workflow.execute_activity(
                        SEND, self._send_input(node), result_type=SendResult,
                        start_to_close_timeout=timedelta(seconds=node.timeout_s), retry_policy=_retry(node.retry),
                    )  # fmt: skip
                    self._results[node.id] = {"status": result.status, "reason": result.reason, "msgid": result.msgid}
                    if result.status == "deferred" and result.retry_at and self._patched("send-deferral"):
                        # Quiet hours or a full cap: sleep until the send may go, then try
                        # the same step visit again (policies are checked afresh).
                        await self._sleep_until(datetime.fromisoformat(result.retry_at))
                        continue
                else:
                    value = await workflow.execute_activity(
                        node.activity,
                        ActivityCall(
                            with_=node.with_,
                            context=self._rule_context(),
                            enrollment_id=self._enrollment_id(),
                            journey_id=self._journey_id(),
                            step_id=node.id,
                            visit=self._visits[node.id],
                            strict=self._inp.plan.strict if self._inp else True,
                        ),  # fmt: skip
                        start_to_close_timeout=timedelta(seconds=node.timeout_s),
                        retry_policy=_retry(node.retry),
                    )
                    self._results[node.id] = {"status": "completed", "result": value}
                return node.next
            except ActivityError as err:
                after = await self._failed(node, err)
                if after is None:
                    continue
                return after

    async def _send(self, node: SendNode) -> str:
        """A send step (patch ``send-carries-bookkeeping``).

        The send activity checks the pause gate on its first attempt (answering ``held``
        while the journey is paused) and carries the step counts gathered so far.
        """
        check_gate = True
        while True:
            inp = self._send_input(node)
            inp.gate, check_gate = check_gate, False
            if self._admission_pending:
                assert self._inp is not None
                inp.admit, self._admission_pending = self._admit_input(self._inp), False
            inp.tally = self._take_tally()
            inp.finish = self._closing_record(node)
            try:
                result = await self._run_send(inp, node)
            except FailureError as err:  # ActivityError; a local send's own failure comes unwrapped
                if inp.admit is not None:
                    # Whether the failed send admitted is unknown: admit before anything counts.
                    await self._admit_or_refuse()
                if inp.tally is not None:
                    # The failed send may not have counted them: a batch counts once, so send it again.
                    self._start_tally(inp.tally)
                after = await self._failed(node, err)
                if after is None:
                    continue
                return after
            if result.status == "refused":
                raise _Refused(result.reason)
            if result.status == "held":
                assert result.gate is not None
                if await self._hold(result.gate):
                    await self._log_stale(node)
                    self._results[node.id] = {"status": "skipped", "reason": "stale"}
                    return node.next
                continue
            self._results[node.id] = {"status": result.status, "reason": result.reason, "msgid": result.msgid}
            if result.status == "deferred" and result.retry_at:
                # Quiet hours or a full cap: sleep until the send may go, then try the same
                # step visit again (policies are checked afresh).
                await self._sleep_until(datetime.fromisoformat(result.retry_at))
                continue
            if inp.finish is not None:
                self._closing, self._closed = inp.finish, result.finished
            return node.next

    async def _run_send(self, inp: SendInput, node: SendNode) -> SendResult:
        """The send activity, local where the run's type says so (``JourneyV5``).

        A local activity runs in this worker inside the workflow task: no activity task and
        no second workflow task through the Temporal server, about a quarter of the server's
        CPU for a one-send enrollment (bench/RESULTS.md). Retries follow the step's policy
        either way. A local send waits out a backoff longer than a second on a Temporal
        timer, not in its workflow task: a task waiting in the worker holds one of its few
        workflow-task slots, which timers and signals of other enrollments need.

        Raises:
            FailureError: The send failed: an ``ActivityError``, or for a local send what it
                raised (an ``ApplicationError``) unwrapped, as the SDK raises it.
        """
        timeout, retry = timedelta(seconds=node.timeout_s), _retry(node.retry)
        if self._local_sends:
            return await workflow.execute_local_activity(
                SEND, inp, result_type=SendResult, start_to_close_timeout=timeout, retry_policy=retry,
                local_retry_threshold=_LOCAL_SEND_RETRY_THRESHOLD,
            )  # fmt: skip
        return await workflow.execute_activity(
            SEND, inp, result_type=SendResult, start_to_close_timeout=timeout, retry_policy=retry
        )

    async def _failed(self, node: SendNode | ActivityNode, err: FailureError) -> str | None:
        """After a failed step: the node to go to, or None to run the step again (operator retry)."""
        reason = _failure_reason(err)
        self._results[node.id] = {"status": "failed", "reason": reason}
        if node.on_error != PARK:
            return node.on_error
        if await self._park(f"step {node.id} failed: {reason}") == "retry":
            return None
        self._results[node.id] = {"status": "skipped", "reason": "operator"}
        return node.next

    async def _log_stale(self, node: SendNode) -> None:
        """Log a held send that went stale like any other skipped send, so the message log tells the whole story."""
        stale = self._send_input(node)
        stale.skip_reason = "stale"
        await workflow.execute_activity(
            SEND, stale, result_type=SendResult, start_to_close_timeout=timedelta(seconds=node.timeout_s)
        )

    def _journey_id(self) -> str:
        assert self._inp is not None
        return self._inp.plan.journey_id

    def _send_input(self, node: SendNode) -> SendInput:
        assert self._inp is not None
        inp = self._inp
        ctx = self._rule_context()
        return SendInput(
            enrollment_id=self._enrollment_id(), journey_id=inp.plan.journey_id, version=inp.version,
            step_id=node.id, visit=self._visits[node.id], customer_id=inp.customer_id, channel=node.channel,
            message=node.message, trigger=inp.trigger, vars=ctx.vars, journey=ctx.journey, steps=ctx.steps,
            now=ctx.now, category=inp.plan.category, strict=inp.plan.strict,
            customer_facing=node.customer_facing, policy=inp.plan.policy, timezone=inp.plan.timezone,
        )  # fmt: skip

    async def _park(self, why: str) -> str:
        """Wait for an operator; returns ``retry`` or ``skip``. Events still count meanwhile."""
        self._flush_tally()
        self._status = "needs_attention"
        self._attention = why
        await self._record(status="needs_attention", exit_reason=None)
        while self._operator_action is None:
            await self._drain()
            await workflow.wait_condition(
                lambda: self._operator_action is not None or self._operator_exit is not None or bool(self._inbox)
            )
        self._check_stop()
        action, self._operator_action = self._operator_action, None
        self._status = "running"
        self._attention = None
        await self._record(status="running", exit_reason=None)
        return action

    def _count(self, entry: TallyEntry) -> None:
        if not self._tally:
            self._tally_since = self._now()
        self._tally.append(entry)

    def _patched(self, patch_id: str) -> bool:
        """``workflow.patched`` for a change folded into ``_FOLDED``: true without a marker of its own in new runs."""
        assert patch_id in _FOLDED_PATCHES, patch_id
        return self._folded or workflow.patched(patch_id)

    def _carrying(self) -> bool:
        """Whether step counts and the gate check ride with activities that run anyway."""
        return self._patched(_CARRY)

    def _take_tally(self) -> TallyInput | None:
        """The step counts gathered since the last batch, as the next numbered batch (None if none)."""
        if not self._tally or not self._patched("step-tally"):
            return None
        assert self._inp is not None
        self._tally_seq += 1
        entries, self._tally = self._tally, []
        self._tally_since = None
        return TallyInput(
            enrollment_id=self._enrollment_id(),
            journey_id=self._inp.plan.journey_id,
            version=self._inp.version,
            seq=self._tally_seq,
            entries=entries,
        )  # fmt: skip

    def _flush_tally_before(self, deadline: datetime) -> None:
        """Before a wait until ``deadline``: send the counts now unless a send or the end soon carries them."""
        if self._tally_since is not None and deadline - self._tally_since <= _CARRY_WINDOW and self._carrying():
            return
        self._flush_tally()

    def _flush_tally(self) -> None:
        """Send the step counts gathered since the last flush (before the enrollment blocks).

        Batched at the points where the workflow waits anyway, and sent as an ordinary
        activity that runs beside the wait: a local activity would hold the workflow task
        open and start the wait's timer late. ``seq`` makes a retried flush a no-op.
        """
        batch = self._take_tally()
        if batch is not None:
            self._start_tally(batch)

    def _start_tally(self, batch: TallyInput) -> None:
        self._flushing = [h for h in self._flushing if not h.done()]
        self._flushing.append(
            workflow.start_activity(
                TALLY,
                batch,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
            )
        )

    async def _settled(self) -> None:
        """Wait until every batch sent on its own was counted."""
        if self._flushing:
            await workflow.wait_condition(lambda: all(h.done() for h in self._flushing))
            self._flushing = []

    async def _settle_tally(self) -> None:
        """Flush, then wait until every flush was counted (before the run ends or continues as new)."""
        self._flush_tally()
        await self._settled()

    async def _record(self, *, status: str, exit_reason: str | None = None, tally: TallyInput | None = None) -> None:
        reason = exit_reason if status != "exited" else self._exit_reason
        await self._record_finish(self._finish_input(status, reason, tally))

    def _finish_input(self, status: str, exit_reason: str | None, tally: TallyInput | None) -> FinishInput:
        assert self._inp is not None
        return FinishInput(
            enrollment_id=self._enrollment_id(), workflow_id=workflow.info().workflow_id,
            customer_id=self._inp.customer_id, status=status,
            exit_reason=exit_reason, at=self._now().isoformat(),
            journey_id=self._inp.plan.journey_id, version=self._inp.version,
            path=list(self._path), arm=next(iter(self._arms.values()), None), tally=tally,
        )  # fmt: skip

    async def _record_finish(self, finish: FinishInput) -> None:
        await workflow.execute_local_activity(FINISH, finish, start_to_close_timeout=_LOCAL)

    def _closing_record(self, node: SendNode) -> FinishInput | None:
        """The end of the enrollment for the send of its last step to record (``interpreter-2``).

        Only when the step leads to the end and no count batch is still on its way (the end
        is recorded after every count, as ``run`` does). Its step counts include this step's
        completion, which the walk then leaves out. Unused (the send was held, deferred or
        failed), the batch is simply never applied: the walk counts the step itself.
        """
        if node.next != END or not self._folded or any(not h.done() for h in self._flushing):
            return None
        self._count(TallyEntry(_STEP_COMPLETED, node.id))
        return self._finish_input("exited", "completed", self._take_tally())


@workflow.defn(name="JourneyV5")
class JourneyWorkflow(_JourneyInterpreter):
    """Runs one customer through one journey version: every enrollment starts as this type.

    It takes every interpreter change up to ``interpreter-4`` without asking for a patch
    (as ``JourneyV4Workflow`` does), and runs its sends as local activities: the send
    runs in the worker inside the workflow task that asks for it, so a one-send enrollment
    costs the Temporal server one workflow task where it cost two and an activity task
    (bench/RESULTS.md). Changes after it go behind ``workflow.patched()`` as before, until
    they are folded into a type of their own the same way (docs/extending.md).
    """

    _PATCH_FREE = True
    _local_sends = True

    @workflow.run
    async def run(self, inp: EnrollmentInput) -> EnrollmentState:
        """Admit the customer, walk the plan, record how it ended."""
        return await self._interpret(inp)


@workflow.defn(name="Journey")
class JourneyV4Workflow(_JourneyInterpreter):
    """Enrollments started as the ``Journey`` type: every change up to ``interpreter-4``, sends as activities.

    It asked for no patch: a new run of ``PatchedJourneyWorkflow`` asked for one, and the
    SDK recorded a marker and upserted the ``TemporalChangeVersion`` search attribute for
    it, two history events and about 2 ms of the Temporal server's CPU per enrollment
    (bench/RESULTS.md). Kept registered while such enrollments may still run or be
    replayed (a run that continues as new stays this type).
    """

    _PATCH_FREE = True

    @workflow.run
    async def run(self, inp: EnrollmentInput) -> EnrollmentState:
        """Admit the customer, walk the plan, record how it ended."""
        return await self._interpret(inp)


@workflow.defn(name="JourneyWorkflow")
class PatchedJourneyWorkflow(_JourneyInterpreter):
    """Enrollments started before the ``Journey`` type: their histories decide by patch markers.

    Kept registered while such enrollments may still run or be replayed (a run that
    continues as new stays this type). What it does must stay what their histories
    recorded: a change to the shared interpreter goes behind ``workflow.patched()``.
    """

    @workflow.run
    async def run(self, inp: EnrollmentInput) -> EnrollmentState:
        """Admit the customer, walk the plan, record how it ended."""
        # First, so that it is at the same place in every history that has it. A new run
        # records only the newest marker; older histories replay the one they have.
        self._admit_with_send = workflow.patched(_ADMIT_WITH_SEND)
        self._trigger_as_input = self._admit_with_send or workflow.patched(_TRIGGER_AS_INPUT)
        self._folded = self._trigger_as_input or workflow.patched(_FOLDED)
        return await self._interpret(inp)


#: Every journey workflow type a worker registers: the current one and those older histories need.
JOURNEY_WORKFLOWS: tuple[type, ...] = (JourneyWorkflow, JourneyV4Workflow, PatchedJourneyWorkflow)


def _retry(plan: RetryPlan) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=plan.initial_s),
        backoff_coefficient=plan.backoff,
        maximum_interval=timedelta(seconds=plan.max_interval_s),
        maximum_attempts=plan.max_attempts,
    )


def _failure_reason(err: FailureError) -> str:
    # An activity's failure wraps what it raised; a local activity's own failure comes unwrapped.
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'error'}: {cause.message}"
    return str(cause or err)
