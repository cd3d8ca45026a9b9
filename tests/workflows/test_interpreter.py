"""The interpreter on the time-skipping server: continue-as-new and operator updates.

Stand-in activities are registered under the production names, so these tests exercise
the workflow alone (no database or WeCom behind it).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import Client, WorkflowHistory, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from engine.compiler import compile_text
from engine.simulate import time_skipping_server_binary
from engine.temporal import sdk_runtime, start_enrollment
from workflows.journey import JOURNEY_WORKFLOWS, JourneyV4Workflow, JourneyWorkflow, PatchedJourneyWorkflow
from workflows.messages import (
    ADMIT,
    EVENT_SIGNAL,
    FINISH,
    GATE,
    SEND,
    STATUS_QUERY,
    TALLY,
    UPDATE,
    AdmitInput,
    AdmitResult,
    EnrollmentInput,
    EnrollmentState,
    EventData,
    FinishInput,
    GateInput,
    GateState,
    OperatorExit,
    SendInput,
    SendResult,
    TallyInput,
    UpdateInput,
)


class StandIns:
    """Records what the workflow asked for; sends fail while ``failing`` is set.

    Admissions refuse with ``refuse`` when set; ``admissions`` says who ran each: the
    admission local activity (``activity``) or a send that carried it (``send``).
    """

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []
        self.finished: list[str] = []
        self.tallies: list[TallyInput] = []  # every batch, however it arrived, once
        self.tally_calls: list[TallyInput] = []  # batches sent by an activity of their own
        self.gate_calls = 0
        self.finish_calls: list[FinishInput] = []  # records by the local activity of their own
        self.failing = False
        self.send_cannot_finish = False
        self.refuse: str | None = None
        self.admissions: list[str] = []

    def all(self) -> list[object]:
        return [self.admit, self.finish, self.gate, self.send, self.tally]

    @activity.defn(name=TALLY)
    async def tally(self, inp: TallyInput) -> None:
        self.tally_calls.append(inp)
        self._batch(inp)

    def _batch(self, batch: TallyInput | None) -> None:
        if batch is not None and batch.seq not in {t.seq for t in self.tallies}:
            self.tallies.append(batch)

    @activity.defn(name=ADMIT)
    async def admit(self, inp: AdmitInput) -> AdmitResult:
        return self._admit("activity")

    def _admit(self, by: str) -> AdmitResult:
        self.admissions.append(by)
        return AdmitResult(admitted=self.refuse is None, reason=self.refuse)

    @activity.defn(name=FINISH)
    async def finish(self, inp: FinishInput) -> None:
        self.finish_calls.append(inp)
        self._record(inp)

    def _record(self, inp: FinishInput) -> None:
        self.finished.append(inp.status)
        self._batch(inp.tally)

    @activity.defn(name=GATE)
    async def gate(self, inp: GateInput) -> GateState:
        self.gate_calls += 1
        return GateState(status="active")

    @activity.defn(name=SEND)
    async def send(self, inp: SendInput) -> SendResult:
        if self.failing:
            raise ApplicationError("WeCom says no", type="WeComError", non_retryable=True)
        if inp.admit is not None:
            admitted = self._admit("send")
            if not admitted.admitted:
                return SendResult(status="refused", reason=admitted.reason)
        self._batch(inp.tally)
        self.sent.append((inp.step_id, inp.visit))
        result = SendResult(status="sent", msgid=f"m{len(self.sent)}")
        if inp.finish is not None and not self.send_cannot_finish:
            self._record(inp.finish)
            result.finished = True
        return result


@pytest_asyncio.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=time_skipping_server_binary(),
        data_converter=pydantic_data_converter,
        runtime=sdk_runtime(),
    ) as environment:
        yield environment


def enrollment(yaml_text: str, **over: object) -> EnrollmentInput:
    plan = compile_text(yaml_text)
    trigger = EventData(
        event_id=f"e-{uuid.uuid4()}", name="go", customer_id="c1", timestamp="2026-11-23T02:00:00+00:00"
    )
    return EnrollmentInput(plan=plan, version=1, customer_id="c1", trigger=trigger, **over)  # type: ignore[arg-type]


async def start(client: Client, queue: str, inp: EnrollmentInput):  # type: ignore[no-untyped-def]
    return await client.start_workflow(JourneyWorkflow.run, inp, id=f"wf-{uuid.uuid4()}", task_queue=queue)


LOOP = """
journey: loop-can
trigger: {event: go}
steps:
  - id: tick
    send: {channel: wecom.app, to: ops, text: tick}
  - id: pause
    wait: 1h
  - goto: tick
