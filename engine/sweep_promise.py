"""The confirmation sweep's promise to look again, which spares senders the wake-up signal.

Every ``wecom.customer`` send that leaves a task waiting must make sure a sweep round will
count it (``workflows/confirmations.py``). Signalling the sweep each time is safe but, at
tens of sends a second, a storm of signals and workflow tasks on one workflow. Instead, a
round that finds tasks waiting records a promise in Redis, and a sender that finds the
promise standing *after committing its task* skips the signal.

Why no task is left without a sweep:

- The sweep ends only after a round that withdraws the promise and then finds nothing
  waiting. A sender that saw the promise read it before that withdrawal and after its
  commit, so the count after the withdrawal sees its task, and the sweep goes on.
- Nothing re-creates the promise after the last withdrawal: the last round writes one only
  if its count finds tasks (and then it is not the last), and an earlier attempt that
  outlived its timeout and wakes late finds its promise lapsed (the Lua script refuses it).
  A round promises at most two thirds of its activity's heartbeat timeout from when it was
  first scheduled, and no retry can start before that timeout has passed.
- A sweep terminated by hand leaves its promise until it lapses (about 20 s); senders
  signal again after that, and a worker that starts while tasks wait starts the sweep.

Redis errors make senders signal (the safe side); a failed withdrawal fails the round, so
the sweep cannot end with a promise standing.
"""

from __future__ import annotations

import logging
from datetime import datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("journeys.confirmations")

# Set the promise only while its end is still ahead by Redis's own clock: a late writer
# (an attempt that outlived its heartbeat timeout) cannot extend it.
_HOLD = """
local now = redis.call('TIME')
local ttl = tonumber(ARGV[1]) - (tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
if ttl <= 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
return 1
"""


def promise_key(task_queue: str) -> str:
    """The Redis key of the sweep's promise for a task queue."""
    return f"journeys:sweep:{task_queue}"


class SweepPromise:
    """The promise of one task queue's confirmation sweep to run another round.

    Args:
        redis: Async Redis client.
        task_queue: The journey task queue (one sweep per queue).
    """

    def __init__(self, redis: Redis, task_queue: str) -> None:
        self._redis = redis
        self._key = promise_key(task_queue)
        self._hold = redis.register_script(_HOLD)

    async def hold(self, until: datetime) -> bool:
        """Promise another round, standing until ``until``; False if that time had already passed.

        A failure to write is logged and ignored: without the promise, senders signal.
        """
        until_ms = int(until.timestamp() * 1000)
        try:
            return bool(await self._hold(keys=[self._key], args=[until_ms]))
        except RedisError as exc:
            log.warning("could not record the sweep's next round; senders will signal it: %s", exc)
            return False

    async def holds(self) -> bool:
        """Whether a round is promised that will count tasks committed before now (False if unknown)."""
        try:
            return bool(await self._redis.exists(self._key))
        except RedisError:
            return False

    async def withdraw(self) -> None:
        """Withdraw the promise before the sweep's last count.

        Raises:
            RedisError: The promise may still stand, so the sweep must not end.
        """
        await self._redis.delete(self._key)
