"""Channel adapters: render a plan's message for one customer and deliver it.

Each adapter returns what was sent (recipients, rendered content, WeCom's response) or
raises ``WeComError`` / ``DeliveryError``. Recording and retry decisions belong to the
send activity, not here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from activities.wecom import WeComClient, WeComError
from rules import cache as rule_cache

#: WeCom's duplicate-check window for application messages (seconds, the doc's default).
APP_DUPLICATE_WINDOW_S = 1800


class WebhookSender:
    """Signed JSON POSTs to journey webhooks (SMS gateways, CRMs).

    Each request carries ``X-Journeys-Signature: sha256=<hex HMAC of the body>`` and an
    ``Idempotency-Key`` stable across retries, so receivers can verify and de-duplicate.

    Args:
        http: Shared httpx client.
        secret: HMAC key (``JOURNEYS_WEBHOOK_SECRET``).
    """

    def __init__(self, http: httpx.AsyncClient, secret: str) -> None:
        self._http = http
        self._secret = secret.encode()

    async def post(self, url: str, body: Any, *, idempotency_key: str) -> Delivered:
        """POST ``body`` as JSON.

        Raises:
            WeComError: Retryable (-2) for transport errors, 408, 429 and 5xx.
            DeliveryError: The receiver refused it (other 4xx).
        """
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        digest = hmac.new(self._secret, payload, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Journeys-Signature": f"sha256={digest}",
                   "Idempotency-Key": idempotency_key}  # fmt: skip
        try:
            resp = await self._http.post(url, content=payload, headers=headers)
        except httpx.TransportError as exc:
            raise WeComError(-2, f"webhook transport error: {type(exc).__name__}") from exc
        if resp.status_code in (408, 429) or resp.status_code >= 500:
            raise WeComError(-2, f"webhook answered HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise DeliveryError(f"http_{resp.status_code}", f"webhook refused it: HTTP {resp.status_code}")
        try:
            answer = resp.json() if resp.content else {}
        except ValueError:
            answer = {"text": resp.text[:500]}
        return Delivered(msgid=None, response={"status": resp.status_code, "body": answer})


class DeliveryError(Exception):
    """The message cannot be delivered to this customer (permanent, not WeCom's refusal).

    Attributes:
        reason: Short machine-readable reason for the message log.
        skip: Nothing went wrong, there is just nothing to send (logged ``skipped``).
    """

    def __init__(self, reason: str, message: str, *, skip: bool = False) -> None:
        self.reason = reason
        self.skip = skip
        super().__init__(message)


@dataclass
class Rendered:
    """A message rendered for one customer."""

    recipients: list[str]
    sender: str | None
    content: dict[str, Any]


@dataclass
class Delivered:
    """WeCom accepted the message (possibly for only some recipients)."""

    msgid: str | None
    response: dict[str, Any]
    failed_recipients: list[str] = field(default_factory=list)


def render(
    channel: str,
    message: Mapping[str, Any],
    customer: Mapping[str, Any],
    context: Mapping[str, Any],
    *,
    strict: bool = True,
) -> Rendered:
    """Render templates and resolve recipients.

    Raises:
        rules.TemplateError: A placeholder had no value (``strict`` journeys).
        DeliveryError: The customer cannot be reached on this channel.
    """

    def _render(value: Any, ctx: Mapping[str, Any]) -> Any:
        return rule_cache.render(value, ctx, strict=strict)

    if channel == "wecom.app":
        to: list[str] = []
        for item in _render(message.get("to", []), context):
            to.extend(u.strip() for u in str(item).split("|") if u.strip())
        if not to:
            raise DeliveryError("no_recipient", "wecom.app message has no recipient")
        body = {k: _render(v, context) for k, v in message.items() if k in ("text", "markdown", "textcard")}
        return Rendered(recipients=to, sender=None, content=body)
    if channel == "wecom.customer":
        external = customer.get("external_userid")
        if not external:
            raise DeliveryError("no_external_userid", f"customer {customer.get('id')!r} has no external_userid")
        sender = str(_render(message.get("sender", ""), context)).strip()
        if not sender:
            raise DeliveryError("no_sender", "wecom.customer message rendered an empty sender")
        body = {k: _render(v, context) for k, v in message.items() if k in ("text", "attachments")}
        return Rendered(recipients=[str(external)], sender=sender, content=body)
    if channel == "wecom.welcome":
        code = (context.get("trigger") or {}).get("welcome_code")
        if not code:
            # No code: a welcome was configured in the admin console, or the pair already chatted.
            raise DeliveryError("no_welcome_code", "the triggering add carried no welcome_code")
        body = {k: _render(v, context) for k, v in message.items() if k in ("text", "attachments")}
        return Rendered(recipients=[str(customer.get("external_userid") or customer.get("id"))], sender=None,
                        content={**body, "welcome_code": str(code)})  # fmt: skip
    if channel == "wecom.group_bot":
        key = str(_render(message.get("webhook_key", ""), context)).strip()
        if not key:
            raise DeliveryError("no_webhook_key", "wecom.group_bot rendered an empty webhook_key")
        body = {k: _render(v, context) for k, v in message.items() if k in ("text", "markdown")}
        return Rendered(recipients=[f"robot:{key[:6]}…"], sender=None, content={**body, "webhook_key": key})
    if channel == "webhook":
        url = str(_render(message.get("url", ""), context)).strip()
        if not url.startswith(("http://", "https://")):
            raise DeliveryError("bad_url", f"webhook url {url!r} is not http(s)")
        return Rendered(
            recipients=[url], sender=None, content={"url": url, "body": _render(message.get("body"), context)}
        )
    raise DeliveryError("unknown_channel", f"channel {channel!r} is not supported")


async def deliver(client: WeComClient, channel: str, rendered: Rendered, *, webhook: WebhookSender | None = None,
                  idempotency_key: str = "") -> Delivered:  # fmt: skip
    """Send a rendered message through WeCom.

    Raises:
        WeComError: WeCom refused the call.
        DeliveryError: WeCom accepted the call but no recipient can receive it.
    """
    if channel == "wecom.app":
        content = rendered.content
        msgtype = next(k for k in ("text", "markdown", "textcard") if k in content)
        payload: dict[str, Any] = {
            "touser": "|".join(rendered.recipients),
            "msgtype": msgtype,
            msgtype: content[msgtype] if msgtype == "textcard" else {"content": content[msgtype]},
            # A retried activity re-sends the same JSON; WeCom's duplicate check then
            # suppresses the second copy instead of the staff member getting two.
            "enable_duplicate_check": 1,
            "duplicate_check_interval": APP_DUPLICATE_WINDOW_S,
        }
        body = await client.send_app_message(payload)
        invalid = [u for u in str(body.get("invaliduser") or "").split("|") if u]
        lowered = {r.lower() for r in rendered.recipients}
        if invalid and lowered <= {u.lower() for u in invalid}:
            raise DeliveryError("invalid_recipient", f"no recipient can receive it: {', '.join(invalid)}")
        return Delivered(msgid=body.get("msgid"), response=body, failed_recipients=invalid)
    if channel == "wecom.customer":
        body = await client.add_msg_template(customer_payload(rendered))
        failed = [str(x) for x in body.get("fail_list") or []]
        if failed and set(rendered.recipients) <= set(failed):
            raise DeliveryError("customer_unreachable", f"WeCom cannot send to {', '.join(failed)}")
        return Delivered(msgid=body.get("msgid"), response=body, failed_recipients=failed)
    if channel == "wecom.welcome":
        payload = {"welcome_code": rendered.content["welcome_code"]}
        if "text" in rendered.content:
            payload["text"] = {"content": rendered.content["text"]}
        if rendered.content.get("attachments"):
            payload["attachments"] = [_wecom_attachment(a) for a in rendered.content["attachments"]]
        try:
            body = await client.send_welcome_msg(payload)
        except WeComError as exc:
            if exc.errcode == 41051:  # the welcome already went (another app, or the admin's)
                raise DeliveryError("welcome_already_sent", "the customer already got a welcome", skip=True) from exc
            raise
        return Delivered(msgid=None, response=body)
    if channel == "wecom.group_bot":
        kind = "markdown" if "markdown" in rendered.content else "text"
        body = await client.group_robot(rendered.content["webhook_key"],
                                        {"msgtype": kind, kind: {"content": rendered.content[kind]}})  # fmt: skip
        return Delivered(msgid=None, response=body)
    if channel == "webhook":
        if webhook is None:
            raise DeliveryError("webhook_unavailable", "no HTTP client for webhooks")
        return await webhook.post(rendered.content["url"], rendered.content["body"], idempotency_key=idempotency_key)
    raise DeliveryError("unknown_channel", f"channel {channel!r} is not supported")


def customer_payload(rendered: Rendered) -> dict[str, Any]:
    """The ``add_msg_template`` request for a rendered ``wecom.customer`` message."""
    payload: dict[str, Any] = {"chat_type": "single", "external_userid": rendered.recipients,
                               "sender": rendered.sender}  # fmt: skip
    if "text" in rendered.content:
        payload["text"] = {"content": rendered.content["text"]}
    if rendered.content.get("attachments"):
        payload["attachments"] = [_wecom_attachment(a) for a in rendered.content["attachments"]]
    return payload


def _wecom_attachment(att: Mapping[str, Any]) -> dict[str, Any]:
    kind = att["msgtype"]
    fields = {k: v for k, v in att.items() if k != "msgtype"}
    nested = fields.pop(kind, None)
    return {"msgtype": kind, kind: nested if isinstance(nested, dict) else fields}
