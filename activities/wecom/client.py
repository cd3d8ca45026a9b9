"""Async WeCom client: per-app tokens cached in Redis with single-flight refresh.

WeCom answers HTTP 200 for errors and puts the outcome in ``errcode``. This client turns
every non-zero errcode into ``WeComError`` carrying whether a retry can help, so the
activity layer can hand Temporal the right retry decision.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from redis.asyncio import Redis

from activities.wecom.ratelimit import PER_API, PER_MEMBER, PER_ROBOT, Limit, RateLimiter
from engine import metrics

#: Codes meaning "the token is bad": refresh it and retry the call once.
TOKEN_ERRCODES = frozenset({40014, 42001})
#: Seconds a process reuses a token it read from Redis before reading it again.
LOCAL_TOKEN_S = 30.0
#: Codes where waiting and retrying can succeed (busy, rate limits, dispatch in progress).
RETRYABLE_ERRCODES = frozenset({-1, 6000, 41063, 41096, 45009, 45033})

App = Literal["app", "contact"]

# Delete the cached token only if it is still the one that failed (another worker may
# already have refreshed it).
_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class WeComError(Exception):
    """WeCom refused a call.

    Attributes:
        errcode: WeCom's error code (``-2`` for transport/HTTP failures).
        errmsg: WeCom's message.
        retryable: True when retrying later can succeed.
        body: The full response body, if any.
    """

    def __init__(self, errcode: int, errmsg: str, *, body: dict[str, Any] | None = None) -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.body = body or {}
        metrics.WECOM_ERRORS.labels(str(errcode)).inc()
        # A token error that survives the one refresh (WeCom revoked the new token too) is
        # still transient: a later attempt gets a fresh token.
        self.retryable = errcode in RETRYABLE_ERRCODES or errcode in TOKEN_ERRCODES or errcode == -2
        super().__init__(f"WeCom errcode {errcode}: {errmsg}")


@dataclass(frozen=True)
class WeComCredentials:
    """Where and who we are in WeCom."""

    base_url: str
    corp_id: str
    agent_id: int
    app_secret: str
    contact_secret: str

    def secret(self, app: App) -> str:
        """The secret of one app (each app has its own token)."""
        return self.app_secret if app == "app" else self.contact_secret


class WeComClient:
    """Calls the WeCom server API.

    Args:
        http: Shared httpx client (connection pooling).
        redis: Redis for the token cache and refresh lock.
        creds: Corp, agent and secrets.
    """

    def __init__(self, http: httpx.AsyncClient, redis: Redis, creds: WeComCredentials, *,
                 rate_limits: bool = True) -> None:  # fmt: skip
        self._http = http
        self._redis = redis
        self.creds = creds
        self._limits = RateLimiter(redis) if rate_limits else None
        # token -> until (monotonic): a Redis read per call was a share of a busy worker.
        self._tokens: dict[App, tuple[str, float]] = {}

    @property
    def redis(self) -> Redis:
        """The Redis this client caches tokens in."""
        return self._redis

    # -- tokens -------------------------------------------------------------------

    def _token_key(self, app: App) -> str:
        who = str(self.creds.agent_id) if app == "app" else "contact"
        return f"wecom:token:{self.creds.corp_id}:{who}"

    async def token(self, app: App) -> str:
        """A valid access token for ``app``; at most one process fetches it at a time.

        Kept in the process for ``LOCAL_TOKEN_S`` after it was read from Redis. A token
        another process replaced meanwhile is refused by WeCom, and ``call`` then drops it
        and reads the new one.
        """
        local = self._tokens.get(app)
        if local is not None and local[1] > time.monotonic():
            return local[0]
        token = await self._shared_token(app)
        self._tokens[app] = (token, time.monotonic() + LOCAL_TOKEN_S)
        return token

    async def _shared_token(self, app: App) -> str:
        key = self._token_key(app)
        cached = await self._redis.get(key)
        if cached:
            return cached.decode() if isinstance(cached, bytes) else str(cached)
        lock = f"{key}:lock"
        for _ in range(200):  # ~10 s at most waiting for another process's refresh
            if await self._redis.set(lock, "1", nx=True, px=10_000):
                try:
                    cached = await self._redis.get(key)  # someone may have finished meanwhile
                    if cached:
                        return cached.decode() if isinstance(cached, bytes) else str(cached)
                    return await self._fetch_token(app, key)
                finally:
                    await self._redis.delete(lock)
            await asyncio.sleep(0.05)
            cached = await self._redis.get(key)
            if cached:
                return cached.decode() if isinstance(cached, bytes) else str(cached)
        raise WeComError(-2, "timed out waiting for another process to refresh the access token")

    async def _fetch_token(self, app: App, key: str) -> str:
        body = await self._get_json(
            "/cgi-bin/gettoken", params={"corpid": self.creds.corp_id, "corpsecret": self.creds.secret(app)}
        )
        if body.get("errcode", 0) != 0:
            # 40001/40013/40091 are configuration errors: never retry them.
            raise WeComError(int(body["errcode"]), str(body.get("errmsg", "")), body=body)
        token = str(body["access_token"])
        expires_in = int(body.get("expires_in", 7200))
        # Refresh well before WeCom's expiry; it may also revoke early (handled on use).
        ttl = max(30, expires_in - 300) if expires_in > 600 else max(1, int(expires_in * 0.8))
        await self._redis.set(key, token, ex=ttl)
        return token

    async def _invalidate(self, app: App, token: str) -> None:
        if self._tokens.get(app, ("", 0.0))[0] == token:
            del self._tokens[app]
        await self._redis.eval(_COMPARE_AND_DELETE, 1, self._token_key(app), token)  # type: ignore[misc]

    # -- calls --------------------------------------------------------------------

    async def _get_json(self, path: str, *, params: dict[str, Any]) -> dict[str, Any]:
        return await self._request("GET", path, params=params, body=None)

    async def _request(self, method: str, path: str, *, params: dict[str, Any], body: Any) -> dict[str, Any]:
        url = self.creds.base_url.rstrip("/") + path
        try:
            if body is None:
                resp = await self._http.request(method, url, params=params)
            else:
                content = json.dumps(body, ensure_ascii=False).encode()
                resp = await self._http.request(
                    method, url, params=params, content=content, headers={"Content-Type": "application/json"}
                )
        except httpx.TransportError as exc:
            raise WeComError(-2, f"transport error: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 500:
            raise WeComError(-2, f"HTTP {resp.status_code} from WeCom")
        if resp.status_code >= 400:
            raise WeComError(-3, f"HTTP {resp.status_code} from WeCom: {resp.text[:200]}")
        try:
            data = resp.json()
        except ValueError as exc:
            raise WeComError(-2, f"WeCom answered non-JSON: {resp.text[:200]}") from exc
        if not isinstance(data, dict):
            raise WeComError(-2, "WeCom answered a non-object JSON body")
        return data

    async def call(
        self, app: App, path: str, body: dict[str, Any], *, extra_limits: list[Limit] | None = None
    ) -> dict[str, Any]:
        """POST ``body`` to ``path`` with the app's token; refresh and retry once on token errors.

        Returns:
            The response body (errcode 0).

        Raises:
            WeComError: Any non-zero errcode, or a transport failure.
            RateLimited: Our own limits say wait (nothing was sent).
        """
        limits = [(f"{self.creds.corp_id}:{path}", PER_API), *(extra_limits or [])]
        if self._limits is not None:
            await self._limits.acquire(path, limits)
        for attempt in (1, 2):
            token = await self.token(app)
            data = await self._request("POST", path, params={"access_token": token}, body=body)
            code = int(data.get("errcode", 0))
            if code == 0:
                return data
            if code in TOKEN_ERRCODES and attempt == 1:
                await self._invalidate(app, token)
                continue
            raise WeComError(code, str(data.get("errmsg", "")), body=data)
        raise AssertionError("unreachable")  # pragma: no cover

    async def send_app_message(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``message/send`` (application message to staff members), within the per-member limits."""
        members = [u.strip().lower() for u in str(payload.get("touser") or "").split("|") if u.strip()]
        per_member = [(f"{self.creds.corp_id}:{self.creds.agent_id}:member:{m}", PER_MEMBER) for m in members]
        return await self.call(
            "app", "/cgi-bin/message/send", {"agentid": self.creds.agent_id, **payload}, extra_limits=per_member
        )

    async def send_welcome_msg(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``externalcontact/send_welcome_msg`` with the add event's welcome code."""
        return await self.call("contact", "/cgi-bin/externalcontact/send_welcome_msg", payload)

    async def group_robot(self, key: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A group robot message (robots authenticate with their key, not a token)."""
        if self._limits is not None:
            await self._limits.acquire("group robot", [(f"robot:{key}", PER_ROBOT)])
        data = await self._request("POST", "/cgi-bin/webhook/send", params={"key": key}, body=payload)
        code = int(data.get("errcode", 0))
        if code != 0:
            raise WeComError(code, str(data.get("errmsg", "")), body=data)
        return data

    async def tag_ids(self, names: list[str], *, group: str = "Journeys") -> dict[str, str]:
        """Corp tag ids for tag names, creating missing tags (in ``group``) on first use.

        Ids are cached in a Redis hash shared by all workers.
        """
        cache = f"wecom:tags:{self.creds.corp_id}"
        wanted = sorted(set(names))
        if not wanted:
            return {}
        cached = await self._redis.hmget(cache, wanted)  # type: ignore[misc]
        ids = {n: (c.decode() if isinstance(c, bytes) else c) for n, c in zip(wanted, cached, strict=True) if c}
        missing = [n for n in wanted if n not in ids]
        if missing:
            listing = await self.call("contact", "/cgi-bin/externalcontact/get_corp_tag_list", {})
            for grp in listing.get("tag_group") or []:
                for tag in grp.get("tag") or []:
                    if tag.get("name") in missing:
                        ids[tag["name"]] = tag["id"]
            still = [n for n in missing if n not in ids]
            if still:
                created = await self.call("contact", "/cgi-bin/externalcontact/add_corp_tag",
                                          {"group_name": group, "tag": [{"name": n} for n in still]})  # fmt: skip
                for tag in (created.get("tag_group") or {}).get("tag") or []:
                    ids[tag["name"]] = tag["id"]
            await self._redis.hset(cache, mapping={n: ids[n] for n in missing if n in ids})  # type: ignore[misc]
        return ids

    async def mark_tag(self, userid: str, external_userid: str, add: list[str], remove: list[str]) -> None:
        """Add and remove corp tags (by name) on a customer of a staff member."""
        ids = await self.tag_ids([*add, *remove])
        await self.call("contact", "/cgi-bin/externalcontact/mark_tag", {
            "userid": userid, "external_userid": external_userid,
            "add_tag": [ids[n] for n in add if n in ids], "remove_tag": [ids[n] for n in remove if n in ids],
        })  # fmt: skip

    async def groupmsg_send_result(self, msgid: str, userid: str) -> dict[str, Any]:
        """``get_groupmsg_send_result``: per-customer status of a mass-send task."""
        return await self.call(
            "contact",
            "/cgi-bin/externalcontact/get_groupmsg_send_result",
            {"msgid": msgid, "userid": userid, "limit": 1000},
        )

    async def groupmsg_list(self, start_time: int, end_time: int, *, cursor: str = "") -> dict[str, Any]:
        """``get_groupmsg_list_v2``: enterprise-created customer mass sends in a time range (one page)."""
        body = {"chat_type": "single", "start_time": start_time, "end_time": end_time, "filter_type": 0,
                "limit": 100, **({"cursor": cursor} if cursor else {})}  # fmt: skip
        return await self.call("contact", "/cgi-bin/externalcontact/get_groupmsg_list_v2", body)

    async def add_msg_template(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``externalcontact/add_msg_template`` (a send task to customers, confirmed by staff)."""
        return await self.call("contact", "/cgi-bin/externalcontact/add_msg_template", payload)
