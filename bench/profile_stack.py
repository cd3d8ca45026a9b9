"""Profile the API and worker under steady event load with py-spy (collapsed stacks).

    .venv/bin/python -m bench.profile_stack [--rate 20] [--duration 30] [--journey latency|throughput]
        [--sample-rate 50] [--native]

Needs ``py-spy`` (``pip install py-spy``; not a project dependency). Prints, per process,
the functions of ours with the most samples (inclusive) and the leaf functions with the
most samples (exclusive), and leaves the raw files in the data dir.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from bench.harness import BenchStack, open_loop
from bench.latency import JOURNEY as LATENCY_JOURNEY
from bench.latency import put_customers
from bench.throughput import JOURNEY as THROUGHPUT_JOURNEY

OURS = ("engine/", "activities/", "workflows/", "rules/", "api/")


def report(path: Path, top: int = 25) -> str:
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        leaf[frames[-1]] += n
        for frame in set(frames):
            if any(part in frame for part in OURS):
                inclusive[frame] += n
    out = [f"### {path.name}: {total} samples", "", "inclusive (ours):"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    out += ["", "leaf (all):"] + [f"  {n / total:6.1%}  {f}" for f, n in leaf.most_common(top)]
    return "\n".join(out)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--journey", choices=("latency", "throughput"), default="latency")
    parser.add_argument("--sample-rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--native", action="store_true",
                        help="include native (C, Rust) frames; pauses the processes for each sample")  # fmt: skip
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(__file__).resolve().parents[1] / ".venv/bin/py-spy")
    stack = BenchStack().start()
    try:
        await stack.fake_config(auto_confirm=True)
        await stack.deploy(LATENCY_JOURNEY if args.journey == "latency" else THROUGHPUT_JOURNEY)
        total = int(args.rate * args.duration) + 20
        customers = [f"c{i}" for i in range(total)]
        await put_customers(stack, customers)
        recs = {name: stack.data_dir / f"{name}.collapsed" for name in ("worker", "api")}
        spies = [subprocess.Popen([spy, "record", "-p", str(proc.pid), "-d", str(int(args.duration)),
                                   "-r", str(args.sample_rate), "-f", "raw", "-o", str(recs[name]),
                                   # Native unwinding must pause the process for each sample.
                                   *(["--native"] if args.native else ["--nonblocking"])],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for name, proc in (("worker", stack.worker), ("api", stack.api))]  # fmt: skip
        async with stack.client() as api:

            async def fire(i: int) -> None:
                await api.post("/v1/events", json={"event_id": f"p-{i}", "customer_id": customers[i],
                                                   "name": "bench.latency" if args.journey == "latency" else
                                                   "bench.throughput", "properties": {"run": "p", "n": i}})  # fmt: skip

            await open_loop(args.rate, args.duration, fire)
        for spy_proc in spies:
            spy_proc.wait(timeout=120)
        for path in recs.values():
            if path.exists():
                print(report(path))
        print(f"raw stacks in {stack.data_dir}")
    finally:
        stack.stop()


if __name__ == "__main__":
    asyncio.run(main())
