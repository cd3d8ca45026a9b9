"""Workflow ids and the Redis index of each customer's active enrollments.

Events reach running enrollments by signal, never by polling: the index tells the
dispatcher which workflows to signal for a customer.
"""

from __future__ import annotations

from redis.asyncio import Redis


def _part(value: str) -> str:
    # '/' separates id parts; escape it (and the escape char) inside customer ids and keys.
    return value.replace("%", "%25").replace("/", "%2F")


def enrollment_workflow_id(journey_id: str, customer_id: str, key: str | None = None) -> str:
    """``journey/{journey_id}/{customer_id}[/{key}]``: one running enrollment per scope."""
    wid = f"journey/{journey_id}/{_part(customer_id)}"
    return f"{wid}/{_part(key)}" if key is not None else wid


def active_key(customer_id: str) -> str:
    """Redis set of the workflow ids of a customer's running enrollments."""
    return f"journeys:active:{customer_id}"


async def add_active(redis: Redis, customer_id: str, workflow_id: str) -> None:
    """Index a running enrollment."""
    await redis.sadd(active_key(customer_id), workflow_id)  # type: ignore[misc]


async def remove_active(redis: Redis, customer_id: str, workflow_id: str) -> None:
    """Drop an enrollment from the index (it ended, or no longer exists)."""
    await redis.srem(active_key(customer_id), workflow_id)  # type: ignore[misc]


async def active_workflows(redis: Redis, customer_id: str) -> list[str]:
    """Workflow ids of a customer's running enrollments, sorted."""
    members = await redis.smembers(active_key(customer_id))  # type: ignore[misc]
    return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)


PLANS_EPOCH_KEY = "journeys:plans:epoch"


async def bump_plans_epoch(redis: Redis) -> None:
    """Tell every dispatcher that the set of active journeys changed."""
    await redis.incr(PLANS_EPOCH_KEY)
