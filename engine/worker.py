"""Worker assembly: the journey workflow plus every activity, bound to a runtime."""

from __future__ import annotations

import compileall
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.audience import AudienceActivities
from activities.channels import WebhookSender
from activities.confirmations import ConfirmationActivities
from activities.custom import Services, registered_activities
from activities.enrollment import EnrollmentActivities
from activities.matching import MatchActivities
from activities.send import SendActivities
from activities.steps import StepActivities
from engine.dispatch import Dispatcher
from engine.emitter import EngineEvents
from engine.logs import LogContextInterceptor
from engine.metrics import MetricsInterceptor
from engine.registry import ActivityRegistry, RegistryError, load_activities
from engine.runtime import Runtime
from engine.sweep_promise import SweepPromise
from engine.sweep_watch import WATCH_EVERY_S, SweepWatch
from engine.temporal import ConfirmationSweep
from workflows.confirmations import ConfirmationSweepWorkflow
from workflows.journey import JOURNEY_WORKFLOWS
from workflows.scheduler import AudienceScheduleWorkflow
from workflows.tracker import MassSendTrackerWorkflow


def activities_for(rt: Runtime, *, clock_offset_s: float = 0.0,
                   registry: ActivityRegistry | None = None) -> list[Callable[..., Any]]:  # fmt: skip
    """The bound activity methods a worker registers: built-ins plus registered journey activities.

    Args:
        rt: The process runtime.
        clock_offset_s: Simulation only: enrollments started by events that activities
            emit run on the same simulated clock.
        registry: Journey activities to serve (default: every discovered one, with the
            modules the runtime's settings list).
    """
    registry = registry or load_activities(rt.settings.journeys_activity_modules)
    dispatcher = Dispatcher(
        rt.store, rt.redis, rt.temporal, task_queue=rt.settings.temporal_task_queue, clock_offset_s=clock_offset_s
    )
    # Its pending dispatch marks are written as the process stops (recovery would route them again).
    rt.close_with(dispatcher.close)
    events = EngineEvents(dispatcher)
    enrollment = EnrollmentActivities(rt.store, rt.redis, events)
    steps = StepActivities(rt.store, rt.wecom)
    queue = rt.settings.temporal_task_queue
    promise = SweepPromise(rt.redis, queue)
    sends = SendActivities(
        rt.store, rt.wecom, events, webhook=WebhookSender(rt.http, rt.settings.journeys_webhook_secret),
        confirmations=ConfirmationSweep(rt.temporal, task_queue=queue, promise=promise), admission=enrollment,
    )  # fmt: skip
    confirmations = ConfirmationActivities(
        rt.store, rt.wecom, events, first_poll_s=rt.settings.wecom_confirm_poll_s, promise=promise
    )
    audience = AudienceActivities(rt.store, rt.redis, rt.temporal, task_queue=queue)
    engine_activities = [
        audience.next_fire,
        audience.gate,
        audience.run,
        enrollment.admit,
        enrollment.finish,
        enrollment.converted,
        enrollment.tally,
        enrollment.gate,
        MatchActivities(rt.store).match,
        sends.send,
        confirmations.sweep,
        confirmations.track,
        steps.branch,
        steps.next_time,
        steps.tag,
        steps.update,
    ]
    own = {_activity_name(fn) for fn in engine_activities}
    clash = sorted(own & set(registry.names()))
    if clash:
        # The registry refuses the reserved namespace; a stand-in registry might not.
        raise RegistryError(f"journey activities may not reuse engine activity names: {', '.join(clash)}")
    return [*engine_activities, *registered_activities(registry, Services(rt, dispatcher))]


def confirmation_sweep_watch(rt: Runtime, *, every_s: float = WATCH_EVERY_S) -> SweepWatch:
    """The watch that keeps this task queue's confirmation sweep running while tasks wait.

    A worker runs it for as long as it runs (``async with watch.running()``).
    """
    queue = rt.settings.temporal_task_queue
    sweep = ConfirmationSweep(rt.temporal, task_queue=queue, promise=SweepPromise(rt.redis, queue))
    return SweepWatch(rt.store, sweep, every_s=every_s)


def _activity_name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__temporal_activity_definition").name)


def precompile_workflows() -> None:
    """Write bytecode for the workflow modules, if it is missing or stale.

    The sandbox imports the workflow module afresh for every workflow run. Without a
    ``.pyc`` (``PYTHONDONTWRITEBYTECODE=1``, a read-only or fresh checkout) that means
    compiling ``workflows/journey.py`` from source for every new enrollment: about 10% of
    the worker's CPU at 20 enrollments/s. Python reads bytecode even when told not to
    write it, so writing it once here is enough. Failing to write (read-only) is harmless.
    """
    import workflows

    with contextlib.suppress(OSError):
        compileall.compile_dir(str(Path(workflows.__file__).parent), quiet=2, maxlevels=0)


def build_worker(rt: Runtime, *, task_queue: str | None = None, clock_offset_s: float = 0.0,
                 overrides: dict[str, Callable[..., Any]] | None = None,
                 registry: ActivityRegistry | None = None) -> Worker:  # fmt: skip
    """A worker for the journey task queue.

    Args:
        rt: The process runtime.
        task_queue: Defaults to the settings' queue.
        clock_offset_s: Simulation only (see ``activities_for``).
        overrides: Activities to register instead of the built-ins of the same name
            (tests use stand-ins this way).
        registry: Journey activities to serve (default: every discovered one);
            ``engine.testing`` passes one with stand-ins.
    """
    acts = activities_for(rt, clock_offset_s=clock_offset_s, registry=registry)
    if overrides:
        names = {_activity_name(fn): fn for fn in acts}
        names.update(overrides)
        acts = list(names.values())
    return Worker(
        rt.temporal,
        task_queue=task_queue or rt.settings.temporal_task_queue,
        workflows=[*JOURNEY_WORKFLOWS, AudienceScheduleWorkflow, ConfirmationSweepWorkflow, MassSendTrackerWorkflow],
        activities=acts,
        max_concurrent_activities=rt.settings.journeys_worker_activities,
        max_concurrent_workflow_tasks=rt.settings.journeys_worker_workflow_tasks,
        max_concurrent_local_activities=rt.settings.journeys_worker_local_activities,
        interceptors=[MetricsInterceptor(), LogContextInterceptor()],
        workflow_runner=workflow_runner(sandboxed=rt.settings.journeys_workflow_sandbox),
    )


def workflow_runner(*, sandboxed: bool) -> WorkflowRunner:
    """How the worker runs workflow code (``JOURNEYS_WORKFLOW_SANDBOX``).

    Unsandboxed by default. The SDK's sandbox guards workflow code against
    non-determinism by importing the workflow module afresh and proxying restricted
    modules for every workflow run: about a quarter of the worker's CPU per new enrollment
    (bench/RESULTS.md). The engine's workflows run only our code, never user code:
    simulations, the interpreter and the replay tests run them sandboxed, where a clock,
    randomness or I/O call in a workflow module fails the test, and a static guard
    (tests/workflows/test_determinism_guard.py) checks every path of them and of the models
    they import. They keep no module state, which is what the per-run import would isolate.

    Args:
        sandboxed: Run in the sandbox anyway (every module the workflow modules import is
            passed through; restricted calls stay forbidden).
    """
    if not sandboxed:
        return UnsandboxedWorkflowRunner()
    precompile_workflows()
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_all_modules())
