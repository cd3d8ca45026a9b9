"""Where a timer-driven send's lateness goes, from the workflow histories of a short timers run.

    .venv/bin/python -m bench.trace_timers [--enrollments 1500] [--rate 10] [--batch 100]

Admits ``--enrollments`` onto the ``bench.timers`` journey with 60–120 s waits, posting
``--batch`` events per POST, then prints the send-time error (as ``bench.timers`` measures
it) and, for the latest sends and a few around the median, the time from the timer firing
to each later history event and to the fake receiving the message. The worker's settings
come from the environment (``JOURNEYS_WORKER_WORKFLOW_TASKS``...), so runs can compare them.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
import uuid

from temporalio.client import Client

from bench.harness import BenchStack, header, percentile
from bench.timers import admit_paced, journey_yaml, send_errors


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--enrollments", type=int, default=1500)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    print(header("Timer trace", ["python", "-m", "bench.trace_timers", "--enrollments", str(args.enrollments),
                                 "--rate", f"{args.rate:g}", "--batch", str(args.batch)]))  # fmt: skip
    stack = BenchStack().start()
    run = uuid.uuid4().hex[:6]
    try:
        await stack.deploy(journey_yaml(60, 120, 30))
        async with stack.client(timeout=300) as api:
            await admit_paced(api, run, args.enrollments, batch=args.batch, rate=args.rate)
        deadline = time.monotonic() + 400
        messages: list[dict] = []
        while time.monotonic() < deadline:
            messages = [m for m in await stack.fake_messages() if (m["text"] or "").startswith(f"tm {run} ")]
            if len(messages) >= args.enrollments:
                break
            await asyncio.sleep(3)
        late = send_errors(messages)
        errors = [e for e, _, _ in late]
        print(f"sent {len(errors)}; send-time error p50 {percentile(errors, 50):.3f} s, p99 "
              f"{percentile(errors, 99):.3f} s, max {errors[-1]:.3f} s\n")  # fmt: skip
        db = sqlite3.connect(stack.data_dir / "journeys.db")
        client = await Client.connect(stack.temporal_address)
        for error, n, received in late[-5:] + late[len(late) // 2 : len(late) // 2 + 2]:
            (wid,) = db.execute("select workflow_id from enrollments where customer_id = ?",
                                (f"tm-{run}-c{n}",)).fetchone()  # fmt: skip
            fired = None
            print(f"enrollment {n}: error {error:.3f} s; seconds after the timer fired:")
            for ev in (await client.get_workflow_handle(wid).fetch_history()).events:
                at = ev.event_time.ToDatetime().timestamp()
                name = str(ev.WhichOneof("attributes")).removesuffix("_event_attributes")
                if name == "timer_fired":
                    fired = at
                if fired is not None:
                    print(f"  {at - fired:7.3f}  {name}")
            if fired is not None:
                print(f"  {received - fired:7.3f}  message at the fake")
    finally:
        stack.stop()


if __name__ == "__main__":
    asyncio.run(main())
