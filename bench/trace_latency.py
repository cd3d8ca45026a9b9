"""Where an event's latency goes: the median time from submitting it to each history event.

    .venv/bin/python -m bench.trace_latency [--rate 5] [--events 150] [--bare]

Posts single events at a low steady rate to the ``bench.latency`` journey (a
``wecom.customer`` send) and prints, for each event of the enrollments' histories, the
median time from the POST (or, with ``--bare``, from ``start_workflow`` of the baseline) to
it, with the 202 and the fake receiving the message in between. The first 20 are warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import time
import uuid
from itertools import pairwise

from temporalio.client import Client

from bench.bare_workflow import BareMessage, BareRequest, BareSend
from bench.harness import BenchStack, header, open_loop
from bench.latency import JOURNEY, put_customers


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--events", type=int, default=150)
    parser.add_argument("--bare", action="store_true", help="trace the bare baseline instead")
    args = parser.parse_args()
    print(header("Latency trace", ["python", "-m", "bench.trace_latency", "--rate", f"{args.rate:g}", "--events",
                                   str(args.events), *(["--bare"] if args.bare else [])]))  # fmt: skip
    stack = BenchStack().start()
    run = uuid.uuid4().hex[:6]
    submitted: dict[int, float] = {}
    answered: dict[int, float] = {}
    try:
        await stack.fake_config(auto_confirm=True)
        client = await Client.connect(stack.temporal_address)
        customers = [f"c{i}" for i in range(args.events)]
        if args.bare:
            stack.start_bare_worker("bare")
            prefix = f"bare {run} "

            async def fire(i: int) -> None:
                submitted[i] = time.time()
                await client.start_workflow(BareSend.run, BareRequest([BareMessage("wecom.customer", f"wm-{i}",
                                            f"{prefix}{i}")]), id=f"bare-{run}-{i}", task_queue="bare")  # fmt: skip
                answered[i] = time.time()

            await open_loop(args.rate, args.events / args.rate, fire)
        else:
            await stack.deploy(JOURNEY)
            await put_customers(stack, customers)
            prefix = f"lat {run} "
            async with stack.client() as api:

                async def fire(i: int) -> None:
                    body = {"event_id": f"lat-{run}-{i}", "customer_id": customers[i], "name": "bench.latency",
                            "properties": {"run": run, "n": i}}  # fmt: skip
                    submitted[i] = time.time()
                    await api.post("/v1/events", json=body)
                    answered[i] = time.time()

                await open_loop(args.rate, args.events / args.rate, fire)
        await asyncio.sleep(5)
        received = {m["text"]: m["at"] for m in await stack.fake_messages() if (m["text"] or "").startswith(prefix)}
        db = sqlite3.connect(stack.data_dir / "journeys.db")
        rows = []
        for i in range(20, args.events):
            if args.bare:
                wid = f"bare-{run}-{i}"
            else:
                (wid,) = db.execute("select workflow_id from enrollments where customer_id = ?",
                                    (customers[i],)).fetchone()  # fmt: skip
            marks: dict[str, float] = {"answered (202 / start_workflow)": answered[i] - submitted[i],
                                       "message at the fake": received[f"{prefix}{i}"] - submitted[i]}  # fmt: skip
            seen: dict[str, int] = {}
            for ev in (await client.get_workflow_handle(wid).fetch_history()).events:
                name = str(ev.WhichOneof("attributes")).removesuffix("_event_attributes")
                seen[name] = seen.get(name, 0) + 1
                key = name if seen[name] == 1 else f"{name} #{seen[name]}"
                marks[key] = ev.event_time.ToDatetime().timestamp() - submitted[i]
            rows.append(marks)
        print_trace(rows)
    finally:
        stack.stop()


def print_trace(rows: list[dict[str, float]]) -> None:
    """Print each mark's median over all enrollments and over the slowest 5%, then where the slow ones waited.

    Args:
        rows: Per enrollment, seconds from submit to each mark (history events, 202, fake).
    """
    slow = sorted(rows, key=lambda r: r["message at the fake"])[-max(1, len(rows) // 20) :]
    keys = set().union(*rows)

    def median(of: list[dict[str, float]], key: str) -> float:
        values = [r[key] for r in of if key in r]
        return statistics.median(values) if values else float("nan")

    print(f"| ms after submit: median of all {len(rows)} | median of the slowest {len(slow)} | event |")
    print("|---|---|---|")
    for key in sorted(keys, key=lambda k: median(rows, k)):
        print(f"| {1000 * median(rows, key):.1f} | {1000 * median(slow, key):.1f} | {key} |")
    # Where each slow enrollment spent its longest wait: between which two consecutive marks.
    gaps: dict[str, list[float]] = {}
    for r in slow:
        ordered = sorted(r.items(), key=lambda kv: kv[1])
        (a, ta), (b, tb) = max(pairwise(ordered), key=lambda pair: pair[1][1] - pair[0][1])
        gaps.setdefault(f"{a} → {b}", []).append(tb - ta)
    print("\n| slowest enrollments whose longest gap was | n | median gap ms |\n|---|---|---|")
    for gap, values in sorted(gaps.items(), key=lambda kv: -len(kv[1])):
        print(f"| {gap} | {len(values)} | {1000 * statistics.median(values):.1f} |")


if __name__ == "__main__":
    asyncio.run(main())
