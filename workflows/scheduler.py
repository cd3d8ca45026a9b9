"""Scheduled audience journeys: one scheduler workflow per journey.

It sleeps on Temporal timers until the cron's next fire time, then (unless the journey is
paused) runs an activity that enrolls the matching audience. Timers rather than a
Temporal Schedule, so the same code runs on the time-skipping server in simulations.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.messages import (
        ARCHIVE_SIGNAL,
        AUDIENCE_RUN,
        SCHEDULE_GATE,
        SCHEDULE_NEXT,
        AudienceRunInput,
        AudienceRunResult,
        GateState,
        ScheduleInput,
        ScheduleNext,
        ScheduleNextInput,
    )

_LOCAL = timedelta(seconds=30)
#: Rounds before continue-as-new keeps the history short (a daily schedule: ~3 months).
ROUNDS_PER_RUN = 100


@workflow.defn(name="AudienceScheduleWorkflow")
class AudienceScheduleWorkflow:
    """Fires a journey's audience runs on its cron until the journey is archived."""

    def __init__(self) -> None:
        self._stop = False

    @workflow.signal(name=ARCHIVE_SIGNAL)
    def archive(self) -> None:
        """The journey was archived: stop scheduling."""
        self._stop = True

    @workflow.run
    async def run(self, inp: ScheduleInput) -> int:
        """Loop over fire times; returns the number of rounds in this run."""
        rounds = 0
        while not self._stop:
            now = workflow.now() + timedelta(seconds=inp.clock_offset_s)
            upcoming: ScheduleNext = await workflow.execute_local_activity(
                SCHEDULE_NEXT, ScheduleNextInput(journey_id=inp.journey_id, after=now.isoformat()),
                result_type=ScheduleNext, start_to_close_timeout=_LOCAL,
            )  # fmt: skip
            if upcoming.at is None:
                return rounds
            due = datetime.fromisoformat(upcoming.at)
            try:
                await workflow.wait_condition(lambda: self._stop, timeout=due - now)
            except TimeoutError:
                pass
            if self._stop:
                break
            gate: GateState = await workflow.execute_local_activity(
                SCHEDULE_GATE, inp.journey_id, result_type=GateState, start_to_close_timeout=_LOCAL
            )
            if gate.status == "archived":
                break
            if gate.status == "active":  # a paused journey's schedule is paused too
                await workflow.execute_activity(
                    AUDIENCE_RUN,
                    AudienceRunInput(
                        journey_id=inp.journey_id, run_at=due.isoformat(), clock_offset_s=inp.clock_offset_s
                    ),
                    result_type=AudienceRunResult,
                    start_to_close_timeout=timedelta(hours=2),
                    heartbeat_timeout=timedelta(minutes=2),
                    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
                )
            rounds += 1
            if rounds >= ROUNDS_PER_RUN or workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(inp)
        return rounds
