"""Registered journey activities, served as Temporal activities of the same name.

The wrapper renders templated ``with`` values against the enrollment (fresh profile),
validates them against the activity's input model (a failure is a clear, non-retryable
error, so the step parks with that reason), and hands the function a context with the
idempotency key and the worker's clients. Activities declared as methods are called on
one instance of their class per worker, built with the clients its constructor names.
A ``PermanentActivityError`` becomes a non-retryable failure of its ``code``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import rule_context
from engine.dispatch import Dispatcher, IncomingEvent
from engine.errors import PermanentActivityError
from engine.registry import INJECTABLE, ActivityDefinition, ActivityFn, ActivityRegistry, check_injectable
from engine.runtime import Runtime
from rules import RuleError
from rules import cache as rule_cache
from workflows.messages import ActivityCall


class Services:
    """The worker's shared clients, as journey activities see them.

    Attributes:
        rt: The process runtime (``store``, ``redis``, ``http``, ``settings``, ``wecom``).
        dispatcher: Routes events activities emit.
    """

    def __init__(self, rt: Runtime, dispatcher: Dispatcher) -> None:
        self.rt = rt
        self.dispatcher = dispatcher
        self.store = rt.store
        self.redis = rt.redis
        self.http = rt.http
        self.settings = rt.settings

    async def increment_attribute(self, customer_id: str, attribute: str, by: float) -> float:
        """Atomically add ``by`` to a numeric attribute (missing or non-numeric counts as 0)."""
        result: dict[str, float] = {}

        def change(profile: dict[str, Any]) -> dict[str, Any]:
            current = profile.get(attribute)
            base = current if isinstance(current, int | float) and not isinstance(current, bool) else 0
            value = base + by
            result["value"] = int(value) if float(value).is_integer() else value
            return {**profile, attribute: result["value"]}

        await self.store.offload(self.store.update_customer, customer_id, change)
        return result["value"]


@dataclass
class CallContext:
    """``ActivityContext`` for one call of a journey activity."""

    customer_id: str
    enrollment_id: str
    journey_id: str
    step_id: str
    idempotency_key: str
    customer: dict[str, Any]
    now: datetime
    _services: Services = field(repr=False)
    attempt: int = 1

    async def emit(self, name: str, properties: dict[str, Any]) -> None:
        """Submit an event for this customer; retries of the same call emit it once."""
        await self._services.dispatcher.accept([IncomingEvent(
            event_id=f"{self.idempotency_key}:{name}", customer_id=self.customer_id, name=name,
            properties=dict(properties), timestamp=self.now,
        )])  # fmt: skip

    def services(self) -> Services:
        """The worker's shared clients."""
        return self._services


def temporal_activity(definition: ActivityDefinition, services: Services,
                      instances: dict[type, object] | None = None) -> Callable[..., Any]:  # fmt: skip
    """Wrap a registered journey activity as a Temporal activity named after it.

    Args:
        definition: The journey activity.
        services: The worker's clients.
        instances: Objects already built for method activities, by class (shared so one
            class serving several activities is built once).
    """
    fn = _bind(definition, services, {} if instances is None else instances)

    async def run(call: ActivityCall) -> Any:
        store = services.store
        customer = await store.offload(store.ensure_customer, call.context.customer_id)
        ctx = rule_context(store, call.context, customer=customer)
        try:
            rendered = rule_cache.render(call.with_, ctx, strict=call.strict)
        except RuleError as exc:
            raise ApplicationError(exc.message, type="TemplateError", non_retryable=True) from exc
        try:
            inp = definition.input_model.model_validate(rendered)
        except ValidationError as exc:
            # Templated values are only known now; name the field, the rule and what it rendered to.
            problems = "; ".join(
                f"with.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                + (f" (rendered {_short(e['input'])})" if e["type"] != "missing" else "")
                for e in exc.errors()
            )
            raise ApplicationError(
                f"{definition.name} input after rendering is invalid: {problems}", type="InvalidActivityInput",
                non_retryable=True,
            ) from exc  # fmt: skip
        call_ctx = CallContext(
            customer_id=call.context.customer_id, enrollment_id=call.enrollment_id, journey_id=call.journey_id,
            step_id=call.step_id, idempotency_key=call.idempotency_key, customer=customer,
            now=datetime.fromisoformat(call.context.now), _services=services, attempt=activity.info().attempt,
        )  # fmt: skip
        try:
            result = await fn(inp, call_ctx)
        except PermanentActivityError as exc:
            # Retrying cannot help: fail the step now with the plugin's own words.
            details = [exc.details] if exc.details else []
            raise ApplicationError(exc.message, *details, type=exc.code, non_retryable=True) from exc
        return result.model_dump(mode="json") if isinstance(result, BaseModel) else result

    run.__name__ = definition.name.replace(".", "_")
    run.__doc__ = definition.description
    return activity.defn(name=definition.name)(run)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bind(definition: ActivityDefinition, services: Services, instances: dict[type, object]) -> ActivityFn:
    """The callable ``(input, ctx)`` for a definition: the function, or the method of its class's instance."""
    if not definition.is_method:
        return definition.fn
    owner = definition.owner
    if owner is None:
        raise TypeError(f"activity {definition.name!r} is a method outside a class")
    if owner not in instances:
        check_injectable(owner, definition.name)
        clients = {"http": services.http, "redis": services.redis, "settings": services.settings,
                   "store": services.store, "services": services}  # fmt: skip
        assert set(clients) == set(INJECTABLE)
        wanted = inspect.signature(owner).parameters
        instances[owner] = owner(**{k: v for k, v in clients.items() if k in wanted})
    return definition.fn.__get__(instances[owner], owner)  # type: ignore[no-any-return]


def registered_activities(registry: ActivityRegistry, services: Services) -> list[Callable[..., Any]]:
    """A Temporal activity for every journey activity in ``registry``."""
    instances: dict[type, object] = {}
    return [temporal_activity(d, services, instances) for d in registry.definitions()]
