"""HTTP routes of the fake WeCom: the ``/cgi-bin`` API plus ``/_fake`` test hooks."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, fields
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from engine.fake_wecom.state import FakeConfig, FakeWeCom, error_body


def create_app(state: FakeWeCom | None = None) -> FastAPI:
    """Build the fake's ASGI app around ``state`` (a fresh one by default)."""
    fake = state or FakeWeCom()
    app = FastAPI(title="Fake WeCom", docs_url=None, redoc_url=None)
    app.state.fake = fake

    async def json_body(request: Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def business(request: Request, app_kind: str) -> tuple[dict[str, Any] | None, JSONResponse | None]:
        if fake.config.latency_ms:
            await asyncio.sleep(fake.config.latency_ms / 1000)
        problem = fake.check_token(request.query_params.get("access_token"), app_kind)
        if problem is None:
            problem = fake.injected_fault()
        if problem is not None:
            return None, JSONResponse(problem)
        body = await json_body(request)
        if body is None:
            return None, JSONResponse(error_body(40063))
        return body, None

    @app.get("/cgi-bin/gettoken")
    async def gettoken(corpid: str | None = None, corpsecret: str | None = None) -> JSONResponse:
        return JSONResponse(fake.issue_token(corpid, corpsecret))

    @app.post("/cgi-bin/message/send")
    async def message_send(request: Request) -> JSONResponse:
        body, error = await business(request, "app")
        if error is not None:
            return error
        assert body is not None
        return JSONResponse(fake.app_message(body))

    @app.post("/cgi-bin/externalcontact/add_msg_template")
    async def add_msg_template(request: Request) -> JSONResponse:
        body, error = await business(request, "contact")
        if error is not None:
            return error
        assert body is not None
        return JSONResponse(fake.msg_template(body))

    @app.post("/cgi-bin/externalcontact/send_welcome_msg")
    async def send_welcome_msg(request: Request) -> JSONResponse:
        body, error = await business(request, "contact")
        if error is not None:
            return error
        assert body is not None
        return JSONResponse(fake.welcome(body))

    @app.post("/cgi-bin/webhook/send")
    async def robot(request: Request, key: str | None = None) -> JSONResponse:
        body = await json_body(request)
        if body is None:
            return JSONResponse(error_body(40063))
        return JSONResponse(fake.robot(key, body))

    @app.post("/_fake/welcome_codes")
    async def welcome_code(request: Request) -> JSONResponse:
        body = await json_body(request) or {}
        code = fake.issue_welcome_code(body.get("code"), float(body.get("ttl_s", 20.0)))
        return JSONResponse({"welcome_code": code})

    @app.get("/_fake/messages")
    async def messages(delivered_only: bool = False) -> JSONResponse:
        return JSONResponse(
            {"messages": fake.listing(delivered_only=delivered_only), "gettoken_calls": fake.gettoken_calls}
        )

    @app.post("/_fake/reset")
    async def reset() -> JSONResponse:
        fake.reset()
        return JSONResponse({"ok": True})

    @app.post("/_fake/revoke_tokens")
    async def revoke() -> JSONResponse:
        fake.revoke_tokens()
        return JSONResponse({"ok": True})

    @app.get("/_fake/config")
    async def get_config() -> JSONResponse:
        return JSONResponse(asdict(fake.config))

    @app.post("/_fake/config")
    async def set_config(request: Request) -> JSONResponse:
        body = await json_body(request) or {}
        names = {f.name for f in fields(FakeConfig)}
        unknown = sorted(set(body) - names)
        if unknown:
            return JSONResponse({"error": f"unknown config keys: {', '.join(unknown)}"}, status_code=400)
        for key, value in body.items():
            setattr(fake.config, key, value)
        return JSONResponse(asdict(fake.config))

    return app