"""


async def test_continue_as_new_keeps_state_and_enrollment_id(env: WorkflowEnvironment) -> None:
    acts = StandIns()
    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow],
                      activities=[*acts.all()]):  # fmt: skip
        handle = await start(env.client, queue, enrollment(LOOP, max_visits_per_run=4))
        first_run = handle.first_execution_run_id
        await env.sleep(timedelta(hours=5, minutes=30))
        state: EnrollmentState = await env.client.get_workflow_handle(handle.id).query(
            "status", result_type=EnrollmentState
        )
        assert state.enrollment_id == first_run, "the enrollment id survives continue-as-new"
        assert [v for step, v in acts.sent] == [1, 2, 3, 4, 5, 6]
        assert state.path[:7] == ["tick", "pause", "steps[2]", "tick", "pause", "steps[2]", "tick"]
        assert state.status == "running"
        history = [e async for e in env.client.get_workflow_handle(handle.id, run_id=first_run).fetch_history_events()]
        assert any(e.HasField("workflow_execution_continued_as_new_event_attributes") for e in history)
        await env.client.get_workflow_handle(handle.id).execute_update("exit", OperatorExit(reason="test over"))
        await env.client.get_workflow_handle(handle.id).result()
    # Step counts flow out in numbered batches that continue across continue-as-new, so a
    # retried batch can be recognised and none is counted twice.
    seqs = [t.seq for t in acts.tallies]
    assert seqs == list(range(1, len(seqs) + 1))
    assert {t.enrollment_id for t in acts.tallies} == {first_run}
    entered = [e.step for t in acts.tallies for e in t.entries if e.metric == "step.entered"]
    assert entered.count("tick") == len(acts.sent) == 6
    completed = [e.step for t in acts.tallies for e in t.entries if e.metric == "step.completed"]
    assert completed.count("pause") == 5 and entered.count("pause") == 6, "the wait cut short by the exit"


FAILING = """
journey: parks
trigger: {event: go}
steps:
  - id: hello
    send: {channel: wecom.app, to: ops, text: hi}
  - id: after
    send: {channel: wecom.app, to: ops, text: after}
"""


async def parked(env: WorkflowEnvironment, acts: StandIns, queue: str):  # type: ignore[no-untyped-def]
    handle = await start(env.client, queue, enrollment(FAILING))
    while (await handle.query("status", result_type=EnrollmentState)).status != "needs_attention":
        await env.sleep(timedelta(seconds=1))
    return handle


@pytest.mark.parametrize("action", ["retry", "skip", "exit"])
async def test_operator_actions_on_a_parked_step(env: WorkflowEnvironment, action: str) -> None:
    acts = StandIns()
    acts.failing = True
    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow],
                      activities=[*acts.all()]):  # fmt: skip
        handle = await parked(env, acts, queue)
        acts.failing = False
        if action == "exit":
            await handle.execute_update("exit", OperatorExit(reason="bad data"))
        else:
            await handle.execute_update(action)
        final: EnrollmentState = await handle.result()
    assert final.status == "exited"
    if action == "retry":
        assert acts.sent == [("hello", 1), ("after", 1)] and final.exit_reason == "completed"
    elif action == "skip":
        assert acts.sent == [("after", 1)] and final.steps["hello"]["reason"] == "operator"
    else:
        assert acts.sent == [] and final.exit_reason == "operator"


async def test_illegal_operator_actions_are_rejected_before_history(env: WorkflowEnvironment) -> None:
    acts = StandIns()
    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow],
                      activities=[*acts.all()]):  # fmt: skip
        handle = await start(
            env.client, queue, enrollment("journey: slow\ntrigger: {event: go}\nsteps:\n  - wait: 1d\n")
        )
        for action in ("retry", "skip"):
            with pytest.raises(WorkflowUpdateFailedError) as info:
                await handle.execute_update(action)
            assert "not needs_attention" in str(info.value.cause)
        await handle.execute_update("exit", OperatorExit())
        final: EnrollmentState = await handle.result()
        assert final.exit_reason == "operator"
        with pytest.raises(Exception):  # noqa: B017 - the workflow is closed: no more updates
            await handle.execute_update("exit", OperatorExit())


def three_steps(wait: str) -> str:
    return f"""
