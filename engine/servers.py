"""Run ASGI apps inside an existing event loop (several servers, one process)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn

if TYPE_CHECKING:
    from engine.config import Settings


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner (the dev stack or a test)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningServer:
    """An ASGI app being served on host:port."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting requests and finish the running ones."""
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, timeout=10)


def api_server_config(app: Any, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    """The uvicorn configuration of ``journeys api``: the process's own log handler, the access log as set.

    Args:
        app: The API application.
        settings: Its ``journeys_api_access_log`` turns the per-request log line on or off.
        host: Interface to listen on.
        port: Port to listen on.
    """
    # log_config=None: records go through the process's structured, masking handler.
    return uvicorn.Config(app, host=host, port=port, log_config=None, access_log=settings.journeys_api_access_log)


async def serve(app: Any, *, host: str, port: int, log_level: str = "warning") -> RunningServer:
    """Start serving ``app``; returns once it accepts connections.

    Raises:
        RuntimeError: The server could not start (for example, the port is taken).
    """
    # log_config=None: records go through the process's structured, masking handler.
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on",
                            log_config=None)  # fmt: skip
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            exc = task.exception() if not task.cancelled() else None
            raise RuntimeError(f"could not serve on {host}:{port}: {exc or 'server exited'}")
        await asyncio.sleep(0.02)
    return RunningServer(server=server, task=task, host=host, port=port)
