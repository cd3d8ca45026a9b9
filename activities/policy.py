"""Delivery policy for proactive customer messages (journey-dsl §6a.5–7).

Opt-out, quiet hours (in the customer's own time zone) and frequency caps counted across
every marketing journey. The cap ledger is a Redis sorted set per customer; one Lua script
checks every cap and reserves the slot atomically, so two journeys racing for a
customer's last slot cannot both send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from engine.plan import CapPlan, QuietHoursPlan

#: How long sends stay in the ledger: longer than any sensible cap window.
LEDGER_HORIZON_S = 32 * 86400

# KEYS[1]: the customer's ledger. ARGV: now, member, horizon, then (max, per_s) pairs.
# Returns {0} when the slot is reserved (or this member already holds one), else
# {1, free_at}: the earliest time every violated cap has a free slot again.
_RESERVE = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
if redis.call('ZSCORE', KEYS[1], member) then return {0} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
local free_at = nil
for i = 4, #ARGV, 2 do
  local max = tonumber(ARGV[i])
  local per = tonumber(ARGV[i + 1])
  local floor = '(' .. tostring(now - per)
  local count = redis.call('ZCOUNT', KEYS[1], floor, '+inf')
  if count >= max then
    local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], floor, '+inf', 'WITHSCORES', 'LIMIT', count - max, 1)
    local at = tonumber(oldest[2]) + per
    if free_at == nil or at > free_at then free_at = at end
  end
end
if free_at ~= nil then return {1, tostring(free_at)} end
redis.call('ZADD', KEYS[1], now, member)
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 60)
return {0}
"""


def ledger_key(customer_id: str) -> str:
    """Redis sorted set of a customer's marketing sends (member: send key, score: time)."""
    return f"journeys:caps:{customer_id}"


def opted_out(profile: dict[str, Any]) -> bool:
    """``consent_marketing: false`` or the ``unsubscribed`` tag (journey-dsl §6a.7)."""
    return profile.get("consent_marketing") is False or "unsubscribed" in (profile.get("tags") or [])


def _hhmm(value: str) -> time:
    hour, minute = (int(x) for x in value.split(":"))
    return time(hour, minute)


def quiet_until(now: datetime, zone: ZoneInfo, quiet: QuietHoursPlan) -> datetime | None:
    """End of the quiet period ``now`` falls in (local time in ``zone``), or None if not quiet."""
    local = now.astimezone(zone)
    start, end = _hhmm(quiet.start), _hhmm(quiet.end)
    t = local.time()
    if start < end:
        inside = start <= t < end
        end_day = local.date()
    else:  # wraps midnight, e.g. 21:00-09:00
        inside = t >= start or t < end
        end_day = local.date() if t < end else local.date() + timedelta(days=1)
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=zone).astimezone(zone)


@dataclass
class CapDecision:
    """Whether a send may go out under the caps, and if not, when it may."""

    allowed: bool
    free_at: datetime | None = None


class CapLedger:
    """Per-customer frequency caps across all marketing journeys.

    Args:
        redis: Redis holding the ledgers.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._script = redis.register_script(_RESERVE)

    async def reserve(self, customer_id: str, member: str, now: datetime, caps: tuple[CapPlan, ...]) -> CapDecision:
        """Atomically check every cap and take a slot for ``member`` (idempotent per member)."""
        args: list[Any] = [now.timestamp(), member, LEDGER_HORIZON_S]
        for cap in caps:
            args += [cap.max, cap.per_s]
        result = await self._script(keys=[ledger_key(customer_id)], args=args)
        if int(result[0]) == 0:
            return CapDecision(allowed=True)
        raw = result[1].decode() if isinstance(result[1], bytes) else str(result[1])
        return CapDecision(allowed=False, free_at=datetime.fromtimestamp(float(raw), tz=UTC))

    async def record(self, customer_id: str, member: str, now: datetime) -> None:
        """Count a send that no cap governs (another journey's caps still see it)."""
        key = ledger_key(customer_id)
        await self._redis.zadd(key, {member: now.timestamp()}, nx=True)
        await self._redis.expire(key, LEDGER_HORIZON_S + 60)

    async def release(self, customer_id: str, member: str) -> None:
        """Give a slot back (the send did not go out)."""
        await self._redis.zrem(ledger_key(customer_id), member)