journey: three-steps
trigger: {{event: go}}
steps:
  - id: first
    send: {{channel: wecom.app, to: ops, text: a}}
  - id: pause
    wait: {wait}
  - id: second
    send: {{channel: wecom.app, to: ops, text: b}}
"""


def counted(acts: StandIns) -> list[tuple[str, str]]:
    return sorted((e.metric, e.step) for t in acts.tallies for e in t.entries)


EVERY_STEP = sorted((m, s) for m in ("step.entered", "step.completed") for s in ("first", "pause", "second"))


async def test_step_counts_and_the_gate_ride_with_activities_that_run_anyway(env: WorkflowEnvironment) -> None:
    # Patch "send-carries-bookkeeping": a 3-step journey used to cost two tally activities
    # and two gate local activities on top of its sends (bench/RESULTS.md).
    acts = StandIns()
    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow], activities=[*acts.all()]):
        final: EnrollmentState = await (await start(env.client, queue, enrollment(three_steps("1s")))).result()
    assert final.exit_reason == "completed" and acts.sent == [("first", 1), ("second", 1)]
    assert acts.tally_calls == [] and acts.gate_calls == 0
    assert [t.seq for t in acts.tallies] == [1, 2, 3]  # first send, second send, the final record
    assert counted(acts) == EVERY_STEP


async def test_the_last_send_records_the_end_of_the_enrollment(env: WorkflowEnvironment) -> None:
    # interpreter-2: no local activity after a journey's last send (bench/RESULTS.md).
    acts = StandIns()
    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow], activities=[*acts.all()]):
        handle = await start(env.client, queue, enrollment(three_steps("1s")))
        final: EnrollmentState = await handle.result()
        history = await handle.fetch_history()
    assert final.status == "exited" and final.exit_reason == "completed"
    assert acts.finished == ["exited"] and acts.finish_calls == []
    assert counted(acts) == EVERY_STEP, "the last step's completion counted once, with the end"
    # interpreter-4: the first send admits, so no admission local activity either.
    assert acts.admissions == ["send"]
    markers = [e.marker_recorded_event_attributes.marker_name for e in history.events
               if e.HasField("marker_recorded_event_attributes")]  # fmt: skip
    assert "core_patch" not in markers, "no patch marker: the type takes interpreter-4 without one"
    upserts = [e for e in history.events if e.HasField("upsert_workflow_search_attributes_event_attributes")]
    assert upserts == [], "nor the TemporalChangeVersion upsert the SDK adds to every patch"
    # JourneyV5: both sends ran as local activities, recorded as markers, and no activity
    # task at all (the step counts ride with the sends).
    assert markers == ["core_local_activity", "core_local_activity"]
    assert scheduled_activities(history) == []


async def test_the_journey_type_before_it_sends_with_activities(env: WorkflowEnvironment) -> None:
    # Enrollments started as "Journey" replay what they recorded: sends as activity tasks.
    final, history, acts = await three_steps_as(env, JourneyV4Workflow.run)
    assert history.events[0].workflow_execution_started_event_attributes.workflow_type.name == "Journey"
    assert final.exit_reason == "completed" and acts.sent == [("first", 1), ("second", 1)]
    assert scheduled_activities(history) == [SEND, SEND]
    assert not any(e.HasField("marker_recorded_event_attributes") for e in history.events)


async def three_steps_as(env: WorkflowEnvironment, run: Any) -> tuple[EnrollmentState, WorkflowHistory, StandIns]:
    """Run ``three_steps("1s")`` as the type of ``run``, every type registered: its end, history, stand-ins."""
    acts = StandIns()
    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[*JOURNEY_WORKFLOWS], activities=[*acts.all()]):
        handle = await env.client.start_workflow(run, enrollment(three_steps("1s")), id=f"wf-{uuid.uuid4()}",
                                                 task_queue=queue)  # fmt: skip
        final: EnrollmentState = await handle.result()
        return final, await handle.fetch_history(), acts


def scheduled_activities(history: WorkflowHistory) -> list[str]:
    """The activity types a run scheduled as activity tasks, in order."""
    return [e.activity_task_scheduled_event_attributes.activity_type.name for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")]  # fmt: skip


async def test_the_older_type_still_asks_for_its_patch_and_walks_the_same(env: WorkflowEnvironment) -> None:
    # A running enrollment of the type before "Journey" that continues as new starts a
    # fresh run of that type: it records interpreter-4's marker and behaves as the new type.
    final, history, acts = await three_steps_as(env, PatchedJourneyWorkflow.run)
    assert history.events[0].workflow_execution_started_event_attributes.workflow_type.name == "JourneyWorkflow"
    assert final.exit_reason == "completed" and acts.sent == [("first", 1), ("second", 1)]
    assert acts.admissions == ["send"] and acts.finished == ["exited"] and counted(acts) == EVERY_STEP
    markers = [
        e.marker_recorded_event_attributes for e in history.events if e.HasField("marker_recorded_event_attributes")
    ]
    assert len(markers) == 1 and b"interpreter-4" in markers[0].details["patch-data"].payloads[0].data


async def test_an_end_the_send_could_not_record_is_recorded_by_the_workflow(env: WorkflowEnvironment) -> None:
    acts = StandIns()
    acts.send_cannot_finish = True
    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow], activities=[*acts.all()]):
        final: EnrollmentState = await (await start(env.client, queue, enrollment(three_steps("1s")))).result()
    assert final.exit_reason == "completed" and acts.finished == ["exited"]
    # The same record the send carried (the same count batch), so a half-done one adds nothing twice.
    assert len(acts.finish_calls) == 1 and acts.finish_calls[0].tally is not None
    assert acts.finish_calls[0].tally.seq == 3 and acts.finish_calls[0].exit_reason == "completed"
    assert counted(acts) == EVERY_STEP


async def test_a_long_wait_does_not_hold_the_step_counts_back(env: WorkflowEnvironment) -> None:
    acts = StandIns()
    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow], activities=[*acts.all()]):
        handle = await start(env.client, queue, enrollment(three_steps("1h")))
        while (await handle.query("status", result_type=EnrollmentState)).current_step != "pause":
            await env.sleep(timedelta(seconds=1))
        await env.sleep(timedelta(minutes=5))
        # Still waiting, and the wait's step is already counted as entered.
        assert [(e.metric, e.step) for e in acts.tally_calls[0].entries] == [
            ("step.completed", "first"), ("step.entered", "pause")
        ]  # fmt: skip
        await handle.result()
    assert counted(acts) == EVERY_STEP


async def test_a_failed_send_hands_its_step_counts_on(env: WorkflowEnvironment) -> None:
    # The send may have failed before counting them; a batch counts once, so it goes again.
    acts = StandIns()
    acts.failing = True
    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow], activities=[*acts.all()]):
        handle = await parked(env, acts, queue)
        while not acts.tally_calls:
            await env.sleep(timedelta(seconds=1))
        assert acts.tally_calls[0].seq == 1 and [e.step for e in acts.tally_calls[0].entries] == ["hello"]
        await handle.execute_update("exit", OperatorExit())
        await handle.result()


def signals_in(history: object) -> int:
    return sum(1 for e in history.events if e.HasField("workflow_execution_signaled_event_attributes"))  # type: ignore[attr-defined]


async def test_a_trigger_that_comes_only_as_input_reaches_exit_when_as_the_start_signal_did(
    env: WorkflowEnvironment,
) -> None:
    # interpreter-3: start_enrollment no longer repeats the trigger as a start signal.
    text = f"""
