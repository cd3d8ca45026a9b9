"""Workflow ids and the Redis index of who listens for which events.

Events reach running enrollments by signal, never by polling. Each customer has a Redis
hash of their running enrollments, each with the event patterns its plan waits on
(``goal``, ``exit_when``, ``wait_for``); an event is signalled only to enrollments that
listen for it, so a customer in many journeys does not wake all of them on every event.
"""

from __future__ import annotations

import json

from redis.asyncio import Redis

from engine.plan import event_name_matches


def _part(value: str) -> str:
    # '/' separates id parts; escape it (and the escape char) inside customer ids and keys.
    return value.replace("%", "%25").replace("/", "%2F")


def enrollment_workflow_id(journey_id: str, customer_id: str, key: str | None = None) -> str:
    """``journey/{journey_id}/{customer_id}[/{key}]``: one running enrollment per scope."""
    wid = f"journey/{journey_id}/{_part(customer_id)}"
    return f"{wid}/{_part(key)}" if key is not None else wid


def listeners_key(customer_id: str) -> str:
    """Redis hash: workflow id of a running enrollment -> JSON list of event patterns."""
    return f"journeys:listen:{customer_id}"


async def add_active(redis: Redis, customer_id: str, workflow_id: str, listens: list[str]) -> None:
    """Index a running enrollment with the events it waits on (nothing to index if none)."""
    if listens:
        await redis.hset(listeners_key(customer_id), workflow_id, json.dumps(sorted(set(listens))))  # type: ignore[misc]


async def remove_active(redis: Redis, customer_id: str, workflow_id: str) -> None:
    """Drop an enrollment from the index (it ended, or no longer exists)."""
    await redis.hdel(listeners_key(customer_id), workflow_id)  # type: ignore[misc]


async def listening_workflows(redis: Redis, customer_id: str, event_name: str) -> list[str]:
    """Workflow ids of the customer's running enrollments that wait on ``event_name``, sorted."""
    return listening_in(await redis.hgetall(listeners_key(customer_id)), event_name)  # type: ignore[misc]


async def listener_indexes(redis: Redis, customer_ids: list[str], *,
                           also_get: str) -> tuple[bytes | None, dict[str, dict[bytes, bytes]]]:  # fmt: skip
    """Each customer's listener index (see ``listening_in``), and one more key's value, in one round trip.

    Returns:
        The value of ``also_get``, and the indexes by customer id.
    """
    pipe = redis.pipeline(transaction=False)
    pipe.get(also_get)
    for customer_id in customer_ids:
        pipe.hgetall(listeners_key(customer_id))
    value, *indexes = await pipe.execute()
    return value, dict(zip(customer_ids, indexes, strict=True))


def listening_in(index: dict[bytes, bytes], event_name: str) -> list[str]:
    """Workflow ids in a customer's listener index that wait on ``event_name``, sorted."""
    out = []
    for raw_wid, raw_patterns in index.items():
        wid = raw_wid.decode() if isinstance(raw_wid, bytes) else str(raw_wid)
        try:
            patterns = json.loads(raw_patterns)
        except ValueError:
            patterns = ["*"]
        if any(event_name_matches(p, event_name) for p in patterns):
            out.append(wid)
    return sorted(out)


PLANS_EPOCH_KEY = "journeys:plans:epoch"


async def bump_plans_epoch(redis: Redis) -> None:
    """Tell every dispatcher that the set of active journeys changed."""
    await redis.incr(PLANS_EPOCH_KEY)
