"""Event intake."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body

from api.deps import DispatcherDep, MarketerDep
from api.models import EventAccepted, EventBatch, EventIn, EventsAccepted
from engine.dispatch import IncomingEvent

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post("", status_code=202, response_model=EventsAccepted)
async def post_events(
    dispatcher: DispatcherDep, _: MarketerDep, body: Annotated[EventIn | EventBatch, Body()]
) -> EventsAccepted:
    """Accept one event or ``{"events": [...]}``; idempotent on ``event_id``.

    202 means every event is durably recorded and routed; a repeated ``event_id`` is
    reported as ``duplicate`` and not routed again.
    """
    events = body.events if isinstance(body, EventBatch) else [body]
    incoming = [
        IncomingEvent(
            event_id=e.event_id or f"gen-{uuid.uuid4()}",
            customer_id=e.customer_id,
            name=e.name,
            properties=e.properties,
            timestamp=e.timestamp,
        )
        for e in events
    ]
    results = await dispatcher.accept(incoming)
    return EventsAccepted(accepted=[EventAccepted.model_validate(r, from_attributes=True) for r in results])