journey: own-trigger-{uuid.uuid4().hex[:6]}
trigger: {{event: go}}
exit_when:
  - event: go
steps:
  - wait: 1h
  - send: {{channel: wecom.app, to: ops, text: late}}
"""
    acts = StandIns()
    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow], activities=[*acts.all()]):
        wid = await start_enrollment(env.client, task_queue=queue, inp=enrollment(text))
        handle = env.client.get_workflow_handle(wid, result_type=EnrollmentState)
        final: EnrollmentState = await handle.result()
        assert signals_in(await handle.fetch_history()) == 0
        # The old start, signal-with-start, for comparison: the same end.
        old = await env.client.start_workflow(JourneyWorkflow.run, enrollment(text), id=f"wf-{uuid.uuid4()}",
                                              task_queue=queue, start_signal=EVENT_SIGNAL,
                                              start_signal_args=[enrollment(text).trigger])  # fmt: skip
        before: EnrollmentState = await old.result()
    assert (final.exit_reason, before.exit_reason) == ("exit_when", "exit_when") and acts.sent == []


async def test_a_trigger_for_a_running_enrollment_is_delivered_to_it_as_a_signal(env: WorkflowEnvironment) -> None:
    text = f"""
journey: again-{uuid.uuid4().hex[:6]}
trigger: {{event: go}}
steps:
  - id: again
    wait_for: {{event: go, timeout: 1h}}
  - id: hello
    send: {{channel: wecom.app, to: ops, text: again}}
