"""The shared clients of one process (SQL, Redis, HTTP, Temporal), built from settings."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from redis.asyncio import BlockingConnectionPool, Redis
from temporalio.client import Client

from activities.wecom.client import WeComClient, WeComCredentials
from engine.config import Settings
from engine.db import make_engine
from engine.store import Store
from engine.temporal import connect

log = logging.getLogger(__name__)


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
        closers: What must finish before the connections go, in the reverse of their order
            (``close_with``).
    """

    settings: Settings
    store: Store
    redis: Redis
    http: httpx.AsyncClient
    wecom: WeComClient
    temporal: Client
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

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

    def close_with(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run ``closer`` at ``close``, before the connections it may still need are released."""
        self.closers.append(closer)

    async def close(self) -> None:
        """Run the closers (a failing one is logged, not raised), then release connections."""
        for closer in reversed(self.closers):
            try:
                await closer()
            except Exception:  # noqa: BLE001 - the connections must still be released
                log.exception("closing %r failed", closer)
        self.closers.clear()
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
