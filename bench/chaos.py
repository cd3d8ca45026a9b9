"""Delivery under chaos: worker SIGKILLs, a Temporal restart, a Redis restart, 20% WeCom faults.

    .venv/bin/python -m bench.chaos [--enrollments 500] [--rate 10] [--worker-kills 5]

Each enrollment sends twice (a ``wecom.customer`` mass send, then after ``wait: 1s`` a
``wecom.app`` message). Afterwards every message must have reached the fake exactly once
(counted per enrollment and step), no message-log row may say ``sent`` for a message the
fake does not have, and every event answered 202 must have produced its enrollment.
``tests/e2e/test_chaos.py`` runs a short version of the same scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.harness import BenchStack, header
from engine.config import Settings
from engine.dispatch import Dispatcher
from engine.runtime import Runtime


@dataclass
class ChaosPlan:
    """What to break, how often, and how big the run is."""

    enrollments: int = 500
    rate: float = 10.0
    worker_kills: int = 5
    temporal_restarts: int = 1
    redis_restarts: int = 1
    fault_rate: float = 0.2
    seed: int = 20261122
    settle_timeout: float = 600.0
    #: How often the driver routes events whose routing was interrupted (the API's own
    #: maintenance loop does the same every 30 s; a second "replica" keeps runs short).
    recover_every_s: float = 3.0


@dataclass
class ChaosReport:
    """What happened and what was checked."""

    accepted: int = 0
    post_retries: int = 0
    timeline: list[str] = field(default_factory=list)
    lost_events: list[int] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)
    duplicate_tasks: dict[str, int] = field(default_factory=dict)
    false_sent: list[str] = field(default_factory=list)
    not_sent: list[str] = field(default_factory=list)
    faults: dict[int, int] = field(default_factory=dict)
    reconciled: int = 0
    wecom_suppressed_duplicates: int = 0
    duration_s: float = 0.0
    settle_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.lost_events or self.missing or self.duplicated or self.duplicate_tasks or self.false_sent
                    or self.not_sent)  # fmt: skip

    def markdown(self) -> str:
        lines = [
            f"- events answered 202: {self.accepted} (re-posted after an error or timeout: {self.post_retries})",
            f"- lost (202 but no enrollment or message): {len(self.lost_events)} {self.lost_events[:10]}",
            f"- messages missing at the fake: {len(self.missing)} {self.missing[:10]}",
            f"- delivered more than once (enrollment, step): {len(self.duplicated)} "
            f"{dict(list(self.duplicated.items())[:10])}",
            f"- mass-send tasks created more than once: {len(self.duplicate_tasks)} "
            f"{dict(list(self.duplicate_tasks.items())[:10])}",
            f"- logged `sent` but not at the fake: {len(self.false_sent)} {self.false_sent[:10]}",
            f"- log rows not `sent` at the end: {len(self.not_sent)} {self.not_sent[:10]}",
            f"- WeCom faults injected: {self.faults}",
            f"- interrupted mass sends adopted on retry (reconciled): {self.reconciled}; app-message retries "
            f"suppressed by WeCom's duplicate check: {self.wecom_suppressed_duplicates}",
            f"- run {self.duration_s:.0f} s, of which settling after the last fault {self.settle_s:.0f} s",
            "- timeline: " + "; ".join(self.timeline),
        ]  # fmt: skip
        return "\n".join(lines)


def journey_yaml(run: str) -> str:
    retry = "{max_attempts: 100, initial: 1s, backoff: 1.5, max_interval: 3s}"
    return f"""
journey: chaos-{run}
trigger: {{event: chaos.go}}
steps:
  - send: {{channel: wecom.customer, sender: zhangsan, text: "chaos {run} {{{{ trigger.n }}}} s1"}}
    timeout: 10s
    retry: {retry}
  - wait: 1s
  - send: {{channel: wecom.app, to: "staff{{{{ trigger.n }}}}", text: "chaos {run} {{{{ trigger.n }}}} s2"}}
    timeout: 10s
    retry: {retry}
