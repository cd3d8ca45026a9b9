"""The processes' Redis client under bursts: callers beyond the pool wait, they do not fail."""

from __future__ import annotations

import asyncio
import uuid

from engine.config import Settings
from engine.embedded import ChildProcess
from engine.runtime import connect_redis


async def test_a_burst_larger_than_the_pool_waits_for_connections(redis_server: ChildProcess) -> None:
    # redis-py's default pool raises MaxConnectionsError past 100 connections in use; routing
    # under load then failed. 150 callers each hold a connection for a blocking pop.
    name = f"pool-{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    redis = connect_redis(Settings(redis_url=f"{url}?client_name={name}", journeys_redis_connections=64))
    observer = connect_redis(Settings(redis_url=url))
    try:
        key = f"empty-{uuid.uuid4().hex}"
        results = await asyncio.gather(*(redis.blpop([key], timeout=0.1) for _ in range(150)))
        assert results == [None] * 150
        # The pool keeps its connections open: the server lists what it opened, by name.
        opened = [c for c in await observer.client_list() if c.get("name") == name]
        assert 0 < len(opened) <= 64
    finally:
        await redis.aclose()
        await observer.aclose()


async def test_a_caller_that_waits_too_long_for_a_connection_gets_a_clear_error(redis_server: ChildProcess) -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{redis_server.port}/0", journeys_redis_connections=1,
                        journeys_redis_wait_s=0.2)  # fmt: skip
    redis = connect_redis(settings)
    try:
        key = f"empty-{uuid.uuid4().hex}"
        holder = asyncio.create_task(redis.blpop([key], timeout=1))
        await asyncio.sleep(0.05)
        outcome = await asyncio.gather(redis.get(key), return_exceptions=True)
        assert isinstance(outcome[0], Exception) and "connection" in str(outcome[0]).lower()
        assert await holder is None
    finally:
        await redis.aclose()
