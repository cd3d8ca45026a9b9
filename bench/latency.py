"""Event-accepted → message-at-fake latency, Journeys against a bare Temporal workflow.

    .venv/bin/python -m bench.latency [--rates 10,50] [--duration 60]

Both run on the same dev server in the same run: Journeys as API + worker processes
(SQLite, Redis, the fake WeCom), or with ``--one-process`` as one ``journeys up`` process
holding both (its CPU is then reported as ``api``), the baseline as a client starting a hand-written
workflow whose one activity makes the same ``add_msg_template`` call. Events are sent
open-loop at a steady rate (one task per event at its scheduled instant), so a slow
answer does not hold back the next event.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import httpx
from temporalio.client import Client

from bench.bare_workflow import BareMessage, BareRequest, BareSend
from bench.harness import BenchStack, header, open_loop, summary_ms, timeline_ms

JOURNEY = """
journey: bench-latency
trigger: {event: bench.latency}
steps:
  - send: {channel: wecom.customer, sender: zhangsan, text: "lat {{ trigger.run }} {{ trigger.n }}"}
"""
#: The same journey on the application-message channel (no confirmation tracker workflow).
APP_JOURNEY = """
journey: bench-latency
trigger: {event: bench.latency}
steps:
  - send: {channel: wecom.app, to: "staff{{ trigger.n }}", text: "lat {{ trigger.run }} {{ trigger.n }}"}