"""


async def run_chaos(plan: ChaosPlan, data_dir: Path | None = None, *, log: Any = print) -> ChaosReport:
    """Run the scenario on a fresh stack and check the outcome."""
    rnd = random.Random(plan.seed)
    run = uuid.uuid4().hex[:6]
    report = ChaosReport()
    t0 = time.monotonic()

    def note(what: str) -> None:
        report.timeline.append(f"{time.monotonic() - t0:.0f}s {what}")
        log(f"[chaos +{time.monotonic() - t0:5.1f}s] {what}")

    # Short WeCom timeout so late answers (fault 0) make the client give up after WeCom acted.
    stack = BenchStack(data_dir, env={"WECOM_TIMEOUT_S": "1", "WECOM_CONFIRM_POLL_S": "1"})
    rt: Runtime | None = None
    try:
        await asyncio.to_thread(stack.start)
        note("stack up")
        await stack.fake_config(auto_confirm=True, timeout_s=2.0)
        jid = await stack.deploy(journey_yaml(run))
        customers = [f"{run}-c{n}" for n in range(plan.enrollments)]
        async with stack.client() as api:
            sem = asyncio.Semaphore(16)

            async def put(cid: str) -> None:
                async with sem:
                    (await api.put(f"/v1/customers/{cid}", json={"external_userid": f"wm-{cid}"})).raise_for_status()

            await asyncio.gather(*(put(c) for c in customers))
        settings = Settings(database_url=stack.env["DATABASE_URL"], redis_url=stack.env["REDIS_URL"],
                            temporal_address=stack.temporal_address, temporal_task_queue=stack.task_queue,
                            wecom_base_url=stack.fake_url)  # fmt: skip
        rt = await Runtime.open(settings)
        dispatcher = Dispatcher(rt.store, rt.redis, rt.temporal, task_queue=stack.task_queue)
        await stack.fake_config(fail_rate=plan.fault_rate, fail_errcodes=[-1, 45009, 42001, 0])
        note(f"{plan.fault_rate:.0%} WeCom faults on")

        accepted: set[int] = set()
        span = plan.enrollments / plan.rate

        async def post_all() -> None:
            async with stack.client(timeout=15) as api:

                async def post(n: int) -> None:
                    body = {"event_id": f"{run}-e{n}", "customer_id": customers[n], "name": "chaos.go",
                            "properties": {"n": n}}  # fmt: skip
                    while True:
                        with contextlib.suppress(Exception):
                            if (await api.post("/v1/events", json=body)).status_code == 202:
                                accepted.add(n)
                                return
                        report.post_retries += 1
                        await asyncio.sleep(0.5)

                tasks = []
                for n in range(plan.enrollments):
                    tasks.append(asyncio.create_task(post(n)))
                    await asyncio.sleep(1 / plan.rate)
                await asyncio.gather(*tasks)

        async def break_things() -> None:
            actions = (["worker"] * plan.worker_kills + ["temporal"] * plan.temporal_restarts
                       + ["redis"] * plan.redis_restarts)  # fmt: skip
            times = sorted(rnd.uniform(0.5, span + 5) for _ in actions)
            rnd.shuffle(actions)
            start = time.monotonic()
            for at, action in zip(times, actions, strict=True):
                await asyncio.sleep(max(0.0, start + at - time.monotonic()))
                if action == "worker":
                    await asyncio.to_thread(stack.restart_worker, kill=True)
                    note("worker SIGKILLed and restarted")
                elif action == "temporal":
                    await asyncio.to_thread(stack.restart_temporal)
                    note("Temporal dev server restarted")
                else:
                    await asyncio.to_thread(stack.restart_redis)
                    note("Redis restarted")

        async def recover_loop() -> None:
            while True:
                await asyncio.sleep(plan.recover_every_s)
                with contextlib.suppress(Exception):
                    await dispatcher.recover(older_than=timedelta(seconds=2))

        recovering = asyncio.create_task(recover_loop())
        await asyncio.gather(post_all(), break_things())
        report.accepted = len(accepted)
        note(f"all events answered 202 ({report.post_retries} re-posts); chaos over")
        settle_from = time.monotonic()

        s1 = {n: f"chaos {run} {n} s1" for n in range(plan.enrollments)}
        s2 = {n: f"chaos {run} {n} s2" for n in range(plan.enrollments)}
        wanted = set(s1.values()) | set(s2.values())

        async def snapshot() -> tuple[list[dict[str, Any]], list[Any]]:
            messages = [m for m in await stack.fake_messages() if (m["text"] or "") in wanted]
            rows = await asyncio.to_thread(rt.store.list_messages, journey_id=jid, limit=10 * plan.enrollments)
            return messages, rows

        deadline = time.monotonic() + plan.settle_timeout
        while True:
            messages, rows = await snapshot()
            delivered = {m["text"] for m in messages if m["delivered"]}
            if len(delivered) == len(wanted) and len(rows) == len(wanted) and all(r.status == "sent" for r in rows):
                break
            if time.monotonic() > deadline:
                note("settle timeout")
                break
            await asyncio.sleep(1.0)
        recovering.cancel()
        report.settle_s = time.monotonic() - settle_from
        note("settled")

        delivered_count = Counter(m["text"] for m in messages if m["delivered"])
        tasks = Counter(m["text"] for m in messages if m["api"] == "externalcontact/add_msg_template")
        report.missing = sorted(wanted - set(delivered_count))
        report.duplicated = {t: c for t, c in delivered_count.items() if c > 1}
        report.duplicate_tasks = {t: c for t, c in tasks.items() if c > 1}
        report.wecom_suppressed_duplicates = sum(1 for m in messages if m.get("duplicate_of"))
        fake_delivered = {m["msgid"] for m in messages if m["delivered"]}
        report.false_sent = [
            r.idempotency_key
            for r in rows
            if r.status == "sent" and (r.response or {}).get("msgid") not in fake_delivered
        ]
        report.not_sent = [f"{r.idempotency_key}={r.status}" for r in rows if r.status != "sent"]
        report.reconciled = sum(1 for r in rows if (r.response or {}).get("reconciled"))
        enrolled = {e.customer_id for e in await asyncio.to_thread(rt.store.list_enrollments, journey_id=jid,
                                                                    limit=10 * plan.enrollments)}  # fmt: skip
        report.lost_events = sorted(n for n in accepted
                                    if customers[n] not in enrolled or s1[n] not in delivered_count
                                    or s2[n] not in delivered_count)  # fmt: skip
        await stack.fake_config(fail_rate=0.0)
        report.faults = dict(Counter((await stack.fake_state())["faults_injected"]))
    finally:
        if rt is not None:
            with contextlib.suppress(Exception):
                await rt.close()
        await asyncio.to_thread(stack.stop)
    report.duration_s = time.monotonic() - t0
    return report


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    defaults = ChaosPlan()
    parser.add_argument("--enrollments", type=int, default=defaults.enrollments)
    parser.add_argument("--rate", type=float, default=defaults.rate)
    parser.add_argument("--worker-kills", type=int, default=defaults.worker_kills)
    parser.add_argument("--temporal-restarts", type=int, default=defaults.temporal_restarts)
    parser.add_argument("--redis-restarts", type=int, default=defaults.redis_restarts)
    parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args()
    plan = ChaosPlan(enrollments=args.enrollments, rate=args.rate, worker_kills=args.worker_kills,
                     temporal_restarts=args.temporal_restarts, redis_restarts=args.redis_restarts,
                     fault_rate=args.fault_rate, seed=args.seed)  # fmt: skip
    # Every setting, the seed too: the report alone must be enough to run the same chaos again.
    print(header("Chaos", ["python", "-m", "bench.chaos", "--enrollments", str(plan.enrollments), "--rate",
                           f"{plan.rate:g}", "--worker-kills", str(plan.worker_kills), "--temporal-restarts",
                           str(plan.temporal_restarts), "--redis-restarts", str(plan.redis_restarts),
                           "--fault-rate", f"{plan.fault_rate:g}", "--seed", str(plan.seed)]))  # fmt: skip
    report = await run_chaos(plan)
    print(report.markdown())
    print(f"\nresult: {'PASS' if report.ok else 'FAIL'}")


if __name__ == "__main__":
    asyncio.run(main())
