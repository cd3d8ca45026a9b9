"""The confirmation sweep's cost per decided task, without Temporal.

    .venv/bin/python -m bench.sweep [--tasks 2000] [--runs 3]

``wecom.customer`` sends leave tasks that the sweep (``activities/confirmations.py``) asks
WeCom about until staff confirm them; at tens of sends a second that is a share of a busy
worker. This runs the sweep activity in this process on SQLite and Redis, against the fake
WeCom in its own process (staff confirm at once), and measures this process's CPU and the
wall time per decided task, the engine events (``message.sent``) included. The latency
bench cannot show a change of a millisecond here: its runs move by more than that.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from pathlib import Path

import httpx
from redis.asyncio import Redis

from activities.confirmations import ConfirmationActivities
from activities.wecom import WeComClient
from activities.wecom.client import WeComCredentials
from bench.harness import BenchStack, header
from engine.config import FAKE_AGENT_ID, FAKE_APP_SECRET, FAKE_CONTACT_SECRET, FAKE_CORP_ID
from engine.db import make_engine
from engine.dispatch import Dispatcher
from engine.emitter import EngineEvents
from engine.models import MessageRow
from engine.store import Store, utcnow


async def waiting_tasks(store: Store, wecom: WeComClient, count: int, run: str) -> None:
    """Create ``count`` tasks at the fake and log them waiting for confirmation, as sends do."""
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        key = f"{run}-{i}:hello:1"
        async with sem:
            body = await wecom.add_msg_template({"external_userid": [f"wm-{run}-{i}"], "sender": "zhangsan",
                                                 "text": {"content": f"sweep {run} {i}"}})  # fmt: skip
        row = MessageRow(idempotency_key=key, enrollment_id=f"{run}-{i}", journey_id="bench-sweep", version=1,
                         step_id="hello", visit=1, customer_id=f"{run}-{i}", channel="wecom.customer",
                         recipients=[f"wm-{run}-{i}"], content={}, status="sending", at=utcnow(),
                         created_at=utcnow(), sender="zhangsan")  # fmt: skip
        await store.offload(store.begin_send, row)
        await store.offload(store.finish_send, key, status="pending_confirmation", reason=None, response=body)

    await asyncio.gather(*(one(i) for i in range(count)))


async def measure(stack: BenchStack, data_dir: Path, tasks: int) -> dict[str, float]:
    """Sweep ``tasks`` confirmed tasks to their outcome; CPU and wall ms per task."""
    store = Store(make_engine(f"sqlite:///{data_dir / f'sweep-{uuid.uuid4().hex[:6]}.db'}"))
    redis = Redis.from_url(f"redis://127.0.0.1:{stack.redis_port}/0")
    async with httpx.AsyncClient(timeout=30) as http:
        creds = WeComCredentials(base_url=stack.fake_url, corp_id=FAKE_CORP_ID, agent_id=FAKE_AGENT_ID,
                                 app_secret=FAKE_APP_SECRET, contact_secret=FAKE_CONTACT_SECRET)  # fmt: skip
        wecom = WeComClient(http, redis, creds, rate_limits=False)
        await waiting_tasks(store, wecom, tasks, uuid.uuid4().hex[:6])
        # Nothing listens to message.sent here, so the dispatcher never needs Temporal.
        events = EngineEvents(Dispatcher(store, redis, None, task_queue="bench"))  # type: ignore[arg-type]
        sweep = ConfirmationActivities(store, wecom, events, first_poll_s=60)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        decided = 0
        while decided < tasks:
            result = await sweep.sweep()
            decided += result.decided
            if result.checked == 0:
                raise RuntimeError(f"nothing due with {tasks - decided} tasks undecided")
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await redis.aclose()
    store.close()
    return {"cpu_ms": 1000 * cpu / tasks, "wall_ms": 1000 * wall / tasks}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(header("Confirmation sweep", ["python", "-m", "bench.sweep", "--tasks", str(args.tasks),
                                        "--runs", str(args.runs)]))  # fmt: skip
    stack = BenchStack()
    stack.redis.start(ready_timeout=20)
    stack.fake.start()
    try:
        await stack.fake_config(auto_confirm=True)
        runs = [await measure(stack, stack.data_dir, args.tasks) for _ in range(args.runs)]
    finally:
        stack.fake.stop()
        stack.redis.stop()
    print("| run | tasks | sweep CPU ms per task | wall ms per task |\n|---|---|---|---|")
    for i, r in enumerate(runs, 1):
        print(f"| {i} | {args.tasks} | {r['cpu_ms']:.2f} | {r['wall_ms']:.2f} |")
    cpu = statistics.median(r["cpu_ms"] for r in runs)
    wall = statistics.median(r["wall_ms"] for r in runs)
    print(f"\nmedian: {cpu:.2f} ms of this process's CPU and {wall:.2f} ms wall per decided task")


if __name__ == "__main__":
    asyncio.run(main())