"""


async def wait_for_texts(stack: BenchStack, prefix: str, count: int, timeout: float = 180) -> dict[str, float]:
    """text -> time the fake received it, once ``count`` messages starting with ``prefix`` arrived.

    Asks only for the messages received since the last look: listing every message on every
    poll cost the fake more CPU per event than it spends receiving them, in both paths' windows.
    """
    deadline = time.monotonic() + timeout
    seen: dict[str, float] = {}
    since = 0
    while time.monotonic() < deadline:
        messages, since = await stack.fake_messages_since(since)
        seen.update({m["text"]: m["at"] for m in messages if (m["text"] or "").startswith(prefix)})
        if len(seen) >= count:
            break
        await asyncio.sleep(1.0)
    return seen


def latencies(received: dict[str, float], prefix: str, owed: list[int], submitted: dict[int, float],
              answered: dict[int, float]) -> dict[str, Any]:  # fmt: skip
    """One path's figures from when its messages reached the fake.

    Args:
        received: Message text -> when the fake received it.
        prefix: The text of event ``i``'s message is ``prefix`` + ``i``.
        owed: The events owed a message.
        submitted: Event -> when it was submitted.
        answered: Event -> when the submit was answered (the 202, or ``start_workflow`` returning).

    Returns:
        Latency percentiles from submit and from the answer, the timeline, the answer's own
        percentiles, and how many owed messages never arrived.
    """
    arrived = {i: received[f"{prefix}{i}"] for i in owed if f"{prefix}{i}" in received}
    over_time = [(submitted[i], at - submitted[i]) for i, at in arrived.items()]
    return {"from_submit": summary_ms([lat for _, lat in over_time]),
            "from_202": summary_ms([at - answered[i] for i, at in arrived.items()]),
            "timeline": timeline_ms(over_time),
            "api_ms": summary_ms([answered[i] - submitted[i] for i in submitted]),
            "lost": len(owed) - len(arrived)}  # fmt: skip


async def run_ours(stack: BenchStack, rate: float, duration: float, customers: list[str]) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    submitted: dict[int, float] = {}
    accepted: dict[int, float] = {}
    refused: set[int] = set()
    why: Counter[str] = Counter()  # what each refused event got instead of a 202
    async with stack.client() as api:

        async def fire(i: int) -> None:
            body = {"event_id": f"lat-{run}-{i}", "customer_id": customers[i], "name": "bench.latency",
                    "properties": {"run": run, "n": i}}  # fmt: skip
            submitted[i] = time.time()
            try:
                resp = await api.post("/v1/events", json=body)
            except httpx.HTTPError as exc:
                resp = None  # an open-loop run that fell behind: count it, keep measuring
                why[type(exc).__name__] += 1
            accepted[i] = time.time()
            if resp is None or resp.status_code != 202:
                refused.add(i)
                if resp is not None:
                    why[f"HTTP {resp.status_code}"] += 1

        await open_loop(rate, duration, fire)
    # Only events answered 202 are owed a message; the others are reported as HTTP errors.
    owed = [i for i in submitted if i not in refused]
    received = await wait_for_texts(stack, f"lat {run} ", len(owed))
    return {**latencies(received, f"lat {run} ", owed, submitted, accepted),
            "errors": len(refused), "owed": len(owed), "why": dict(why)}  # fmt: skip


async def run_bare(stack: BenchStack, client: Client, rate: float, duration: float, queue: str,
                   channel: str = "wecom.customer", *, local: bool = False) -> dict[str, Any]:  # fmt: skip
    run = uuid.uuid4().hex[:6]
    submitted: dict[int, float] = {}
    started: dict[int, float] = {}

    async def fire(i: int) -> None:
        submitted[i] = time.time()
        await client.start_workflow(
            BareSend.run, BareRequest([BareMessage(channel, f"wm-bare-{i}", f"bare {run} {i}")], local=local),
            id=f"bare-{run}-{i}", task_queue=queue,
        )  # fmt: skip
        started[i] = time.time()

    await open_loop(rate, duration, fire)
    received = await wait_for_texts(stack, f"bare {run} ", len(submitted))
    return {**latencies(received, f"bare {run} ", list(submitted), submitted, started), "errors": 0}


async def put_customers(stack: BenchStack, ids: list[str]) -> None:
    sem = asyncio.Semaphore(16)
    async with stack.client() as api:

        async def put(cid: str) -> None:
            async with sem:
                (await api.put(f"/v1/customers/{cid}", json={"external_userid": f"wm-{cid}"})).raise_for_status()

        await asyncio.gather(*(put(c) for c in ids))


def row(name: str, r: dict[str, Any], key: str = "from_submit") -> str:
    s = r[key]
    return (f"| {name} | {int(s['n'])} | {s['p50']:.0f} | {s['p95']:.0f} | {s['p99']:.0f} | {s['max']:.0f} "
            f"| {r['lost']} |")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", default="10,50", help="events per second, comma-separated")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per rate")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured events per path first")
    parser.add_argument(
        "--channel",
        choices=("wecom.customer", "wecom.app"),
        default="wecom.customer",
        help="the first step's channel (wecom.customer also starts a confirmation tracker)",
    )
    parser.add_argument("--bare-unsandboxed", action="store_true",
                        help="run the baseline workflow outside the SDK's sandbox too")  # fmt: skip
    parser.add_argument("--bare-local", action="store_true",
                        help="the baseline sends with a local activity as journeys do (not the issue's)")  # fmt: skip
    parser.add_argument("--one-process", action="store_true",
                        help="run our API and worker in one `journeys up` process (CPU reported as api)")  # fmt: skip
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    print(header("Latency", ["python", "-m", "bench.latency", "--rates", args.rates, "--duration",
                             f"{args.duration:g}", "--channel", args.channel,
                             *(["--bare-unsandboxed"] if args.bare_unsandboxed else []),
                             *(["--bare-local"] if args.bare_local else []),
                             *(["--one-process"] if args.one_process else [])]))  # fmt: skip
    stack = BenchStack(one_process=args.one_process).start()
    try:
        stack.start_bare_worker("bare", unsandboxed=args.bare_unsandboxed)
        await stack.fake_config(auto_confirm=True)
        await stack.deploy(JOURNEY if args.channel == "wecom.customer" else APP_JOURNEY)
        needed = args.warmup + int(sum(rates) * args.duration)
        customers = [f"c{i}" for i in range(needed)]
        await put_customers(stack, customers)
        client = await Client.connect(stack.temporal_address)
        messages = (await run_ours(stack, args.warmup / 5, 5, customers[: args.warmup]))["owed"]
        await asyncio.to_thread(stack.settle_confirmations, messages)
        await run_bare(stack, client, args.warmup / 5, 5, "bare", args.channel, local=args.bare_local)
        offset = args.warmup
        results = []
        for rate in rates:
            count = int(rate * args.duration)
            cpu0 = stack.cpu()
            ours = await run_ours(stack, rate, args.duration, customers[offset : offset + count])
            # The sweep's checks of these tasks (WeCom, SQL, events) are ours: in our window,
            # not in the baseline's that follows.
            messages += ours["owed"]
            ours["settled"] = await asyncio.to_thread(stack.settle_confirmations, messages)
            cpu1 = stack.cpu()
            offset += count
            bare = await run_bare(stack, client, rate, args.duration, "bare", args.channel, local=args.bare_local)
            cpu2 = stack.cpu()
            ours["cpu"] = {k: 1000 * (cpu1[k] - cpu0.get(k, 0)) / count for k in cpu1}
            bare["cpu"] = {k: 1000 * (cpu2[k] - cpu1.get(k, 0)) / count for k in cpu2}
            results.append((rate, ours, bare))
        print("Latency from the moment the event is submitted (POST sent / start_workflow called) to the")
        print("fake WeCom receiving the add_msg_template call, in ms:\n")
        print("| path | n | p50 | p95 | p99 | max | not arrived within 180 s |\n|---|---|---|---|---|---|---|")
        for rate, ours, bare in results:
            print(row(f"Journeys @ {rate:g}/s", ours))
            print(row(f"bare Temporal @ {rate:g}/s", bare))
        print("\nFrom the 202 (Journeys) / start_workflow returning (bare), in ms:\n")
        print("| path | n | p50 | p95 | p99 | max | not arrived within 180 s |\n|---|---|---|---|---|---|---|")
        for rate, ours, bare in results:
            print(row(f"Journeys @ {rate:g}/s", ours, "from_202"))
            print(row(f"bare Temporal @ {rate:g}/s", bare, "from_202"))
        print("\nRatios (Journeys / bare, from submit):\n")
        for rate, ours, bare in results:
            o, b = ours["from_submit"], bare["from_submit"]
            print(f"- {rate:g}/s: p50 {o['p50'] / b['p50']:.2f}x, p95 {o['p95'] / b['p95']:.2f}x, "
                  f"p99 {o['p99'] / b['p99']:.2f}x; API answer p50 {ours['api_ms']['p50']:.0f} ms "
                  f"(start_workflow p50 {bare['api_ms']['p50']:.0f} ms); HTTP errors {ours['errors']}"
                  + (f" {ours['why']}" if ours["why"] else "")
                  + ("" if ours["settled"] else "; some tasks were undecided when the baseline began"))  # fmt: skip
            print(f"  CPU ms per event, Journeys: { {k: round(v, 1) for k, v in ours['cpu'].items()} }; "
                  f"bare: { {k: round(v, 1) for k, v in bare['cpu'].items()} }")  # fmt: skip
        print("\nOver the run, from submit, p50/max in ms per 10 s of submit time (a path that fell behind")
        print("for a while and caught up, or fell behind steadily):\n")
        for rate, ours, bare in results:
            for name, r in (("Journeys", ours), ("bare", bare)):
                cells = ", ".join(f"{start:.0f}s {p50:.0f}/{top:.0f}" for start, p50, top in r["timeline"])
                print(f"- {name} @ {rate:g}/s: {cells}")
        print(f"\nload average at end: {open('/proc/loadavg').read().split()[:3]}")
    finally:
        stack.stop()


if __name__ == "__main__":
    asyncio.run(main())
