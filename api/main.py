"""The FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI, HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
_TOO_LARGE = f"request bodies are limited to {MAX_BODY_BYTES} bytes"
RECOVERY_INTERVAL_S = 30.0
PURGE_INTERVAL_S = 3600.0


class _BodyTooLarge(HTTPException):
    """A body without a declared length grew past the limit while it was read.

    An ``HTTPException``, so that FastAPI's body parsing passes it on to the API's error
    handler (any other exception there becomes a 400), which answers the same 413.
    """

    def __init__(self) -> None:
        super().__init__(413, _TOO_LARGE)


class _BodyLimit:
    """Refuses request bodies over ``MAX_BODY_BYTES``.

    By their declared length before they are read, and by the bytes read so far when the
    length is not declared (chunked uploads).

    Plain ASGI: Starlette's ``BaseHTTPMiddleware`` ran every request through a task group and
    a response stream, about a tenth of the API's busy samples in a py-spy profile.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if length is not None:
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                await _too_large()(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise _BodyTooLarge
            return message

        await self.app(scope, counted_receive, send)


def _too_large() -> ASGIApp:
    return errors.error_response(413, "too_large", _TOO_LARGE)


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
            await dispatcher.close()

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
