"""One sweep that follows every customer mass-send task of a task queue to its outcome.

WeCom creates a ``wecom.customer`` task at once but delivers it only after the staff member
confirms it in the client, and sends no callback for that. The message log keeps each
waiting task with the time of its next check; this workflow runs the check activity on a
Temporal timer, so one workflow per task queue replaces a workflow per message.

A send that leaves a task waiting signals the sweep with start (``WAKE_SIGNAL``), unless a
round has promised another (``engine/sweep_promise.py``: the activity keeps the promise, and
a round that would end withdraws it and counts again). The sweep ends once nothing waits
and no signal came since its last look: a task logged meanwhile either was seen by that
look or signalled after it, and a signal that arrives while the run completes makes
Temporal refuse the completion, so no task is left without a sweep.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.messages import SWEEP_CONFIRMATIONS, WAKE_SIGNAL, SweepResult

#: Sweeps per run before continuing as new (or sooner, when Temporal suggests it).
ROUNDS_PER_RUN = 500


@workflow.defn(name="ConfirmationSweepWorkflow")
class ConfirmationSweepWorkflow:
    """Checks the due tasks, sleeps as long as the activity says, and again while any waits."""

    def __init__(self) -> None:
        self._woken = False

    @workflow.signal(name=WAKE_SIGNAL)
    def wake(self) -> None:
        """A task was logged as waiting: do not end before looking again."""
        self._woken = True

    @workflow.run
    async def run(self) -> None:
        """Runs while tasks wait; continues as new to keep its history short."""
        for _ in range(ROUNDS_PER_RUN):
            self._woken = False
            result: SweepResult = await workflow.execute_activity(
                SWEEP_CONFIRMATIONS, result_type=SweepResult, start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
            )  # fmt: skip
            if result.waiting == 0 and not self._woken:
                return
            if workflow.info().is_continue_as_new_suggested():
                break
            await workflow.sleep(timedelta(seconds=result.next_in_s))
        workflow.continue_as_new()
