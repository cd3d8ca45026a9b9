"""The shared clients of one process (SQL, Redis, HTTP, Temporal), built from settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx
from redis.asyncio import BlockingConnectionPool, Redis
from temporalio.client import Client

from activities.wecom.client import WeComClient, WeComCredentials
from engine.config import Settings
from engine.db import make_engine
from engine.store import Store
from engine.temporal import connect


@dataclass
class Runtime:
    """Everything an API or worker process talks to.

    Attributes:
        settings: The settings it was built from.
        store: SQL store.
        redis: Async Redis client.
        http: Shared httpx client.
        wecom: WeCom client.
        temporal: Temporal client.
    """

    settings: Settings
    store: Store
    redis: Redis
    http: httpx.AsyncClient
    wecom: WeComClient
    temporal: Client

    @classmethod
    async def open(cls, settings: Settings, *, temporal: Client | None = None) -> Runtime:
        """Connect to everything the settings name."""
        if not settings.redis_url:
            raise ValueError("REDIS_URL is not set (journeys up starts an embedded Redis and sets it)")
        # httpx logs every request URL at INFO, and WeCom URLs carry the access token.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        store = Store(make_engine(settings.resolved_database_url()), threads=settings.journeys_sql_threads)
        redis = connect_redis(settings)
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.wecom_timeout_s, connect=min(5.0, settings.wecom_timeout_s))
        )
        wecom = WeComClient(
            http,
            redis,
            WeComCredentials(
                base_url=settings.wecom_base_url,
                corp_id=settings.wecom_corp_id,
                agent_id=settings.wecom_agent_id,
                app_secret=settings.wecom_secret,
                contact_secret=settings.wecom_contact_secret,
            ),
            rate_limits=settings.wecom_rate_limits,
        )
        if temporal is None:
            temporal = await connect(settings.temporal_address, settings.temporal_namespace)
        return cls(settings=settings, store=store, redis=redis, http=http, wecom=wecom, temporal=temporal)

    async def close(self) -> None:
        """Release connections."""
        await self.http.aclose()
        await self.redis.aclose()
        self.store.close()


def connect_redis(settings: Settings) -> Redis:
    """A Redis client whose callers queue for a connection when all are busy.

    Args:
        settings: ``redis_url``, ``journeys_redis_connections`` and ``journeys_redis_wait_s``.
    """
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=settings.journeys_redis_connections, timeout=settings.journeys_redis_wait_s
    )
    return Redis.from_pool(pool)
