"""State and rules of the fake WeCom (tokens, messages, duplicate check, faults)."""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.config import FAKE_AGENT_ID, FAKE_APP_SECRET, FAKE_CONTACT_SECRET, FAKE_CORP_ID

#: errmsg texts WeCom really sends (wecom-reference.md §0).
ERRMSG = {
    -1: "system busy",
    40001: "invalid credential",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40056: "invalid agentid",
    40063: "some parameters are empty",
    41001: "access_token missing",
    41004: "corpsecret missing",
    42001: "access_token expired",
    44004: "empty content",
    45002: "content size out of limit",
    45009: "api freq out of limit",
    48002: "api forbidden",
    81013: "user & party & tag all invalid",
    82001: "All touser & toparty & totag invalid",
    40008: "invalid message type",
    41048: "no valid customer to send",
    40096: "invalid external userid",
    40058: "invalid parameter",
    40068: "invalid tagid",
    40126: "tag count exceed limit",
    41049: "welcome code missing",
    41050: "invalid welcome code or welcome code expired",
    41051: "externaluser has started chatting",
    93000: "invalid webhook url",
}


def error_body(code: int, client_ip: str = "127.0.0.1", **empty_fields: Any) -> dict[str, Any]:
    """An error body in WeCom's modern format, with the endpoint's empty collections."""
    hint = "".join(random.choice("0123456789") for _ in range(25))
    text = ERRMSG.get(code, "error")
    return {
        "errcode": code,
        "errmsg": f"{text}, hint: [{hint}], from ip: {client_ip}, "
        f"more info at https://open.work.weixin.qq.com/devtool/query?e={code}",
        **empty_fields,
    }


@dataclass
class FakeConfig:
    """Tunable behaviour (tests change it through ``POST /_fake/config``).

    Attributes:
        corp_id: The corp id it accepts.
        agent_id: The self-built app's agent id.
        app_secret: The app's secret.
        contact_secret: The customer-contact secret.
        token_ttl_s: ``expires_in`` of issued tokens.
        expired_errcode: 42001 or 40014 (the real server sends both for expired tokens).
        known_users: When set, only these staff userids exist (others are invalid).
        known_external_userids: When set, only these customers exist.
        fail_rate: Fraction of business calls answered with an injected fault.
        fail_errcode: Errcode of injected faults (-1 system busy by default).
        fail_errcodes: If set, each fault picks one of these; ``42001`` revokes the tokens
            first (WeCom may expire a token early), ``0`` stands for a transport timeout.
        latency_ms: Added to every business call.
        timeout_s: How late a "transport timeout" fault answers (after processing the call).
        auto_confirm: Staff confirm customer mass sends at once (demos, simulations).
        monthly_quota: Mass messages a customer may receive per calendar month (None: no limit).
        callback_url: Where the callback sender posts events (the product's /wecom/callback).
        callback_token: The product's callback token.
        callback_aes_key: The product's EncodingAESKey.
    """

    corp_id: str = FAKE_CORP_ID
    agent_id: int = FAKE_AGENT_ID
    app_secret: str = FAKE_APP_SECRET
    contact_secret: str = FAKE_CONTACT_SECRET
    token_ttl_s: int = 7200
    expired_errcode: int = 42001
    known_users: list[str] | None = None
    known_external_userids: list[str] | None = None
    fail_rate: float = 0.0
    fail_errcode: int = -1
    fail_errcodes: list[int] | None = None
    latency_ms: int = 0
    timeout_s: float = 3.0
    auto_confirm: bool = False
    monthly_quota: int | None = None
    callback_url: str | None = None
    callback_token: str | None = None
    callback_aes_key: str | None = None


@dataclass
class Token:
    """An issued access token."""

    value: str
    app: str  # "app" | "contact"
    expires_at: float


@dataclass
class Received:
    """One message the fake accepted (what tests and demos inspect)."""

    id: int
    api: str
    at: float
    msgid: str
    delivered: bool
    msgtype: str | None
    touser: list[str]
    sender: str | None
    external_userid: list[str]
    text: str | None
    payload: dict[str, Any]
    duplicate_of: str | None = None


