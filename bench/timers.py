"""Parked enrollments: send-time error of ``wait`` timers and worker memory while they wait.

    .venv/bin/python -m bench.timers [--enrollments 20000] [--min-wait 60] [--max-wait 600]

Each enrollment enters a journey whose ``split`` sends it down one of several arms, each a
``wait`` of a different length between ``--min-wait`` and ``--max-wait`` (every
``--wait-step`` seconds; the hash-based arm assignment spreads customers over them) and then
a ``wecom.app`` send whose text carries the wait and ``journey.entered_at``. The send-time
error is (the fake receiving it) − (entered_at + wait): it includes admission, the timer,
the workflow task and the send activity. Worker RSS is sampled every few seconds together
with the number of parked enrollments (entered, not yet sent), read from SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
import uuid
from datetime import datetime
from typing import Any

import httpx

from bench.harness import BenchStack, header, percentile, rss_mib


def journey_yaml(min_wait: int, max_wait: int, step: int) -> str:
    arms = []
    for wait in range(min_wait, max_wait + 1, step):
        arms.append(f"""      - arm: w{wait}
        weight: 1
        steps:
          - wait: {wait}s
          - send: {{channel: wecom.app, to: "t{{{{ trigger.n }}}}",
                    text: "tm {{{{ trigger.run }}}} {{{{ trigger.n }}}} {wait} {{{{ journey.entered_at }}}}"}}""")
    return "journey: bench-timers\ntrigger: {event: bench.timer}\nsteps:\n  - split:\n" + "\n".join(arms) + "\n"


async def admit_paced(api: httpx.AsyncClient, run: str, enrollments: int, *, batch: int, rate: float) -> None:
    """Post ``enrollments`` ``bench.timer`` events, ``batch`` per POST, at ``rate`` events per second."""
    sem = asyncio.Semaphore(4)

    async def post(lo: int) -> None:
        events = [{"event_id": f"tm-{run}-{i}", "customer_id": f"tm-{run}-c{i}", "name": "bench.timer",
                   "properties": {"run": run, "n": i}} for i in range(lo, min(enrollments, lo + batch))]  # fmt: skip
        async with sem:
            (await api.post("/v1/events", json={"events": events})).raise_for_status()

    tasks = []
    for lo in range(0, enrollments, batch):
        tasks.append(asyncio.create_task(post(lo)))
        await asyncio.sleep(batch / rate)
    await asyncio.gather(*tasks)


def send_errors(messages: list[dict[str, Any]]) -> list[tuple[float, int, float]]:
    """(send-time error in s, enrollment number, time the fake received it) per message, latest error last.

    The error is (the fake receiving the message) − (``journey.entered_at`` + the wait), both
    carried in the message's text.
    """
    errors = []
    for m in messages:
        _, _, n, wait, entered_at = m["text"].split(" ", 4)
        errors.append((m["at"] - (datetime.fromisoformat(entered_at).timestamp() + int(wait)), int(n), m["at"]))
    return sorted(errors)


def counts(db: str) -> tuple[int, int]:
    """(enrollments entered, messages sent) of the bench journey."""
    with sqlite3.connect(db, timeout=30) as conn:
        entered = conn.execute("select count(*) from enrollments where journey_id = 'bench-timers'").fetchone()[0]
        sent = conn.execute("select count(*) from messages where journey_id = 'bench-timers' and status = 'sent'"
                            ).fetchone()[0]  # fmt: skip
    return int(entered), int(sent)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--enrollments", type=int, default=20000)
    parser.add_argument("--min-wait", type=int, default=60, help="seconds")
    parser.add_argument("--max-wait", type=int, default=600, help="seconds")
    parser.add_argument("--wait-step", type=int, default=30, help="seconds between arms' waits")
    parser.add_argument(
        "--rate",
        type=float,
        default=25.0,
        help="events posted per second; above what the worker admits, the backlog delays every timer",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=10,
        help="events per POST (every batch/rate seconds); large batches are bursts of admissions that timers "
        "falling due meanwhile wait behind",
    )
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    args = parser.parse_args()
    print(header("Timers", ["python", "-m", "bench.timers", "--enrollments", str(args.enrollments), "--min-wait",
                            str(args.min_wait), "--max-wait", str(args.max_wait), "--wait-step",
                            str(args.wait_step), "--rate", f"{args.rate:g}", "--batch", str(args.batch)]))  # fmt: skip
    stack = BenchStack().start()
    db = str(stack.data_dir / "journeys.db")
    samples: list[tuple[float, int, int, float]] = []  # (t, entered, sent, rss MiB)
    run = uuid.uuid4().hex[:6]
    try:
        await stack.deploy(journey_yaml(args.min_wait, args.max_wait, args.wait_step))
        t0 = time.monotonic()
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                entered, sent = await asyncio.to_thread(counts, db)
                samples.append((time.monotonic() - t0, entered, sent, rss_mib(stack.worker.pid)))
                if sent >= args.enrollments:
                    done.set()
                    return
                with_timeout = asyncio.create_task(done.wait())
                await asyncio.wait([with_timeout], timeout=args.sample_every)
                with_timeout.cancel()

        sampler = asyncio.create_task(sample())
        async with stack.client(timeout=300) as api:
            await admit_paced(api, run, args.enrollments, batch=args.batch, rate=args.rate)
        ingest_s = time.monotonic() - t0
        print(f"all {args.enrollments} events accepted after {ingest_s:.0f} s")
        await asyncio.wait_for(done.wait(), timeout=args.max_wait + 1800)
        await sampler
        messages = [m for m in await stack.fake_messages() if (m["text"] or "").startswith(f"tm {run} ")]
    finally:
        stack.stop()
    errors = [error for error, _, _ in send_errors(messages)]
    parked = [(t, e - s, rss) for t, e, s, rss in samples]
    peak = max(p for _, p, _ in parked)
    at_5k = next(((t, p, r) for t, p, r in parked if p >= 5000), None)
    at_peak = max(parked, key=lambda x: x[1])
    rss_all = [r for _, _, r in parked]
    print(f"\nsent {len(messages)} of {args.enrollments}; ingest {ingest_s:.0f} s; run {samples[-1][0]:.0f} s\n")
    print("| send-time error (actual − due) | p50 | p95 | p99 | max | min |\n|---|---|---|---|---|---|")
    print(f"| seconds | {percentile(errors, 50):.3f} | {percentile(errors, 95):.3f} | {percentile(errors, 99):.3f} "
          f"| {max(errors):.3f} | {min(errors):.3f} |")  # fmt: skip
    print(f"\nworker RSS: min {min(rss_all):.0f} MiB, max {max(rss_all):.0f} MiB; peak parked {peak}")
    if at_5k:
        print(f"- first sample with ≥ 5,000 parked: t={at_5k[0]:.0f}s parked={at_5k[1]} RSS={at_5k[2]:.0f} MiB")
    print(f"- sample with most parked: t={at_peak[0]:.0f}s parked={at_peak[1]} RSS={at_peak[2]:.0f} MiB")
    if at_5k:
        print(f"- RSS change from 5,000 to {at_peak[1]} parked: {100 * (at_peak[2] / at_5k[2] - 1):+.1f}%")
    print("\n<details><summary>samples (t s, parked, RSS MiB)</summary>\n")
    step = max(1, len(parked) // 40)
    print(", ".join(f"({t:.0f}, {p}, {r:.0f})" for t, p, r in parked[::step]))
    print("\n</details>")


if __name__ == "__main__":
    asyncio.run(main())
