"""Map errors to JSON ``{"error": {"code", "message", "details"}}`` responses.

A caller's mistake is always a 4xx with a message that says what to fix; only our own
bugs become a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from engine.errors import JourneyStateError, NotFoundError, SpecError

log = logging.getLogger("journeys.api")


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    """The one error shape of the API."""
    return JSONResponse({"error": {"code": code, "message": message, "details": details}}, status_code=status)


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""

    @app.exception_handler(SpecError)
    async def _spec(_: Request, exc: SpecError) -> JSONResponse:
        first = exc.problems[0].format(exc.source) if exc.problems else str(exc)
        return error_response(422, "invalid_journey", first, [p.as_dict() for p in exc.problems])

    @app.exception_handler(NotFoundError)
    async def _missing(_: Request, exc: NotFoundError) -> JSONResponse:
        return error_response(404, "not_found", str(exc), {"kind": exc.kind, "id": exc.ident})

    @app.exception_handler(JourneyStateError)
    async def _state(_: Request, exc: JourneyStateError) -> JSONResponse:
        return error_response(409, "invalid_state", str(exc), {"current": exc.current, "requested": exc.requested})

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"path": ".".join(str(p) for p in err["loc"] if p != "body"), "message": err["msg"]} for err in exc.errors()
        ]
        message = "; ".join(f"{d['path'] or 'body'}: {d['message']}" for d in details[:5])
        return error_response(422, "invalid_request", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            413: "too_large",
            415: "unsupported_media_type",
        }.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RPCError)
    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(OperationalError)
    async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc)
        return error_response(503, "unavailable", f"a dependency is unavailable ({type(exc).__name__}); retry later")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal", "internal error; see the server log")
