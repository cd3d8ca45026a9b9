"""Follows one customer mass-send task until the staff member confirms it (or never does).

Superseded by the shared sweep (``workflows/confirmations.py``); kept registered so that
trackers started before it still finish.

WeCom creates the task at once but delivers only after a confirmation in the client, and
offers no callback for it: the tracker asks ``get_groupmsg_send_result`` on Temporal timers,
backing off, and records the outcome in the message log.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.messages import TRACK_MASS_SEND, TrackInput, TrackResult

#: Poll after 1 minute, then double up to 30 minutes; WeCom tasks lapse after 3 days.
FIRST_POLL = timedelta(minutes=1)
MAX_POLL = timedelta(minutes=30)
GIVE_UP_AFTER = timedelta(days=3)


@workflow.defn(name="MassSendTrackerWorkflow")
class MassSendTrackerWorkflow:
    """Polls one task's result and records it."""

    @workflow.run
    async def run(self, inp: TrackInput) -> TrackResult:
        """Returns the final status (``sent`` or ``failed``)."""
        waited = timedelta(0)
        delay = timedelta(seconds=inp.first_poll_s) if inp.first_poll_s else FIRST_POLL
        while True:
            expired = waited >= GIVE_UP_AFTER
            result: TrackResult = await workflow.execute_activity(
                TRACK_MASS_SEND, args=[inp, expired], result_type=TrackResult,
                start_to_close_timeout=timedelta(seconds=30),
            )  # fmt: skip
            if result.status != "pending":
                return result
            await workflow.sleep(delay)
            waited += delay
            delay = min(delay * 2, MAX_POLL)
