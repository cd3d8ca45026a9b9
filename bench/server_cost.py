"""The dev server's CPU per workflow: a bare workflow, with one patch, and with our payload sizes.

    .venv/bin/python -m bench.server_cost [--rounds 6] [--rate 20] [--seconds 20]

Tells how much of the server's extra work for a journey enrollment (bench/RESULTS.md) comes
from the ``workflow.patched()`` every new run meets (a marker and the SDK's upsert of the
``TemporalChangeVersion`` search attribute) and how much from larger payloads (the plan as
input, a 2 KB send input). Each variant starts workflows of one activity at a steady rate on
a fresh dev server; the variants take turns in rotating order, because the host's speed and
the server's cost per workflow drift over minutes, so only the differences within a round
compare.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.harness import BenchStack, cpu_seconds, header, open_loop

QUEUE = "server-cost"


@dataclass
class CostRequest:
    """The workflow input; ``pad`` and ``activity_pad`` give it and its activity our sizes."""

    pad: str = ""
    activity_pad: str = ""


@activity.defn(name="echo_start")
async def echo_start(text: str) -> str:
    """Return the first 500 characters (about the size of our send's result)."""
    return text[:500]


@workflow.defn(name="CostPlain")
class CostPlain:
    """One activity, nothing else."""

    @workflow.run
    async def run(self, req: CostRequest) -> str:
        return await workflow.execute_activity(
            echo_start, req.activity_pad, start_to_close_timeout=timedelta(seconds=10)
        )


@workflow.defn(name="CostPatched")
class CostPatched:
    """One patch, as every new journey enrollment meets one, then one activity."""

    @workflow.run
    async def run(self, req: CostRequest) -> str:
        workflow.patched("interpreter-4")
        return await workflow.execute_activity(
            echo_start, req.activity_pad, start_to_close_timeout=timedelta(seconds=10)
        )


async def server_ms_per_workflow(client: Client, workflow_name: str, req: CostRequest, rate: float, seconds: float,
                                 server_pid: int) -> float:  # fmt: skip
    """Start ``rate`` workflows a second for ``seconds``, wait for all; the server's CPU ms per workflow."""
    before = cpu_seconds(server_pid)
    handles = []

    async def fire(_: int) -> None:
        handles.append(await client.start_workflow(workflow_name, req, id=f"{workflow_name}-{uuid.uuid4().hex}",
                                                   task_queue=QUEUE))  # fmt: skip

    await open_loop(rate, seconds, fire)
    count = len(handles)
    for handle in handles:
        await handle.result()
    await asyncio.sleep(2)  # the server's work after the last completion (visibility, task deletion)
    return 1000 * (cpu_seconds(server_pid) - before) / count


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--rate", type=float, default=20.0, help="workflows started per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of one variant's turn")
    args = parser.parse_args()
    argv = ["python", "-m", "bench.server_cost", "--rounds", str(args.rounds), "--rate", f"{args.rate:g}",
            "--seconds", f"{args.seconds:g}"]  # fmt: skip
    print(header("Server cost per workflow", argv))
    stack = BenchStack()
    stack.temporal.start(ready_timeout=90)
    try:
        assert stack.temporal.proc is not None
        server_pid = stack.temporal.proc.pid
        client = await Client.connect(stack.temporal_address)
        small, ours = CostRequest(), CostRequest(pad="p" * 1200, activity_pad="a" * 1950)
        variants = [
            ("plain", "CostPlain", small),
            ("one patch", "CostPatched", small),
            ("our payloads", "CostPlain", ours),
        ]
        async with Worker(client, task_queue=QUEUE, workflows=[CostPlain, CostPatched], activities=[echo_start],
                          workflow_runner=UnsandboxedWorkflowRunner(), max_concurrent_activities=200):  # fmt: skip
            await server_ms_per_workflow(client, "CostPlain", small, args.rate, 5, server_pid)  # warm-up
            rounds: list[dict[str, float]] = []
            for index in range(args.rounds):
                shift = index % len(variants)
                figures = {}
                for name, workflow_name, req in variants[shift:] + variants[:shift]:
                    figures[name] = await server_ms_per_workflow(client, workflow_name, req, args.rate, args.seconds,
                                                                 server_pid)  # fmt: skip
                rounds.append(figures)
        print("Server CPU ms per workflow, per round (the variants in rotating order):\n")
        print(
            "| round | plain | one patch | our payloads | patch - plain | payloads - plain |\n|---|---|---|---|---|---|"
        )
        for index, f in enumerate(rounds):
            print(f"| {index} | {f['plain']:.2f} | {f['one patch']:.2f} | {f['our payloads']:.2f} "
                  f"| {f['one patch'] - f['plain']:+.2f} | {f['our payloads'] - f['plain']:+.2f} |")  # fmt: skip
        for name in ("one patch", "our payloads"):
            diffs = sorted(f[name] - f["plain"] for f in rounds)
            higher = sum(d > 0 for d in diffs)
            print(
                f"\n- {name} - plain: median {diffs[len(diffs) // 2]:+.2f} ms, "
                f"higher in {higher} of {len(diffs)} rounds"
            )
    finally:
        stack.temporal.stop()


if __name__ == "__main__":
    asyncio.run(main())
