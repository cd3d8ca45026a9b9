"""Which engine events need routing: decided for a whole batch against the real Redis index."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis

from engine import routing
from engine.db import make_engine
from engine.dispatch import Dispatcher, IncomingEvent
from engine.embedded import ChildProcess
from engine.store import Store


def sent(customer: str, source: str) -> IncomingEvent:
    return IncomingEvent(event_id=f"{customer}:sent", customer_id=customer, name="message.sent",
                         properties={"workflow_id": source}, timestamp=datetime(2026, 11, 23, tzinfo=UTC))  # fmt: skip


async def test_a_batch_routes_only_the_events_another_enrollment_listens_for(
    redis_server: ChildProcess, tmp_path: Path
) -> None:
    redis = Redis.from_url(f"redis://127.0.0.1:{redis_server.port}/{1 + uuid.uuid4().int % 14}")
    await redis.flushdb()
    store = Store(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    # a: only the enrollment that sent it listens; b: another enrollment waits for it; c: nobody.
    await routing.add_active(redis, "a", "wf-a", ["message.sent"])
    await routing.add_active(redis, "b", "wf-b-other", ["message.*"])
    await routing.add_active(redis, "c", "wf-c-other", ["order.paid"])
    dispatcher = Dispatcher(store, redis, client=None, task_queue="q")  # type: ignore[arg-type]
    # No Temporal client: routing b's event fails, so it stays queued for recovery.
    accepted = await dispatcher.accept([sent("a", "wf-a"), sent("b", "wf-b"), sent("c", "wf-c")])
    assert [(a.event_id, a.deferred) for a in accepted] == [("a:sent", False), ("b:sent", True), ("c:sent", False)]
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert [row.event_id for row in store.undispatched_events(received_before=later)] == ["b:sent"]
    await redis.aclose()
