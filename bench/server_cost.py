"""The dev server's CPU per workflow: a bare workflow, and variants of it.

    .venv/bin/python -m bench.server_cost [--rounds 6] [--rate 20] [--seconds 20]
        [--variants plain,patch,payloads,eager-start,eager-activity,local-activity]

Tells how much of the server's work for a journey enrollment (bench/RESULTS.md) comes from
what: the ``workflow.patched()`` a new run met before the ``Journey`` type (a marker and the
SDK's upsert of the ``TemporalChangeVersion`` search attribute), larger payloads (the plan as
input, a 2 KB send input), and what eager dispatch saves: a start that gets its first
workflow task in the answer (``eager-start``: the client and the worker share a connection,
as they would in ``journeys up``; journeys do not ask for it, see bench/RESULTS.md), and an
activity handed to the worker with the workflow task's completion (``eager-activity``: the
server's ``system.enableActivityEagerExecution`` is on for this run; the other variants'
worker does not ask for it), and what a local activity saves (``local-activity``: the
activity runs in the worker inside the workflow task, as journey sends do since the
``JourneyV5`` type). Each variant starts workflows of one activity at a steady rate
on a fresh dev server; the variants take turns in rotating order, because the host's speed
and the server's cost per workflow drift over minutes, so only the differences within a
round compare. The bench process's own CPU (client and workers) is reported beside the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.harness import BenchStack, cpu_seconds, header, open_loop

QUEUE = "server-cost"
#: The queue whose worker asks for eager activities.
EAGER_QUEUE = "server-cost-eager-activities"


@dataclass
class CostRequest:
    """The workflow input; ``pad`` and ``activity_pad`` give it and its activity our sizes."""

    pad: str = ""
    activity_pad: str = ""
    #: Run the activity as a local activity (``CostPlain`` only).
    local: bool = False


@activity.defn(name="echo_start")
async def echo_start(text: str) -> str:
    """Return the first 500 characters (about the size of our send's result)."""
    return text[:500]


@workflow.defn(name="CostPlain")
class CostPlain:
    """One activity (a local one if asked), nothing else."""

    @workflow.run
    async def run(self, req: CostRequest) -> str:
        run_activity = workflow.execute_local_activity if req.local else workflow.execute_activity
        return await run_activity(echo_start, req.activity_pad, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn(name="CostPatched")
class CostPatched:
    """One patch, as every new journey enrollment meets one, then one activity."""

    @workflow.run
    async def run(self, req: CostRequest) -> str:
        workflow.patched("interpreter-4")
        return await workflow.execute_activity(
            echo_start, req.activity_pad, start_to_close_timeout=timedelta(seconds=10)
        )


@dataclass(frozen=True)
class Variant:
    """One way of starting and running the one-activity workflow."""

    name: str
    workflow: str
    request: CostRequest
    queue: str = QUEUE
    eager_start: bool = False


SMALL, OURS = CostRequest(), CostRequest(pad="p" * 1200, activity_pad="a" * 1950)
VARIANTS = {
    "plain": Variant("plain", "CostPlain", SMALL),
    "patch": Variant("one patch", "CostPatched", SMALL),
    "payloads": Variant("our payloads", "CostPlain", OURS),
    "eager-start": Variant("eager start", "CostPlain", SMALL, eager_start=True),
    "eager-activity": Variant("eager activity", "CostPlain", SMALL, queue=EAGER_QUEUE),
    "local-activity": Variant("local activity", "CostPlain", CostRequest(local=True)),
}


async def ms_per_workflow(client: Client, variant: Variant, rate: float, seconds: float,
                          server_pid: int) -> tuple[float, float]:  # fmt: skip
    """Start ``rate`` workflows a second for ``seconds``, wait for all.

    Returns:
        The server's, and this process's (client and workers), CPU ms per workflow.
    """
    before, own_before = cpu_seconds(server_pid), cpu_seconds(os.getpid())
    handles = []

    async def fire(_: int) -> None:
        handles.append(await client.start_workflow(variant.workflow, variant.request, task_queue=variant.queue,
                                                   id=f"{variant.workflow}-{uuid.uuid4().hex}",
                                                   request_eager_start=variant.eager_start))  # fmt: skip

    await open_loop(rate, seconds, fire)
    count = len(handles)
    for handle in handles:
        await handle.result()
    await asyncio.sleep(2)  # the server's work after the last completion (visibility, task deletion)
    server = 1000 * (cpu_seconds(server_pid) - before) / count
    return server, 1000 * (cpu_seconds(os.getpid()) - own_before) / count


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--rate", type=float, default=20.0, help="workflows started per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of one variant's turn")
    parser.add_argument("--variants", default="plain,patch,payloads",
                        help=f"comma-separated, the first is the reference; of {', '.join(VARIANTS)}")  # fmt: skip
    args = parser.parse_args()
    variants = [VARIANTS[v] for v in args.variants.split(",")]
    argv = ["python", "-m", "bench.server_cost", "--rounds", str(args.rounds), "--rate", f"{args.rate:g}",
            "--seconds", f"{args.seconds:g}", "--variants", args.variants]  # fmt: skip
    print(header("Server cost per workflow", argv))
    stack = BenchStack()
    if any(v.queue == EAGER_QUEUE for v in variants):
        stack.temporal.argv += ["--dynamic-config-value", "system.enableActivityEagerExecution=true"]
    stack.temporal.start(ready_timeout=90)
    try:
        assert stack.temporal.proc is not None
        server_pid = stack.temporal.proc.pid
        client = await Client.connect(stack.temporal_address)

        def worker(queue: str, *, eager_activities: bool) -> Worker:
            return Worker(client, task_queue=queue, workflows=[CostPlain, CostPatched],
                          activities=[echo_start], workflow_runner=UnsandboxedWorkflowRunner(),
                          max_concurrent_activities=200,
                          disable_eager_activity_execution=not eager_activities)  # fmt: skip

        async with worker(QUEUE, eager_activities=False), worker(EAGER_QUEUE, eager_activities=True):
            await ms_per_workflow(client, VARIANTS["plain"], args.rate, 5, server_pid)  # warm-up
            server_rounds: list[dict[str, float]] = []
            own_rounds: list[dict[str, float]] = []
            for index in range(args.rounds):
                shift = index % len(variants)
                server_rounds.append({})
                own_rounds.append({})
                for variant in variants[shift:] + variants[:shift]:
                    server_ms, own_ms = await ms_per_workflow(client, variant, args.rate, args.seconds, server_pid)
                    server_rounds[-1][variant.name], own_rounds[-1][variant.name] = server_ms, own_ms
        names = [v.name for v in variants]
        print(report("Server CPU ms per workflow", server_rounds, names))
        print()
        print(report("The bench process's CPU ms per workflow (client and workers)", own_rounds, names))
    finally:
        stack.temporal.stop()


def report(title: str, rounds: list[dict[str, float]], names: list[str]) -> str:
    """A table of the rounds, and each variant's median difference from the first."""
    reference, others = names[0], names[1:]
    out = [f"{title}, per round (the variants in rotating order):", ""]
    out.append("| round | " + " | ".join(names) + " | " + " | ".join(f"{n} - {reference}" for n in others) + " |")
    out.append("|---" * (1 + len(names) + len(others)) + "|")
    for index, f in enumerate(rounds):
        cells = [f"{f[n]:.2f}" for n in names] + [f"{f[n] - f[reference]:+.2f}" for n in others]
        out.append(f"| {index} | " + " | ".join(cells) + " |")
    for name in others:
        diffs = sorted(f[name] - f[reference] for f in rounds)
        higher = sum(d > 0 for d in diffs)
        out.append(f"\n- {name} - {reference}: median {diffs[len(diffs) // 2]:+.2f} ms, "
                   f"higher in {higher} of {len(diffs)} rounds")  # fmt: skip
    return "\n".join(out)


if __name__ == "__main__":
    asyncio.run(main())
