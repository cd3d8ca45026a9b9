"""Events the engine itself emits (journey-dsl §6), routed like any other event.

Ids are derived from what happened (enrollment, step visit), so a retried activity
emits each event once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.dispatch import ENGINE_EVENTS, Dispatcher, IncomingEvent

__all__ = ["ENGINE_EVENTS", "EngineEvents"]


class EngineEvents:
    """Emits engine events through a dispatcher.

    Args:
        dispatcher: Stores and routes the events.
    """

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    async def emit(self, *, event_id: str, customer_id: str, name: str, at: datetime,
                   properties: dict[str, Any]) -> None:  # fmt: skip
        """Store and route one engine event (a duplicate id is ignored)."""
        await self._dispatcher.accept(
            [IncomingEvent(event_id=event_id, customer_id=customer_id, name=name, properties=properties, timestamp=at)]
        )
