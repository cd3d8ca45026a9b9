"""`JOURNEYS_API_ACCESS_LOG`: the API's per-request log line, on by default, off when set."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from engine.config import Settings
from engine.embedded import free_port
from engine.servers import api_server_config

ACCESS = logging.getLogger("uvicorn.access")


@pytest.fixture
def access_logger_restored() -> Iterator[None]:
    # uvicorn turns the access logger off process-wide when told to; later tests must not inherit it.
    # Earlier servers of the same process (embedded ones run with the access log off) may
    # have turned it off already: start from a plain logger.
    saved = list(ACCESS.handlers), ACCESS.propagate, ACCESS.level, ACCESS.disabled
    ACCESS.handlers, ACCESS.propagate, ACCESS.level, ACCESS.disabled = [], True, logging.NOTSET, False
    yield
    ACCESS.handlers, ACCESS.propagate, ACCESS.level, ACCESS.disabled = saved


async def requests_logged(settings: Settings, caplog: pytest.LogCaptureFixture) -> int:
    app = FastAPI()
    app.get("/ping")(lambda: {"ok": True})
    port = free_port()
    server = uvicorn.Server(api_server_config(app, settings, host="127.0.0.1", port=port))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    caplog.clear()
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{port}/ping")).status_code == 200
    server.should_exit = True
    await task
    return sum(1 for r in caplog.records if r.name == "uvicorn.access" and "/ping" in r.getMessage())


async def test_the_access_log_is_on_by_default_and_can_be_turned_off(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, access_logger_restored: None
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.delenv("JOURNEYS_API_ACCESS_LOG", raising=False)
    assert await requests_logged(Settings(), caplog) == 1
    monkeypatch.setenv("JOURNEYS_API_ACCESS_LOG", "false")
    assert await requests_logged(Settings(), caplog) == 0
