"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from api.deps import RuntimeDep
from engine import metrics

router = APIRouter(tags=["health"])


@router.get("/metrics")
async def prometheus_metrics() -> Response:
    """Prometheus metrics: events, enrollments, sends, activity latency, WeCom errcodes."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


@router.get("/healthz")
async def healthz(rt: RuntimeDep) -> JSONResponse:
    """Report whether Temporal, the database and Redis answer (503 if any does not)."""

    async def temporal() -> None:
        await rt.temporal.service_client.check_health(timeout=timedelta(seconds=3))

    def db() -> None:
        with rt.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    async def redis() -> None:
        await rt.redis.ping()

    checks: dict[str, str] = {}
    for name, probe in (("temporal", temporal()), ("db", rt.store.offload(db)), ("redis", redis())):
        try:
            await asyncio.wait_for(probe, timeout=5)
            checks[name] = "up"
        except Exception as exc:  # noqa: BLE001 - any failure means "down", with its reason
            checks[name] = f"down: {type(exc).__name__}: {exc}"[:200]
    ok = all(v == "up" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503)
