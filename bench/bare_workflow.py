"""The bare baseline workflow: what a hand-written Temporal app would do, nothing more.

Kept free of any project import so it measures Temporal plus one HTTP call per send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

BARE_SEND = "bare_send"


@dataclass
class BareMessage:
    """One message: the channel's HTTP call to the fake WeCom."""

    channel: str  # "wecom.customer" (add_msg_template) or "wecom.app" (message/send)
    to: str
    text: str
    sender: str = "zhangsan"


@dataclass
class BareRequest:
    """Messages to send, with ``wait_s`` between consecutive ones."""

    messages: list[BareMessage] = field(default_factory=list)
    wait_s: float = 0.0
    #: Send with local activities, as journeys do (``JourneyV5``); the issue's baseline does not.
    local: bool = False


@workflow.defn(name="BareSend")
class BareSend:
    """Send each message with an activity (a local one if asked), sleeping ``wait_s`` between them."""

    @workflow.run
    async def run(self, req: BareRequest) -> int:
        retry = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=1.0)
        for i, message in enumerate(req.messages):
            if i and req.wait_s:
                await workflow.sleep(req.wait_s)
            if req.local:
                await workflow.execute_local_activity(
                    BARE_SEND, message, start_to_close_timeout=timedelta(seconds=10), retry_policy=retry
                )
            else:
                await workflow.execute_activity(
                    BARE_SEND, message, start_to_close_timeout=timedelta(seconds=10), retry_policy=retry
                )
        return len(req.messages)
