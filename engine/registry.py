"""Journey activities: typed Python functions that journeys call by name.

A journey's ``activity: crm.create_lead`` step names an entry of this registry. The
compiler checks ``with:`` against the entry's input model before anything runs; the
worker turns every entry into a Temporal activity of the same (stable) name.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from pydantic import BaseModel

from engine.errors import JourneyError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


class RegistryError(JourneyError):
    """A journey activity is declared wrongly (raised at import time)."""


class ActivityContext(Protocol):
    """What a journey activity receives besides its input."""

    customer_id: str
    enrollment_id: str
    journey_id: str
    step_id: str
    idempotency_key: str
    customer: dict[str, Any]

    async def emit(self, name: str, properties: dict[str, Any]) -> None:
        """Submit an event for this customer (it may trigger or advance journeys)."""
        ...

    def services(self) -> Any:
        """The worker's shared clients (store, redis, http, settings)."""
        ...


ActivityFn = Callable[[Any, ActivityContext], Awaitable[Any]]


@dataclass(frozen=True)
class ActivityDefinition:
    """One registered journey activity.

    Attributes:
        name: Namespaced, stable name (``crm.create_lead``); it is recorded in history.
        input_model: Pydantic model that ``with:`` must satisfy.
        fn: ``async def fn(input, ctx) -> result`` (result: JSON-serializable or a model).
        description: One line for ``journeys activities`` and the API.
        timeout: Default start-to-close timeout (a step's ``timeout`` overrides it).
        max_attempts: Default retry attempts (a step's ``retry`` overrides it).
    """

    name: str
    input_model: type[BaseModel]
    fn: ActivityFn
    description: str
    timeout: timedelta = timedelta(seconds=30)
    max_attempts: int = 5


class ActivityRegistry:
    """Name -> definition, with declaration checks."""

    def __init__(self) -> None:
        self._defs: dict[str, ActivityDefinition] = {}

    def add(self, definition: ActivityDefinition) -> None:
        """Register a definition.

        Raises:
            RegistryError: Malformed name or input model, not an async function, or a
                different function already registered under that name.
        """
        if not NAME_PATTERN.match(definition.name):
            raise RegistryError(
                f"activity name {definition.name!r} must be namespaced lowercase, e.g. 'crm.create_lead'"
            )
        if not (isinstance(definition.input_model, type) and issubclass(definition.input_model, BaseModel)):
            raise RegistryError(f"activity {definition.name!r}: input must be a pydantic model class")
        if not inspect.iscoroutinefunction(definition.fn):
            raise RegistryError(f"activity {definition.name!r}: the function must be 'async def'")
        existing = self._defs.get(definition.name)
        if existing is not None and existing.fn is not definition.fn:
            raise RegistryError(f"activity {definition.name!r} is already registered by {existing.fn.__module__}")
        self._defs[definition.name] = definition

    def get(self, name: str) -> ActivityDefinition | None:
        """The definition named ``name``, if registered."""
        return self._defs.get(name)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._defs)

    def definitions(self) -> list[ActivityDefinition]:
        """Every definition, by name."""
        return [self._defs[n] for n in self.names()]


REGISTRY = ActivityRegistry()


def journey_activity(
    name: str,
    *,
    input: type[BaseModel],  # noqa: A002 - the declaration reads best as input=Model
    description: str | None = None,
    timeout: timedelta = timedelta(seconds=30),
    max_attempts: int = 5,
    registry: ActivityRegistry = REGISTRY,
) -> Callable[[ActivityFn], ActivityFn]:
    """Declare an async function as a journey activity.

    Example:
        ``@journey_activity("crm.create_lead", input=CreateLead)``
        ``async def create_lead(inp: CreateLead, ctx: ActivityContext) -> dict: ...``
    """

    def register(fn: ActivityFn) -> ActivityFn:
        doc = (inspect.getdoc(fn) or "").strip().splitlines()
        registry.add(
            ActivityDefinition(
                name=name,
                input_model=input,
                fn=fn,
                description=description or (doc[0] if doc else name),
                timeout=timeout,
                max_attempts=max_attempts,
            )
        )
        return fn

    return register


def load_builtin_activities() -> ActivityRegistry:
    """Import the built-in activity modules (they register on import) and return the registry."""
    import activities.builtin  # noqa: F401  (registration side effect)

    return REGISTRY