@dataclass
class FakeWeCom:
    """All state of one fake WeCom server (thread-safe)."""

    config: FakeConfig = field(default_factory=FakeConfig)
    tokens: dict[str, Token] = field(default_factory=dict)
    messages: list[Received] = field(default_factory=list)
    gettoken_calls: int = 0
    revocations: int = 0
    faults_injected: list[int] = field(default_factory=list)
    welcome_codes: dict[str, float] = field(default_factory=dict)  # code -> expires_at (0: used)
    #: msgid -> {external_userid: (status, send_time)}; status 0 not sent, 1 sent, 2 not a friend, 3 over quota
    tasks: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    received_this_month: dict[str, int] = field(default_factory=dict)
    #: group name -> {tag name: tag id}
    corp_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    #: (staff userid, external_userid) -> tag ids
    customer_tags: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    _dupes: dict[str, tuple[float, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Forget messages, tokens and counters (config is kept)."""
        with self._lock:
            self.tokens.clear()
            self.messages.clear()
            self._dupes.clear()
            self.gettoken_calls = 0

    # -- tokens -------------------------------------------------------------------

    def issue_token(self, corpid: str | None, secret: str | None) -> dict[str, Any]:
        """``gettoken``: same token while valid, per app."""
        with self._lock:
            self.gettoken_calls += 1
            if not corpid or corpid != self.config.corp_id:
                return error_body(40013)
            if not secret:
                return error_body(41004)
            if secret == self.config.app_secret:
                app = "app"
            elif secret == self.config.contact_secret:
                app = "contact"
            else:
                return error_body(40001)
            now = time.time()
            for tok in self.tokens.values():
                if tok.app == app and tok.expires_at > now:
                    return {
                        "errcode": 0,
                        "errmsg": "ok",
                        "access_token": tok.value,
                        "expires_in": int(tok.expires_at - now),
                    }
            tok = Token(value=secrets.token_urlsafe(48), app=app, expires_at=now + self.config.token_ttl_s)
            self.tokens[tok.value] = tok
            return {"errcode": 0, "errmsg": "ok", "access_token": tok.value, "expires_in": self.config.token_ttl_s}

    def check_token(self, value: str | None, app: str) -> dict[str, Any] | None:
        """None when ``value`` is a valid token of ``app``; else the error body."""
        if not value:
            return error_body(41001)
        tok = self.tokens.get(value)
        if tok is None:
            return error_body(40014)
        if tok.expires_at <= time.time():
            return error_body(self.config.expired_errcode)
        if tok.app != app:
            return error_body(48002)
        return None

    def revoke_tokens(self) -> None:
        """Invalidate every token early (WeCom may do this at any time)."""
        with self._lock:
            self.tokens.clear()

    def injected_fault(self) -> dict[str, Any] | None:
        """A configured random fault, or None. ``{"timeout": True}`` means: never answer."""
        cfg = self.config
        if cfg.fail_rate <= 0 or random.random() >= cfg.fail_rate:
            return None
        code = random.choice(cfg.fail_errcodes) if cfg.fail_errcodes else cfg.fail_errcode
        with self._lock:
            self.faults_injected.append(code)
        if code == 0:
            return {"timeout": True}
        if code in (42001, 40014):
            self.revoke_tokens()
            self.revocations += 1
        return error_body(code)

    # -- message/send -------------------------------------------------------------

    def app_message(self, body: dict[str, Any]) -> dict[str, Any]:
        """``message/send`` with recipient checks, partial failure and duplicate check."""
        cfg = self.config
        if body.get("agentid") != cfg.agent_id:
            return error_body(40056, invaliduser="")
        msgtype = body.get("msgtype")
        if msgtype not in ("text", "markdown", "textcard", "news", "image", "file", "template_card"):
            return error_body(40008)
        text = None
        if msgtype in ("text", "markdown"):
            text = str((body.get(msgtype) or {}).get("content") or "")
            if not text:
                return error_body(44004)
            if len(text.encode()) > 2048:
                return error_body(45002)
        elif msgtype == "textcard":
            card = body.get("textcard") or {}
            if not card.get("description"):
                return error_body(40063)
            text = f"{card.get('title', '')}\n{card.get('description', '')}"
        users = [u.strip() for u in str(body.get("touser") or "").split("|") if u.strip()]
        if not users and not body.get("toparty") and not body.get("totag"):
            return error_body(82001, invaliduser="")
        known = None if cfg.known_users is None else {u.lower() for u in cfg.known_users}
        invalid = [u.lower() for u in users if known is not None and u.lower() not in known and u != "@all"]
        valid = [u for u in users if u.lower() not in invalid]
        if users and not valid:
            return error_body(81013, invaliduser="|".join(invalid))
        with self._lock:
            dup_key = None
            if body.get("enable_duplicate_check"):
                window = min(int(body.get("duplicate_check_interval") or 1800), 14400)
                dup_key = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
                hit = self._dupes.get(dup_key)
                if hit and time.time() - hit[0] < window:
                    self._record(
                        "message/send",
                        body,
                        hit[1],
                        delivered=False,
                        msgtype=msgtype,
                        touser=valid,
                        text=text,
                        duplicate_of=hit[1],
                    )
                    return {"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": hit[1]}
            msgid = secrets.token_urlsafe(24)
            if dup_key:
                self._dupes[dup_key] = (time.time(), msgid)
            self._record("message/send", body, msgid, delivered=True, msgtype=msgtype, touser=valid, text=text)
        return {
            "errcode": 0,
            "errmsg": "ok",
            "invaliduser": "|".join(invalid),
            "invalidparty": "",
            "invalidtag": "",
            "unlicenseduser": "",
            "msgid": msgid,
        }

    # -- welcome messages -----------------------------------------------------------

    def issue_welcome_code(self, code: str | None = None, ttl_s: float = 20.0) -> str:
        """A welcome code as an add event carries it: valid for 20 s, single use."""
        code = code or "WC" + secrets.token_urlsafe(16)
        with self._lock:
            self.welcome_codes[code] = time.time() + ttl_s
        return code

    def welcome(self, body: dict[str, Any]) -> dict[str, Any]:
        """``send_welcome_msg``: 41050 unknown or expired code, 41051 already used."""
        code = str(body.get("welcome_code") or "")
        text = (body.get("text") or {}).get("content")
        if not code:
            return error_body(41049)
        if not text and not body.get("attachments"):
            return error_body(40063)
        with self._lock:
            expires = self.welcome_codes.get(code)
            if expires == 0:
                return error_body(41051)
            if expires is None or expires < time.time():
                return error_body(41050)
            self.welcome_codes[code] = 0
            msgid = "welcome" + secrets.token_urlsafe(12)
            kind = "text" if text else None
            self._record("externalcontact/send_welcome_msg", body, msgid, delivered=True, msgtype=kind, touser=[],
                         text=text)  # fmt: skip
        return {"errcode": 0, "errmsg": "ok"}

    # -- corp tags ------------------------------------------------------------------

    def _tag_ids(self) -> dict[str, str]:
        return {tid: name for group in self.corp_tags.values() for name, tid in group.items()}

    def tag_list(self) -> dict[str, Any]:
        """``get_corp_tag_list`` (every group)."""
        with self._lock:
            groups = [
                {"group_id": f"grp_{gname}", "group_name": gname,
                 "tag": [{"id": tid, "name": name} for name, tid in tags.items()]}
                for gname, tags in self.corp_tags.items()
            ]  # fmt: skip
        return {"errcode": 0, "errmsg": "ok", "tag_group": groups}

    def add_tags(self, body: dict[str, Any]) -> dict[str, Any]:
        """``add_corp_tag``: merges by group name and de-duplicates tag names."""
        gname = str(body.get("group_name") or "")
        names = [str(t.get("name") or "") for t in body.get("tag") or []]
        if not gname or not names or not all(names):
            return error_body(40063)
        with self._lock:
            group = self.corp_tags.setdefault(gname, {})
            if len(self._tag_ids()) + len(set(names) - set(group)) > 3000:
                return error_body(40126)
            for name in names:
                group.setdefault(name, "et" + secrets.token_hex(8))
            tags = [{"id": group[n], "name": n} for n in names]
        return {
            "errcode": 0,
            "errmsg": "ok",
            "tag_group": {"group_id": f"grp_{gname}", "group_name": gname, "tag": tags},
        }

    def mark_tag(self, body: dict[str, Any]) -> dict[str, Any]:
        """``mark_tag``: add and remove corp tags on one customer of one member."""
        add = [str(t) for t in body.get("add_tag") or []]
        remove = [str(t) for t in body.get("remove_tag") or []]
        userid, external = str(body.get("userid") or ""), str(body.get("external_userid") or "")
        if not add and not remove:
            return error_body(40063)
        if not userid or not external:
            return error_body(40096)
        with self._lock:
            known = self._tag_ids()
            if any(t not in known for t in add + remove):
                return error_body(40068)
            tags = self.customer_tags.setdefault((userid, external), set())
            tags.update(add)
            tags.difference_update(remove)
        return {"errcode": 0, "errmsg": "ok"}

    def robot(self, key: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """Group robot webhook (``/cgi-bin/webhook/send?key=``)."""
        if not key:
            return error_body(93000)
        msgtype = body.get("msgtype")
        if msgtype not in ("text", "markdown"):
            return error_body(40008)
        text = str((body.get(msgtype) or {}).get("content") or "")
        if not text:
            return error_body(44004)
        with self._lock:
            self._record("webhook/send", body, "robot" + secrets.token_urlsafe(8), delivered=True, msgtype=msgtype,
                         touser=[f"robot:{key}"], text=text)  # fmt: skip
        return {"errcode": 0, "errmsg": "ok"}

    # -- externalcontact/add_msg_template -----------------------------------------

    def msg_template(self, body: dict[str, Any]) -> dict[str, Any]:
        """``add_msg_template``: creates a send task (staff confirm it in the client)."""
        cfg = self.config
        chat_type = body.get("chat_type", "single")
        if chat_type not in ("single", "group"):
            return error_body(40063, fail_list=[])
        externals = [str(x) for x in body.get("external_userid") or []]
        sender = body.get("sender")
        text = (body.get("text") or {}).get("content")
        if not text and not body.get("attachments"):
            return error_body(40063, fail_list=[])
        if not externals and not sender:
            return error_body(40063, fail_list=[])
        if len(externals) > 10000:
            return error_body(40063, fail_list=[])
        if text and len(str(text).encode()) > 4000:
            return error_body(45002, fail_list=[])
        known = None if cfg.known_external_userids is None else set(cfg.known_external_userids)
        fail = [x for x in externals if known is not None and x not in known]
        if externals and len(fail) == len(externals):
            return error_body(41048, fail_list=fail)
        msgid = "msg" + secrets.token_urlsafe(20)
        sendable = [x for x in externals if x not in fail]
        with self._lock:
            # A task: nothing reaches the customer until the staff member confirms it.
            self._record("externalcontact/add_msg_template", body, msgid, delivered=False,
                         msgtype="text" if text else None, touser=[], text=text, sender=sender,
                         external=sendable)  # fmt: skip
            self.tasks[msgid] = dict.fromkeys(sendable, (0, 0))
        if cfg.auto_confirm:
            self.confirm(msgid)
        return {"errcode": 0, "errmsg": "ok", "fail_list": fail, "msgid": msgid}

    def confirm(self, msgid: str) -> dict[str, int]:
        """The staff member confirms a mass-send task in the client.

        Each customer gets it, or does not (over the monthly quota: status 3).

        Returns:
            external_userid -> status.
        """
        now = int(time.time())
        with self._lock:
            task = self.tasks.get(msgid)
            if task is None:
                return {}
            quota = self.config.monthly_quota
            for external, (status, _) in list(task.items()):
                if status != 0:
                    continue
                received = self.received_this_month.get(external, 0)
                if quota is not None and received >= quota:
                    task[external] = (3, 0)
                else:
                    self.received_this_month[external] = received + 1
                    task[external] = (1, now)
            for message in self.messages:
                if message.msgid == msgid:
                    message.delivered = any(status == 1 for status, _ in task.values())
            return {external: status for external, (status, _) in task.items()}

    def groupmsg_list(self, body: dict[str, Any]) -> dict[str, Any]:
        """``get_groupmsg_list_v2``: mass-send tasks created in ``[start_time, end_time]``.

        Tasks created through ``add_msg_template`` are enterprise-created (``create_type``
        0); ``filter_type`` 0 or 2 (the default) lists them, 1 (personal) does not. At most
        ``limit`` (≤ 100, default 50) per page, with ``next_cursor`` for the rest.
        """
        chat_type = body.get("chat_type") or "single"
        try:
            start, end = int(body["start_time"]), int(body["end_time"])
            filter_type = int(body.get("filter_type", 2))
            limit = min(max(int(body.get("limit") or 50), 1), 100)
            offset = int(body.get("cursor") or 0)
        except (KeyError, TypeError, ValueError):
            return error_body(40058, group_msg_list=[])
        if chat_type not in ("single", "group") or end < start or end - start > 31 * 86400:
            return error_body(40058, group_msg_list=[])
        creator = body.get("creator")
        with self._lock:
            tasks = [m for m in self.messages if m.api == "externalcontact/add_msg_template"
                     and (m.payload.get("chat_type") or "single") == chat_type and start <= int(m.at) <= end
                     and filter_type in (0, 2) and (not creator or m.sender == creator)]  # fmt: skip
        page = tasks[offset : offset + limit]
        items = [{"msgid": m.msgid, "creator": m.sender, "create_time": str(int(m.at)), "create_type": 0,
                  **({"text": m.payload["text"]} if m.payload.get("text") else {}),
                  "attachments": list(m.payload.get("attachments") or [])} for m in page]  # fmt: skip
        more = offset + limit < len(tasks)
        return {"errcode": 0, "errmsg": "ok", "next_cursor": str(offset + limit) if more else "",
                "group_msg_list": items}  # fmt: skip

    def send_result(self, body: dict[str, Any]) -> dict[str, Any]:
        """``get_groupmsg_send_result``: per-customer status of a task."""
        with self._lock:
            task = self.tasks.get(str(body.get("msgid") or ""))
            if task is None:
                return error_body(40058, send_list=[])
            rows = [{"external_userid": ext, "userid": body.get("userid"), "status": status, "send_time": sent}
                    for ext, (status, sent) in task.items()]  # fmt: skip
        return {"errcode": 0, "errmsg": "ok", "send_list": rows, "next_cursor": ""}

    def _record(
        self,
        api: str,
        body: dict[str, Any],
        msgid: str,
        *,
        delivered: bool,
        msgtype: str | None,
        touser: list[str],
        text: str | None,
        sender: str | None = None,
        external: list[str] | None = None,
        duplicate_of: str | None = None,
    ) -> None:
        self.messages.append(
            Received(
                id=len(self.messages) + 1,
                api=api,
                at=time.time(),
                msgid=msgid,
                delivered=delivered,
                msgtype=msgtype,
                touser=touser,
                sender=sender,
                external_userid=external or [],
                text=text,
                payload=body,
                duplicate_of=duplicate_of,
            )
        )

    def listing(self, *, delivered_only: bool = False, since: int = 0) -> list[dict[str, Any]]:
        """Messages received, oldest first, from the ``since``-th one received (0-based) on."""
        with self._lock:
            return [asdict(m) for m in self.messages[since:] if m.delivered or not delivered_only]

    def received(self) -> int:
        """How many messages were received so far (the ``since`` that lists only newer ones)."""
        with self._lock:
            return len(self.messages)
