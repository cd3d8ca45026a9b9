"""WeCom callbacks: URL verification and encrypted event delivery."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response

from activities.wecom.callbacks import CallbackParseError, dedupe_key, parse_xml, to_event
from activities.wecom.crypto import CallbackCrypto, CallbackCryptoError
from api.deps import DispatcherDep, RuntimeDep
from engine.dispatch import IncomingEvent

router = APIRouter(prefix="/wecom", tags=["wecom"])

#: How far a callback's timestamp may be from our clock (replays older than this are refused).
MAX_SKEW_S = 300
#: How long a delivered callback is remembered for de-duplicating WeCom's retries.
DEDUPE_TTL_S = 3600


def _crypto(rt: Any) -> CallbackCrypto:
    settings = rt.settings
    if not settings.wecom_callback_token or not settings.wecom_callback_aes_key:
        raise HTTPException(503, "WeCom callbacks are not configured (WECOM_CALLBACK_TOKEN, WECOM_CALLBACK_AES_KEY)")
    try:
        return CallbackCrypto(settings.wecom_callback_token, settings.wecom_callback_aes_key, settings.wecom_corp_id)
    except CallbackCryptoError as exc:
        raise HTTPException(503, f"WeCom callback key is invalid: {exc}") from exc


Sig = Annotated[str, Query(min_length=1, max_length=128)]


@router.get("/callback", response_class=PlainTextResponse)
async def verify_url(rt: RuntimeDep, msg_signature: Sig, timestamp: Sig, nonce: Sig,
                     echostr: Annotated[str, Query(min_length=1, max_length=4096)]) -> PlainTextResponse:  # fmt: skip
    """URL verification: answer the decrypted echostr, exactly (no quotes, BOM or newline)."""
    try:
        plain = _crypto(rt).open(msg_signature, timestamp, nonce, echostr)
    except CallbackCryptoError as exc:
        raise HTTPException(403, f"callback verification failed ({exc.code}): {exc}") from exc
    return PlainTextResponse(plain.decode())


@router.post("/callback")
async def receive(request: Request, rt: RuntimeDep, dispatcher: DispatcherDep, msg_signature: Sig, timestamp: Sig,
                  nonce: Sig) -> Response:  # fmt: skip
    """Encrypted events: verify, decrypt, de-duplicate, store, answer at once (WeCom waits 5 s at most)."""
    crypto = _crypto(rt)
    try:
        envelope = parse_xml(await request.body())
    except CallbackParseError as exc:
        raise HTTPException(400, str(exc)) from exc
    encrypted = envelope.get("Encrypt")
    if not encrypted:
        raise HTTPException(400, "callback body has no Encrypt element")
    if not (timestamp.isascii() and timestamp.isdigit()) or abs(time.time() - int(timestamp)) > MAX_SKEW_S:
        raise HTTPException(403, "callback timestamp is outside the allowed window (replayed or clock skew)")
    try:
        fields = parse_xml(crypto.open(msg_signature, timestamp, nonce, encrypted))
    except CallbackCryptoError as exc:
        raise HTTPException(403, f"callback verification failed ({exc.code}): {exc}") from exc
    except CallbackParseError as exc:
        raise HTTPException(400, str(exc)) from exc
    first = await rt.redis.set(f"wecom:callback:{dedupe_key(fields)}", "1", nx=True, ex=DEDUPE_TTL_S)
    if not first:
        return Response(status_code=200)  # WeCom's retry of something we already have
    event = to_event(fields)
    if event is not None:
        if event.profile:
            await rt.store.offload(_merge_profile, rt.store, event.customer_id, event.profile)
        await dispatcher.accept(
            [
                IncomingEvent(
                    event_id=event.event_id, customer_id=event.customer_id, name=event.name, properties=event.properties
                )
            ],  # fmt: skip
            route_in_background=True,
        )
    return Response(status_code=200)


def _merge_profile(store: Any, customer_id: str, fields: dict[str, Any]) -> None:
    store.update_customer(customer_id, lambda profile: {**profile, **{k: v for k, v in fields.items() if v}})
