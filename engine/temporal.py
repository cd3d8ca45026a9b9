"""Temporal client helpers: connecting, starting enrollments, signalling events."""

from __future__ import annotations

import asyncio
import logging
import threading

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError, RPCStatusCode

from engine.converter import data_converter
from engine.routing import enrollment_workflow_id
from engine.sweep_promise import SweepPromise
from workflows.confirmations import ConfirmationSweepWorkflow
from workflows.journey import JourneyWorkflow
from workflows.messages import EVENT_SIGNAL, STATUS_QUERY, WAKE_SIGNAL, EnrollmentInput, EnrollmentState, EventData

log = logging.getLogger("journeys.temporal")

_runtime_lock = threading.Lock()
_runtime: Runtime | None = None


def sdk_runtime() -> Runtime:
    """The Temporal SDK runtime of this process, with core logs sent to Python logging.

    Left alone, the SDK core prints its warnings to stdout, which would corrupt machine
    output such as ``journeys simulate --json``.
    """
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(
                telemetry=TelemetryConfig(
                    logging=LoggingConfig(
                        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
                    )
                )
            )
            Runtime.set_default(_runtime, error_if_already_set=False)
        return _runtime


async def connect(address: str, namespace: str) -> Client:
    """Connect with the converter every Journeys process must share (plans are pydantic)."""
    return await Client.connect(address, namespace=namespace, data_converter=data_converter, runtime=sdk_runtime())


#: Start, find it running, signal, find it ended: how many times before giving up (each
#: round needs an enrollment that ends in the instant between two calls).
_START_ATTEMPTS = 5


async def start_enrollment(client: Client, *, task_queue: str, inp: EnrollmentInput) -> str:
    """Start the enrollment of ``inp``'s customer, or deliver the trigger to it if it runs.

    A new run gets the trigger as its input only: signal-with-start would repeat it as a
    signal, an event in every enrollment's history. If the enrollment for this (journey,
    customer[, key]) is running, the trigger is delivered to it as a signal instead. Either
    way, duplicate events cannot enroll twice.

    Returns:
        The workflow id.
    """
    wid = enrollment_workflow_id(inp.plan.journey_id, inp.customer_id, inp.key)
    for _ in range(_START_ATTEMPTS):
        try:
            await client.start_workflow(
                JourneyWorkflow.run,
                inp,
                id=wid,
                task_queue=task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            )
            return wid
        except WorkflowAlreadyStartedError:
            if await signal_event(client, wid, inp.trigger):
                return wid
            # It ended between the two calls: start a new run.
    raise RuntimeError(f"enrollment {wid} kept ending between start and signal; the event stays queued")


class ConfirmationSweep:
    """Wakes the task queue's confirmation sweep, starting it if it does not run (``workflows/confirmations.py``).

    Called after every send that leaves a task waiting for confirmation, once the task is
    committed: one signal, so that a sweep about to end because nothing waited looks again,
    unless the sweep has promised another round (``engine/sweep_promise.py``).

    Waking never fails the caller: a signal Temporal does not take is retried in the
    background until one that began after the failure succeeds. So a send can record a
    task and the enrollment's end in one commit before it wakes the sweep, with nothing
    after that commit that could fail the attempt. Should the process stop first, every
    worker's watch finds the task waiting and starts the sweep (``engine/sweep_watch.py``).

    Args:
        client: Temporal client.
        task_queue: The journey task queue (one sweep per queue).
        promise: The sweep's promise of another round (None: always signal).
        retry_after_s: The first wait before signalling again after a failure (it doubles
            up to 30 s).
    """

    def __init__(self, client: Client, *, task_queue: str, promise: SweepPromise | None = None,
                 retry_after_s: float = 1.0) -> None:  # fmt: skip
        self._client = client
        self._task_queue = task_queue
        self._promise = promise
        self._retry_after_s = retry_after_s
        self._failures = 0  # wakes that failed; the retrier owes each a later signal
        self._retrier: asyncio.Task[None] | None = None

    @property
    def workflow_id(self) -> str:
        """The sweep's workflow id."""
        return f"confirmations/{self._task_queue}"

    @property
    def retrying(self) -> bool:
        """Whether a failed wake is being retried."""
        return self._retrier is not None and not self._retrier.done()

    async def __call__(self) -> None:
        """Make sure a sweep round will count the tasks committed so far (never raises)."""
        try:
            await self.wake()
        except Exception as exc:  # noqa: BLE001 - retried in the background (see the class)
            log.warning("could not wake the confirmation sweep (%s); retrying in the background", exc)
            self._failures += 1
            if not self.retrying:
                self._retrier = asyncio.create_task(self._retry())

    async def wake(self, *, trust_promise: bool = True) -> bool:
        """Signal the sweep unless (trusting it) its promise of another round stands.

        Returns:
            Whether the sweep was signalled.

        Raises:
            Exception: Temporal did not take the signal (``__call__`` retries instead).
        """
        if trust_promise and self._promise is not None and await self._promise.holds():
            return False
        await self.signal()
        return True

    async def signal(self) -> None:
        """Signal the sweep with start, promise or not."""
        await self._client.start_workflow(
            ConfirmationSweepWorkflow.run,
            id=self.workflow_id,
            task_queue=self._task_queue,
            start_signal=WAKE_SIGNAL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )

    async def _retry(self) -> None:
        delay = self._retry_after_s
        while True:
            await asyncio.sleep(delay)
            owed = self._failures
            try:
                await self.signal()
            except Exception as exc:  # noqa: BLE001 - keep trying
                delay = min(delay * 2, 30.0)
                log.warning("waking the confirmation sweep failed again (%s); next try in %.0f s", exc, delay)
                continue
            # A wake that failed while this signal was under way may have committed its task
            # after the sweep's last count: it is owed a signal that begins after it.
            if self._failures == owed:
                log.info("confirmation sweep woken after %d failed wakes", owed)
                self._failures = 0
                return
            delay = 0.0


async def signal_event(client: Client, workflow_id: str, event: EventData) -> bool:
    """Deliver an event to a running enrollment. False if it is no longer running."""
    try:
        await client.get_workflow_handle(workflow_id).signal(EVENT_SIGNAL, event)
        return True
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            return False
        raise


async def query_status(client: Client, workflow_id: str, run_id: str | None = None) -> EnrollmentState:
    """The live ``status`` query of an enrollment."""
    handle: WorkflowHandle[JourneyWorkflow, EnrollmentState] = client.get_workflow_handle_for(
        JourneyWorkflow.run, workflow_id, run_id=run_id
    )
    return await handle.query(STATUS_QUERY, result_type=EnrollmentState)
