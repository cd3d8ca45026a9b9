"""The FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI, Request
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from api import errors
from api.examples import install_examples
from api.routes import activities, customers, enrollments, events, health, journeys, keys, wecom
from engine.dispatch import Dispatcher
from engine.lifecycle import Lifecycle
from engine.registry import load_activities
from engine.runtime import Runtime

log = logging.getLogger("journeys.api")

#: Requests larger than this are refused before they are read.
MAX_BODY_BYTES = 1024 * 1024
RECOVERY_INTERVAL_S = 30.0
PURGE_INTERVAL_S = 3600.0


class _BodyLimit(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return errors.error_response(413, "too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
        return await call_next(request)


def create_app(rt: Runtime, *, admin_key: str, recover_events: bool = True) -> FastAPI:
    """Build the API around an open runtime.

    Args:
        rt: Connections to SQL, Redis, Temporal.
        admin_key: The admin API key (Bearer).
        recover_events: Periodically re-route events whose routing was interrupted.
    """
    dispatcher = Dispatcher(rt.store, rt.redis, rt.temporal, task_queue=rt.settings.temporal_task_queue)
    # Discover plugins now: a broken one fails start-up, and journeys compile against the worker's set.
    load_activities(rt.settings.journeys_activity_modules)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_maintenance_loop(dispatcher, rt)) if recover_events else None
        try:
            yield
        finally:
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="Journeys API",
        version="1",
        description="Customer-journey automation for WeCom: deploy journeys, send events, manage customers.",
        lifespan=lifespan,
    )
    app.state.runtime = rt
    app.state.dispatcher = dispatcher
    app.state.lifecycle = Lifecycle(rt.store, rt.redis, rt.temporal, task_queue=rt.settings.temporal_task_queue)
    app.state.admin_key = admin_key
    app.add_middleware(_BodyLimit)
    errors.install(app)
    for module in (health, journeys, events, customers, enrollments, wecom, keys, activities):
        app.include_router(module.router)
    install_examples(app)
    return app


async def _maintenance_loop(dispatcher: Dispatcher, rt: Runtime) -> None:
    """Route events whose routing was interrupted; purge event history past retention."""
    last_purge = 0.0
    loop = asyncio.get_running_loop()
    while True:
        try:
            routed = await dispatcher.recover()
            if routed:
                log.warning("re-routed %d events whose routing had been interrupted", len(routed))
            if loop.time() - last_purge >= PURGE_INTERVAL_S:
                horizon = datetime.now(UTC) - timedelta(days=rt.settings.journeys_event_retention_days)
                purged = await rt.store.offload(rt.store.purge_events, older_than=horizon)
                await rt.store.offload(rt.store.purge_effects, older_than=horizon)
                message_horizon = datetime.now(UTC) - timedelta(days=rt.settings.journeys_message_retention_days)
                purged_messages = await rt.store.offload(rt.store.purge_messages, older_than=message_horizon)
                last_purge = loop.time()
                if purged or purged_messages:
                    log.info("retention: purged %d events and %d message-log rows", purged, purged_messages)
        except Exception:  # noqa: BLE001 - keep going; the next round may succeed
            log.exception("event maintenance failed")
        await asyncio.sleep(RECOVERY_INTERVAL_S)
