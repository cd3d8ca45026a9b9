"""Regenerate the committed replay histories (run by hand after a deliberate change).

    .venv/bin/python -m tests.replay.record_histories [SCENARIO...] [--sweep-only] [--as PATCH]

Only add new files for new behaviour: existing histories stand for enrollments already
running in production and must keep replaying. ``--as PATCH`` names the files
``PATCH--<workflow>.json`` instead of after the scenario, for a scenario recorded again
under a new patch without replacing its older histories.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from temporalio.service import RPCError

from engine.routing import enrollment_workflow_id
from engine.runtime import Runtime
from engine.scenario import load_scenario
from engine.simulate import compile_scenario_journeys, simulate
from engine.temporal import ConfirmationSweep

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE.parent / "fixtures" / "scenarios"


async def record(name: str, *, sweep_only: bool = False, label: str | None = None) -> None:
    path = SCENARIOS / f"{name}.yaml"
    scenario = load_scenario(path)

    async def export(rt: Runtime) -> None:
        sweep = ConfirmationSweep(rt.temporal, task_queue=rt.settings.temporal_task_queue).workflow_id
        history = await rt.temporal.get_workflow_handle(sweep).fetch_history()
        sweep_file = HERE / "histories" / f"confirmation-sweep--{name}.json"
        if sweep_file.exists() and not sweep_only:
            # It stands for sweeps already running; rename it first to record a new one.
            print(f"kept {sweep_file.name}")  # noqa: T201
        else:
            sweep_file.write_text(history.to_json())
        if sweep_only:
            return
        recorded: set[str] = set()
        for row in rt.store.list_enrollments():
            history = await rt.temporal.get_workflow_handle(row.workflow_id, run_id=row.enrollment_id).fetch_history()
            (HERE / "histories" / f"{label or name}--{_slug(row.workflow_id)}.json").write_text(history.to_json())
            recorded.add(row.enrollment_id)
        # Refused runs are not listed as enrollments: the latest run of each customer's
        # enrollment workflow, if it is not one of the above (unkeyed journeys only).
        for journey in rt.store.list_journeys():
            for customer in scenario.customers:
                wid = enrollment_workflow_id(journey.id, customer.id)
                try:
                    history = await rt.temporal.get_workflow_handle(wid).fetch_history()
                except RPCError:
                    continue  # never started
                run_id = history.events[0].workflow_execution_started_event_attributes.original_execution_run_id
                if run_id not in recorded:
                    (HERE / "histories" / f"{label or name}--{_slug(wid)}-last.json").write_text(history.to_json())

    await simulate(scenario, compile_scenario_journeys(scenario, path.parent), before_teardown=export)


def _slug(workflow_id: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", workflow_id.lower()).strip("-")


async def main(names: list[str], *, sweep_only: bool = False, label: str | None = None) -> None:
    for name in names:
        await record(name, sweep_only=sweep_only, label=label)


if __name__ == "__main__":
    # Existing histories stand for running enrollments: record only new scenarios, or with
    # --sweep-only just the confirmation sweep's run of a scenario that sends wecom.customer.
    args = sys.argv[1:]
    label = None
    if "--as" in args:
        at = args.index("--as")
        label = args[at + 1]
        del args[at : at + 2]
    sweep_only = "--sweep-only" in args
    names = [a for a in args if a != "--sweep-only"]
    asyncio.run(main(names or ["paid-or-nudge", "language-tour"], sweep_only=sweep_only, label=label))
