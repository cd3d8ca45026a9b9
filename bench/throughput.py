"""Completed enrollments per second of a 3-step journey, Journeys against a bare workflow.

    .venv/bin/python -m bench.throughput [--customers 2000]

The journey is ``send`` (``wecom.app``), ``wait: 1s``, ``send``. Journeys: the events are
posted to the API in batches of 100 (4 requests in flight); the baseline starts the same
number of hand-written workflows (activity, 1 s timer, activity; 32 starts in flight).
Both run on the same dev server and fake WeCom in the same run. An enrollment counts as
completed when its second message reaches the fake; the rate is N divided by the time
from the first submission to the last second message.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
import uuid
from typing import Any

from temporalio.client import Client

from bench.bare_workflow import BareMessage, BareRequest, BareSend
from bench.harness import BenchStack, header

JOURNEY = """
journey: bench-throughput
trigger: {event: bench.throughput}
steps:
  - send: {channel: wecom.app, to: "staff{{ trigger.n }}", text: "tp {{ trigger.run }} {{ trigger.n }} a"}
  - wait: 1s
  - send: {channel: wecom.app, to: "staff{{ trigger.n }}", text: "tp {{ trigger.run }} {{ trigger.n }} b"}
"""


async def finished_at(stack: BenchStack, prefix: str, count: int, timeout: float) -> tuple[float, int]:
    """(time the last second message arrived, how many arrived), polling the fake every 2 s.

    Each poll asks only for the messages received since the last one: listing them all made
    the run measured second pay for the first run's messages on every poll.
    """
    deadline = time.monotonic() + timeout
    last, since = float("nan"), 0
    arrived: dict[str, float] = {}
    while time.monotonic() < deadline:
        messages, since = await stack.fake_messages_since(since)
        arrived.update({m["text"]: m["at"] for m in messages if (m["text"] or "").startswith(prefix)
                        and m["text"].endswith(" b") and m["delivered"]})  # fmt: skip
        if len(arrived) >= count:
            last = max(arrived.values())
            break
        await asyncio.sleep(2.0)
    return last, len(arrived)


async def run_ours(stack: BenchStack, n: int, timeout: float) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    sem = asyncio.Semaphore(4)
    async with stack.client(timeout=120) as api:

        async def post(lo: int) -> None:
            events = [{"event_id": f"tp-{run}-{i}", "customer_id": f"tp-{run}-c{i}", "name": "bench.throughput",
                       "properties": {"run": run, "n": i}} for i in range(lo, min(n, lo + 100))]  # fmt: skip
            async with sem:
                (await api.post("/v1/events", json={"events": events})).raise_for_status()

        cpu0 = stack.cpu()
        t0 = time.time()
        await asyncio.gather(*(post(lo) for lo in range(0, n, 100)))
        accepted = time.time()
    last, done = await finished_at(stack, f"tp {run} ", n, timeout)
    cpu = {k: v - cpu0.get(k, 0.0) for k, v in stack.cpu().items()}
    db = stack.data_dir / "journeys.db"
    # The enrollment row is recorded just after the last send: give the last few a moment.
    exited, settle = 0, time.monotonic() + 30
    while exited < done and time.monotonic() < settle:
        with sqlite3.connect(db) as conn:
            exited = conn.execute("select count(*) from enrollments where customer_id like ? and status = 'exited'",
                                  (f"tp-{run}-%",)).fetchone()[0]  # fmt: skip
        if exited < done:
            await asyncio.sleep(0.5)
    return {"n": n, "done": done, "seconds": last - t0, "rate": n / (last - t0), "ingest_s": accepted - t0,
            "exited": exited, "cpu": cpu, "own_cpu": cpu["api"] + cpu["worker"]}  # fmt: skip


async def run_bare(stack: BenchStack, client: Client, n: int, timeout: float, queue: str) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    sem = asyncio.Semaphore(32)

    async def start(i: int) -> None:
        msgs = [BareMessage("wecom.app", f"staff{i}", f"tpb {run} {i} {step}") for step in ("a", "b")]
        async with sem:
            await client.start_workflow(BareSend.run, BareRequest(msgs, wait_s=1.0), id=f"tpb-{run}-{i}",
                                        task_queue=queue)  # fmt: skip

    cpu0 = stack.cpu()
    t0 = time.time()
    await asyncio.gather(*(start(i) for i in range(n)))
    accepted = time.time()
    last, done = await finished_at(stack, f"tpb {run} ", n, timeout)
    cpu = {k: v - cpu0.get(k, 0.0) for k, v in stack.cpu().items()}
    return {"n": n, "done": done, "seconds": last - t0, "rate": n / (last - t0), "ingest_s": accepted - t0,
            "exited": done, "cpu": cpu, "own_cpu": cpu["bare-worker"]}  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--bare-unsandboxed", action="store_true",
                        help="run the baseline workflow outside the SDK's sandbox too")  # fmt: skip
    args = parser.parse_args()
    print(header("Throughput", ["python", "-m", "bench.throughput", "--customers", str(args.customers),
                                *(["--bare-unsandboxed"] if args.bare_unsandboxed else [])]))  # fmt: skip
    stack = BenchStack().start()
    try:
        stack.start_bare_worker("bare", unsandboxed=args.bare_unsandboxed)
        await stack.deploy(JOURNEY)
        client = await Client.connect(stack.temporal_address)
        await run_ours(stack, args.warmup, args.timeout)
        await run_bare(stack, client, args.warmup, args.timeout, "bare")
        ours = await run_ours(stack, args.customers, args.timeout)
        bare = await run_bare(stack, client, args.customers, args.timeout, "bare")
        print(
            "| path | enrollments | completed | seconds | completed/s | all submitted after | CPU ms per "
            "enrollment: ours (API+worker / bare worker) | Temporal server | fake WeCom |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for name, r in (("Journeys", ours), ("bare Temporal", bare)):
            per = {k: 1000 * v / r["n"] for k, v in r["cpu"].items()}
            print(f"| {name} | {r['n']} | {r['done']} | {r['seconds']:.1f} | {r['rate']:.1f} | {r['ingest_s']:.1f} s "
                  f"| {1000 * r['own_cpu'] / r['n']:.1f} | {per['temporal']:.1f} | {per['fake']:.1f} |")  # fmt: skip
        print(f"\nratio Journeys / bare: {ours['rate'] / bare['rate']:.2f}; enrollment rows exited: {ours['exited']}; "
              f"Journeys CPU per enrollment by process (ms): "
              f"{ {k: round(1000 * v / ours['n'], 1) for k, v in ours['cpu'].items()} }; load average at end "
              f"{open('/proc/loadavg').read().split()[:3]}")  # fmt: skip
    finally:
        stack.stop()


if __name__ == "__main__":
    asyncio.run(main())