"""
    acts = StandIns()
    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow], activities=[*acts.all()]):
        first = enrollment(text)
        wid = await start_enrollment(env.client, task_queue=queue, inp=first)
        handle = env.client.get_workflow_handle(wid, result_type=EnrollmentState)
        await handle.query(STATUS_QUERY, result_type=EnrollmentState)  # its first task is done: it waits
        second = dataclasses.replace(first, trigger=dataclasses.replace(first.trigger, event_id="e-second"))
        assert await start_enrollment(env.client, task_queue=queue, inp=second) == wid
        final: EnrollmentState = await handle.result()
        history = await handle.fetch_history()
    assert final.exit_reason == "completed" and acts.sent == [("hello", 1)]
    assert signals_in(history) == 1, "the running enrollment got the second trigger, and only that, as a signal"


async def test_a_refusal_by_the_first_send_ends_the_run_refused_with_nothing_counted(
    env: WorkflowEnvironment,
) -> None:
    acts = StandIns()
    acts.refuse = "reentry_once"
    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow], activities=[*acts.all()]):
        final: EnrollmentState = await (await start(env.client, queue, enrollment(three_steps("1s")))).result()
    assert (final.status, final.exit_reason) == ("refused", "reentry_once")
    assert final.path == [] and final.current_step is None and final.steps == {}
    assert acts.admissions == ["send"] and acts.sent == [] and acts.finished == [] and acts.tallies == []


@pytest.mark.parametrize("refuse", [None, "audience"])
async def test_a_first_send_that_fails_is_followed_by_the_admission_activity(
    env: WorkflowEnvironment, refuse: str | None
) -> None:
    # Whether the failed send admitted is unknown: the step's failure path runs only for an
    # admitted customer, and a refused one ends as if the admission had come first.
    acts = StandIns()
    acts.failing, acts.refuse = True, refuse
    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow], activities=[*acts.all()]):
        if refuse is None:
            handle = await parked(env, acts, queue)
            state = await handle.query("status", result_type=EnrollmentState)
            assert state.current_step == "hello" and acts.admissions == ["activity"]
            await handle.execute_update("exit", OperatorExit())
        else:
            handle = await start(env.client, queue, enrollment(FAILING))
        final: EnrollmentState = await handle.result()
    assert acts.sent == []
    if refuse is None:
        assert (final.status, final.exit_reason) == ("exited", "operator")
        assert acts.finished == ["needs_attention", "exited"], "parked, then ended: recorded for an admitted customer"
    else:
        assert (final.status, final.exit_reason) == ("refused", "audience") and acts.admissions == ["activity"]
        assert acts.finished == [] and acts.tallies == [] and final.path == []


async def test_a_journey_with_a_goal_admits_before_its_first_send(env: WorkflowEnvironment) -> None:
    # A goal met by the trigger would be recorded before the enrollment existed.
    text = f"""
