"""HTTP routes of the fake WeCom: the ``/cgi-bin`` API plus ``/_fake`` test hooks."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

import httpx
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from activities.wecom.crypto import CallbackCrypto
from engine.fake_wecom.state import FakeConfig, FakeWeCom, error_body


def contact_added_xml(corp_id: str, userid: str, external: str, state: str | None, welcome_code: str | None) -> str:
    """The decrypted XML of an add_external_contact event, as WeCom writes it."""
    parts = [
        f"<ToUserName><![CDATA[{corp_id}]]></ToUserName>", "<FromUserName><![CDATA[sys]]></FromUserName>",
        f"<CreateTime>{int(time.time())}</CreateTime>", "<MsgType><![CDATA[event]]></MsgType>",
        "<Event><![CDATA[change_external_contact]]></Event>",
        "<ChangeType><![CDATA[add_external_contact]]></ChangeType>",
        f"<UserID><![CDATA[{userid}]]></UserID>", f"<ExternalUserID><![CDATA[{external}]]></ExternalUserID>",
    ]  # fmt: skip
    if state:
        parts.append(f"<State><![CDATA[{state}]]></State>")
    if welcome_code:
        parts.append(f"<WelcomeCode><![CDATA[{welcome_code}]]></WelcomeCode>")
    return "<xml>" + "".join(parts) + "</xml>"


async def send_callback(fake: FakeWeCom, xml: str, *, repeat: int = 1) -> list[int]:
    """POST an event the way WeCom does.

    Encrypted with a binary random prefix, signed over ``Encrypt``, elements in varying
    order; the same content ``repeat`` times, each with a fresh timestamp and nonce.
    """
    cfg = fake.config
    crypto = CallbackCrypto(cfg.callback_token or "", cfg.callback_aes_key or "", cfg.corp_id)
    statuses = []
    async with httpx.AsyncClient(timeout=5.0) as client:
        for _ in range(repeat):
            timestamp, nonce = str(int(time.time())), str(random.randint(10**8, 10**10))
            encrypted, sig = crypto.seal(xml.encode(), timestamp, nonce)
            elements = [f"<ToUserName><![CDATA[{cfg.corp_id}]]></ToUserName>",
                        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>", "<AgentID><![CDATA[]]></AgentID>"]  # fmt: skip
            random.shuffle(elements)
            try:
                resp = await client.post(cfg.callback_url or "", params={"msg_signature": sig, "timestamp": timestamp,
                                                                         "nonce": nonce},
                                         content="<xml>" + "".join(elements) + "</xml>")  # fmt: skip
                statuses.append(resp.status_code)
            except httpx.HTTPError:
                statuses.append(0)
    return statuses


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
        if problem is not None and not problem.get("timeout"):
            return None, JSONResponse(problem)
        body = await json_body(request)
        if body is None:
            return None, JSONResponse(error_body(40063))
        request.state.answer_late = bool(problem)  # processed, but the caller will have given up
        return body, None

    async def answer(request: Request, body: dict[str, Any]) -> JSONResponse:
        if getattr(request.state, "answer_late", False):
            await asyncio.sleep(fake.config.timeout_s)
        return JSONResponse(body)

    async def handle(request: Request, app_kind: str, work: Callable[[dict[str, Any]], dict[str, Any]]) -> JSONResponse:
        """Token and fault checks, then ``work(body)``, answered (perhaps late) as WeCom would."""
        body, error = await business(request, app_kind)
        if error is not None:
            return error
        assert body is not None
        return await answer(request, work(body))

    @app.get("/cgi-bin/gettoken")
    async def gettoken(corpid: str | None = None, corpsecret: str | None = None) -> JSONResponse:
        return JSONResponse(fake.issue_token(corpid, corpsecret))

    @app.post("/cgi-bin/message/send")
    async def message_send(request: Request) -> JSONResponse:
        return await handle(request, "app", fake.app_message)

    @app.post("/cgi-bin/externalcontact/add_msg_template")
    async def add_msg_template(request: Request) -> JSONResponse:
        return await handle(request, "contact", fake.msg_template)

    @app.post("/cgi-bin/externalcontact/send_welcome_msg")
    async def send_welcome_msg(request: Request) -> JSONResponse:
        return await handle(request, "contact", fake.welcome)

    @app.post("/cgi-bin/externalcontact/get_corp_tag_list")
    async def get_corp_tag_list(request: Request) -> JSONResponse:
        return await handle(request, "contact", lambda _body: fake.tag_list())

    @app.post("/cgi-bin/externalcontact/add_corp_tag")
    async def add_corp_tag(request: Request) -> JSONResponse:
        return await handle(request, "contact", fake.add_tags)

    @app.post("/cgi-bin/externalcontact/mark_tag")
    async def mark_tag(request: Request) -> JSONResponse:
        return await handle(request, "contact", fake.mark_tag)

    @app.post("/cgi-bin/externalcontact/get_groupmsg_list_v2")
    async def get_groupmsg_list_v2(request: Request) -> JSONResponse:
        return await handle(request, "contact", fake.groupmsg_list)

    @app.post("/cgi-bin/externalcontact/get_groupmsg_send_result")
    async def get_groupmsg_send_result(request: Request) -> JSONResponse:
        return await handle(request, "contact", fake.send_result)

    @app.post("/_fake/confirm")
    async def confirm(request: Request) -> JSONResponse:
        """The staff member confirms a mass-send task (``{"msgid": ...}``)."""
        body = await json_body(request) or {}
        statuses = fake.confirm(str(body.get("msgid") or ""))
        if not statuses:
            return JSONResponse({"error": "unknown msgid"}, status_code=404)
        return JSONResponse({"statuses": statuses})

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

    @app.post("/_fake/callbacks/contact_added")
    async def contact_added(request: Request) -> JSONResponse:
        """Send an encrypted add_external_contact callback, ``repeat`` times as WeCom retries do."""
        body = await json_body(request) or {}
        if not (fake.config.callback_url and fake.config.callback_token and fake.config.callback_aes_key):
            return JSONResponse({"error": "set callback_url, callback_token, callback_aes_key first"}, status_code=400)
        code = fake.issue_welcome_code() if body.get("welcome_code", True) else None
        xml = contact_added_xml(fake.config.corp_id, str(body.get("userid", "zhangsan")),
                                str(body.get("external_userid", "wm_fake")), body.get("state"), code)  # fmt: skip
        statuses = await send_callback(fake, xml, repeat=int(body.get("repeat", 1)))
        return JSONResponse({"statuses": statuses, "welcome_code": code})

    @app.get("/_fake/messages")
    async def messages(delivered_only: bool = False, since: int = Query(0, ge=0)) -> JSONResponse:
        # ``received`` before the listing: a poller that passes it as the next ``since`` may see
        # a message twice, never miss one. Polling with ``since`` keeps a long run's polls small.
        received = fake.received()
        return JSONResponse(
            {
                "messages": fake.listing(delivered_only=delivered_only, since=since),
                "received": received,
                "gettoken_calls": fake.gettoken_calls,
                "faults_injected": list(fake.faults_injected),
            }
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
