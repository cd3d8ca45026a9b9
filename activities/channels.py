"""Channel adapters: render a plan's message for one customer and deliver it.

Each adapter returns what was sent (recipients, rendered content, WeCom's response) or
raises ``WeComError`` / ``DeliveryError``. Recording and retry decisions belong to the
send activity, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from activities.wecom import WeComClient
from rules import cache as rule_cache

#: WeCom's duplicate-check window for application messages (seconds, the doc's default).
APP_DUPLICATE_WINDOW_S = 1800


class DeliveryError(Exception):
    """The message cannot be delivered to this customer (permanent, not WeCom's refusal).

    Attributes:
        reason: Short machine-readable reason for the message log.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
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
    raise DeliveryError("unknown_channel", f"channel {channel!r} is not supported")


async def deliver(client: WeComClient, channel: str, rendered: Rendered) -> Delivered:
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
        payload = {"chat_type": "single", "external_userid": rendered.recipients, "sender": rendered.sender}
        if "text" in rendered.content:
            payload["text"] = {"content": rendered.content["text"]}
        if rendered.content.get("attachments"):
            payload["attachments"] = [_wecom_attachment(a) for a in rendered.content["attachments"]]
        body = await client.add_msg_template(payload)
        failed = [str(x) for x in body.get("fail_list") or []]
        if failed and set(rendered.recipients) <= set(failed):
            raise DeliveryError("customer_unreachable", f"WeCom cannot send to {', '.join(failed)}")
        return Delivered(msgid=body.get("msgid"), response=body, failed_recipients=failed)
    raise DeliveryError("unknown_channel", f"channel {channel!r} is not supported")


def _wecom_attachment(att: Mapping[str, Any]) -> dict[str, Any]:
    kind = att["msgtype"]
    fields = {k: v for k, v in att.items() if k != "msgtype"}
    nested = fields.pop(kind, None)
    return {"msgtype": kind, kind: nested if isinstance(nested, dict) else fields}