journey: goal-first-{uuid.uuid4().hex[:6]}
trigger: {{event: go}}
goal: {{event: paid}}
steps:
  - id: hello
    send: {{channel: wecom.app, to: ops, text: hi}}
"""
    acts = StandIns()
    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow], activities=[*acts.all()]):
        final: EnrollmentState = await (await start(env.client, queue, enrollment(text))).result()
    assert final.exit_reason == "completed" and acts.admissions == ["activity"] and acts.sent == [("hello", 1)]


async def test_a_failed_update_step_parks_for_an_operator(env: WorkflowEnvironment) -> None:
    # The update step runs a local activity, whose failure the SDK raises unwrapped (not as
    # an ActivityError): it must park the enrollment like a failed send, not fail the run.
    text = f"""
journey: update-fails-{uuid.uuid4().hex[:6]}
trigger: {{event: go}}
steps:
  - id: score
    update: {{lead_score: "1"}}
  - id: after
    send: {{channel: wecom.app, to: ops, text: after}}
"""
    acts = StandIns()
    updates: list[str] = []

    @activity.defn(name=UPDATE)
    async def failing_update(inp: UpdateInput) -> dict[str, object]:
        updates.append(inp.idempotency_key)
        raise ApplicationError("CRM says no", type="ProfileError", non_retryable=True)

    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow],
                      activities=[*acts.all(), failing_update]):  # fmt: skip
        handle = await start(env.client, queue, enrollment(text))
        for _ in range(30):  # a run that failed instead never parks: fail here, not at the timeout
            if (state := await handle.query("status", result_type=EnrollmentState)).status == "needs_attention":
                break
            await env.sleep(timedelta(seconds=1))
        assert state.current_step == "score" and "ProfileError: CRM says no" in (state.steps["score"]["reason"])
        await handle.execute_update("skip")
        final: EnrollmentState = await handle.result()
    assert len(updates) == 1 and final.exit_reason == "completed" and acts.sent == [("after", 1)]
    assert final.steps["score"] == {"status": "skipped", "reason": "operator"}


async def test_a_local_send_waits_out_its_backoff_on_a_timer(env: WorkflowEnvironment) -> None:
    # Not inside the workflow task, whose slot timers and signals of other enrollments need.
    acts = StandIns()
    calls: list[int] = []

    @activity.defn(name=SEND)
    async def flaky_send(inp: SendInput) -> SendResult:
        calls.append(activity.info().attempt)
        if len(calls) == 1:
            raise ApplicationError("WeCom is busy", type="WeComError")  # retryable
        return await acts.send(inp)

    queue = f"q-{uuid.uuid4()}"
    others = [a for a in acts.all() if a != acts.send]
    async with Worker(env.client, task_queue=queue, workflows=[JourneyWorkflow], activities=[*others, flaky_send]):
        handle = await start(env.client, queue, enrollment(FAILING))
        final: EnrollmentState = await handle.result()
        history = await handle.fetch_history()
    assert final.exit_reason == "completed" and calls == [1, 2, 1] and acts.sent == [("hello", 1), ("after", 1)]
    timers = [e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta() for e in history.events
              if e.HasField("timer_started_event_attributes")]  # fmt: skip
    assert timers == [timedelta(seconds=10)], "the step's first backoff (10 s), on a timer"
