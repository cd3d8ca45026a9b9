"""Test journeys that call activities, with chosen activities replaced by stand-ins.

A stand-in is registered under the production name, with the production input model by
default, so ``with:`` is checked at compile time and validated after rendering exactly as
in production; only the function behind the name changes. The journeys run on Temporal's
time-skipping test server with the production workflow and the other activities (the
same machinery as ``journeys simulate``), so a journey that waits days finishes in seconds.

Example:
    .. code-block:: python

        from engine.testing import run_journeys, stand_in

        async def test_lead_is_created_once() -> None:
            crm = stand_in("crm.create_lead", result={"lead_id": "L-1", "created": True})
            result = await run_journeys([JOURNEY], SCENARIO, stand_ins=[crm])
            assert [c.input["phone"] for c in crm.calls] == ["13800000000"]
            assert result["enrollments"][0]["status"] == "exited"
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from engine.compiler import compile_text
from engine.loader import read_source
from engine.plan import JourneyPlan
from engine.registry import ActivityContext, ActivityDefinition, ActivityRegistry, RegistryError, load_activities
from engine.runtime import Runtime
from engine.scenario import Scenario
from engine.simulate import simulate
from engine.temporal import query_status
from engine.yamlsrc import load_yaml

#: Where a scenario's clock starts unless it says otherwise (a Monday, 10:00 in Shanghai).
DEFAULT_START = "2026-01-05T10:00:00+08:00"

StandInFn = Callable[[Any, ActivityContext], Awaitable[Any]]


@dataclass(frozen=True)
class RecordedCall:
    """One call a stand-in received.

    Attributes:
        input: The validated input, as a JSON-friendly dict (templates rendered).
        idempotency_key: The call's ``ctx.idempotency_key``.
        customer_id: The enrolled customer.
        step_id: The journey step.
        attempt: Temporal's attempt number (2 and up for retries).
    """

    input: dict[str, Any]
    idempotency_key: str
    customer_id: str
    step_id: str
    attempt: int


@dataclass
class StandIn:
    """A stand-in activity and the calls it received.

    Attributes:
        name: The activity name it replaces.
        definition: What the worker registers under that name.
        calls: Every call, in order (retries included).
    """

    name: str
    definition: ActivityDefinition
    calls: list[RecordedCall] = field(default_factory=list)


def stand_in(
    name: str,
    fn: StandInFn | None = None,
    *,
    result: Any = None,
    input: type[BaseModel] | None = None,  # noqa: A002 - mirrors journey_activity
    registry: ActivityRegistry | None = None,
) -> StandIn:
    """A stand-in for the activity ``name`` that records its calls.

    Args:
        name: The activity to replace (need not be registered if ``input`` is given).
        fn: ``async def fn(input, ctx)`` to run; raise ``PermanentActivityError`` or any
            exception to exercise failure paths. Without it the stand-in returns ``result``.
        result: What to return when there is no ``fn`` (a deep copy each call).
        input: Input model (default: the registered activity's, so ``with:`` is checked as in production).
        registry: Where to look the production activity up (default: every discovered activity).

    Raises:
        RegistryError: ``name`` is not registered and no ``input`` is given.
    """
    real = (registry or load_activities()).get(name)
    model = input or (real.input_model if real else None)
    if model is None:
        raise RegistryError(f"no activity {name!r} is registered; pass input= to stand in for it")
    holder: list[StandIn] = []

    async def run(inp: BaseModel, ctx: ActivityContext) -> Any:
        holder[0].calls.append(RecordedCall(
            input=inp.model_dump(mode="json"), idempotency_key=ctx.idempotency_key, customer_id=ctx.customer_id,
            step_id=ctx.step_id, attempt=ctx.attempt,
        ))  # fmt: skip
        if fn is not None:
            return await fn(inp, ctx)
        return copy.deepcopy(result)

    definition = ActivityDefinition(
        name=name, input_model=model, fn=run, description=f"stand-in for {name}", origin="stand-in",
        timeout=real.timeout if real else ActivityDefinition.timeout,
        retry=real.retry if real else ActivityDefinition.retry,
    )  # fmt: skip
    holder.append(StandIn(name=name, definition=definition))
    return holder[0]


def registry_with(stand_ins: Iterable[StandIn], base: ActivityRegistry | None = None) -> ActivityRegistry:
    """Every discovered activity (or ``base``), with ``stand_ins`` under their names."""
    return (base or load_activities()).replaced(s.definition for s in stand_ins)


async def run_journeys(
    journeys: Sequence[str | Path],
    scenario: str | Mapping[str, Any],
    *,
    stand_ins: Iterable[StandIn] = (),
    registry: ActivityRegistry | None = None,
) -> dict[str, Any]:
    """Run journeys through a scenario on the time-skipping server, with stand-in activities.

    Args:
        journeys: Journey YAML texts or files.
        scenario: A scenario (``journey-dsl.md`` §7) as YAML text or a mapping; ``journey:``
            may be left out and ``start:`` defaults to ``DEFAULT_START``.
        stand_ins: Activities to replace (see ``stand_in``).
        registry: Base registry (default: every discovered activity).

    Returns:
        The ``journeys simulate --json`` contract (``sends`` and ``enrollments``), plus
        ``attention``: ``{"customer", "journey", "reason"}`` of every enrollment left
        ``needs_attention``, with the reason an operator would see.

    Raises:
        SpecError: A journey does not compile (against the registry with the stand-ins).
    """
    reg = registry_with(stand_ins, registry)
    compiled: list[tuple[str, JourneyPlan]] = []
    for i, journey in enumerate(journeys):
        is_file = isinstance(journey, Path)
        text = read_source(journey) if is_file else textwrap.dedent(str(journey))
        source = str(journey) if is_file else f"<journey {i}>"
        compiled.append((text, compile_text(text, source=source, registry=reg)))
    if isinstance(scenario, str):
        data, _ = load_yaml(textwrap.dedent(scenario), source="<scenario>")
    else:
        data = dict(scenario)
    data = dict(data)
    data.setdefault("journey", [plan.journey_id for _, plan in compiled])
    data.setdefault("start", DEFAULT_START)
    attention: list[dict[str, Any]] = []

    async def collect(rt: Runtime) -> None:
        rows = await rt.store.offload(rt.store.list_enrollments, status="needs_attention", limit=100_000)
        for row in rows:
            state = await query_status(rt.temporal, row.workflow_id, run_id=row.enrollment_id)
            attention.append({"customer": row.customer_id, "journey": row.journey_id, "reason": state.attention_reason})

    result = await simulate(Scenario.model_validate(data), compiled, registry=reg, at_end=collect)
    return {**result, "attention": sorted(attention, key=lambda a: (a["customer"], a["journey"]))}


__all__ = ["DEFAULT_START", "RecordedCall", "StandIn", "registry_with", "run_journeys", "stand_in"]
