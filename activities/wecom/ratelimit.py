"""Outbound rate limits, so Journeys stays under WeCom's limits instead of bouncing off them.

WeCom silently drops application messages beyond 30 a minute or 1000 an hour per member,
and answers 45009 past 10,000 calls a minute per corp and API. Each limit is a Redis
sorted set of recent calls shared by every worker; one Lua script checks all the limits
of a call and takes a slot atomically, or says how long to wait.
"""

from __future__ import annotations

import time
import uuid

from redis.asyncio import Redis

#: (max calls, window seconds) per member for application messages (wecom-reference §2.3).
PER_MEMBER = ((30, 60.0), (1000, 3600.0))
#: Per corp and API (§6), kept a little under WeCom's numbers.
PER_API = ((9000, 60.0), (140_000, 3600.0))
#: A group robot takes 20 messages a minute.
PER_ROBOT = ((20, 60.0),)

# KEYS: one sorted set per limited thing. ARGV: now, member, then per key: max, window.
# Returns 0 when every key had room (and the slot is taken in all), else seconds to wait.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local wait = 0
for i = 1, #KEYS do
  local max = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= max then
    local oldest = redis.call('ZRANGE', KEYS[i], count - max, count - max, 'WITHSCORES')
    local at = tonumber(oldest[2]) + window - now
    if at > wait then wait = at end
  end
end
if wait > 0 then return tostring(wait) end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('EXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2 + 2 * i])) + 1)
end
return '0'
"""


#: A limited thing's key and its (max calls, window seconds) pairs.
Limit = tuple[str, tuple[tuple[int, float], ...]]


class RateLimited(Exception):
    """No slot now; retry after ``retry_after_s``."""

    def __init__(self, what: str, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"{what}: rate limit reached, retry in {retry_after_s:.1f}s")


class RateLimiter:
    """Sliding-window limits shared across processes through Redis.

    Args:
        redis: Redis.
    """

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_ACQUIRE)

    async def acquire(self, what: str, limits: list[Limit]) -> None:
        """Take a slot in every ``(key, ((max, window_s), ...))`` at once.

        Raises:
            RateLimited: A limit is full; nothing was taken.
        """
        keys: list[str] = []
        args: list[object] = [time.time(), uuid.uuid4().hex]
        for key, windows in limits:
            for max_calls, window in windows:
                keys.append(f"wecom:rate:{key}:{window:g}")
                args += [max_calls, window]
        if not keys:
            return
        wait = float(await self._script(keys=keys, args=args))
        if wait > 0:
            raise RateLimited(what, wait)
