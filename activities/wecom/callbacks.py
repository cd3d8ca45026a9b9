"""Decrypted WeCom callback XML -> Journeys events (journey-dsl §6) and profile changes."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

#: change_external_contact ChangeType -> event name.
_CONTACT_EVENTS = {
    "add_external_contact": "wecom.contact_added",
    "add_half_external_contact": "wecom.contact_added",
    "edit_external_contact": "wecom.contact_edited",
    "del_external_contact": "wecom.contact_removed",
    "del_follow_user": "wecom.contact_removed",
    "transfer_fail": "wecom.transfer_failed",
}


class CallbackParseError(Exception):
    """The callback XML is malformed or lacks a required element."""


@dataclass
class CallbackEvent:
    """One event made from a callback, with the profile fields it implies."""

    event_id: str
    customer_id: str
    name: str
    properties: dict[str, Any]
    profile: dict[str, Any] = field(default_factory=dict)


def parse_xml(data: bytes | str) -> dict[str, str]:
    """Flat ``{element: text}`` of a WeCom XML document (elements in any order).

    Raises:
        CallbackParseError: Not XML.
    """
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise CallbackParseError(f"callback body is not XML: {exc}") from exc
    return {child.tag: (child.text or "").strip() for child in root}


def dedupe_key(fields: dict[str, str]) -> str:
    """WeCom retries a callback with the same content: MsgId when present, else the event's identity.

    For events FromUserName is always ``sys``, so CreateTime alone would merge two adds in
    the same second; the change type and the people involved are part of the identity.
    """
    if fields.get("MsgId"):
        basis = f"msg:{fields['MsgId']}"
    else:
        parts = ("FromUserName", "CreateTime", "Event", "ChangeType", "UserID", "ExternalUserID", "ChatId", "Id")
        basis = "evt:" + "|".join(fields.get(p, "") for p in parts)
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


def to_event(fields: dict[str, str]) -> CallbackEvent | None:
    """The Journeys event for a decrypted callback, or None for kinds we do not use."""
    event_id = f"wecom:{dedupe_key(fields)}"
    if fields.get("MsgType") == "event" and fields.get("Event") == "change_external_contact":
        change = fields.get("ChangeType", "")
        name = _CONTACT_EVENTS.get(change)
        external = fields.get("ExternalUserID")
        if name is None or not external:
            return None
        props: dict[str, Any] = {"external_userid": external, "userid": fields.get("UserID"), "change_type": change}
        profile: dict[str, Any] = {"external_userid": external}
        if name == "wecom.contact_added":
            props["state"] = fields.get("State") or None
            props["welcome_code"] = fields.get("WelcomeCode") or None
            profile["owner_userid"] = fields.get("UserID")
        elif name == "wecom.contact_removed":
            props["by"] = "staff" if change == "del_external_contact" else "customer"
            props["source"] = fields.get("Source") or None
        elif name == "wecom.transfer_failed":
            props["reason"] = fields.get("FailReason") or None
        return CallbackEvent(event_id=event_id, customer_id=external, name=name, properties=props, profile=profile)
    if fields.get("MsgType") == "event" and fields.get("Event") == "change_external_tag":
        props = {"id": fields.get("Id"), "tag_type": fields.get("TagType"), "change_type": fields.get("ChangeType")}
        return CallbackEvent(event_id=event_id, customer_id="wecom:corp", name="wecom.tag_changed", properties=props)
    if fields.get("MsgType") == "text" and fields.get("FromUserName"):
        props = {"content": fields.get("Content", ""), "msg_id": fields.get("MsgId"), "agent_id": fields.get("AgentID")}
        return CallbackEvent(event_id=event_id, customer_id=fields["FromUserName"], name="wecom.message_received",
                             properties=props)  # fmt: skip
    return None
