"""Journeys: create versions from YAML, list, read, activate."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request

from api.deps import CallerDep, LifecycleDep, MarketerDep, OperatorDep, RuntimeDep
from api.models import ActivateIn, JourneyCreated, JourneyDetail, JourneyOut, PauseIn
from engine.compiler import compile_text
from engine.graph import to_mermaid
from engine.stats import JourneyStats, enrollment_counts, journey_stats

router = APIRouter(prefix="/v1/journeys", tags=["journeys"])

#: Version numbers are SQL integers: larger ones are a caller's mistake (422), not an overflow.
MAX_VERSION = 2**31 - 1
VersionPath = Annotated[int, Path(ge=1, le=MAX_VERSION, description="Version number.")]

_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
MAX_YAML_BYTES = 256 * 1024

_EXAMPLE = """journey: welcome
trigger: {event: order.created}
steps:
  - send: {channel: wecom.customer, sender: "{{ customer.owner_userid }}", text: "您好 {{ customer.name }}"}
"""
#: OpenAPI for the endpoints that take a journey's YAML as their raw body.
_YAML_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/yaml": {"schema": {"type": "string"}, "example": _EXAMPLE}},
    },
}


@router.post(
    "",
    status_code=201,
    response_model=JourneyCreated,
    openapi_extra=_YAML_BODY,
)
async def create_version(
    request: Request,
    rt: RuntimeDep,
    caller: MarketerDep,
    filename: Annotated[str, Query(max_length=200)] = "journey.yaml",
) -> JourneyCreated:
    """Validate, compile and store a new version of a journey (YAML body)."""
    text = await _yaml_body(request)
    plan = compile_text(text, source=filename)
    row, version = await rt.store.offload(rt.store.create_version, yaml_text=text, plan=plan, author=caller.key_id)
    await rt.store.offload(rt.store.audit, actor=caller.key_id, action="journey.version", target=row.id,
                            details={"version": version, "plan_hash": plan.plan_hash})  # fmt: skip
    return JourneyCreated(journey=row.id, version=version, status=row.status, plan_hash=plan.plan_hash)


@router.post(
    "/validate",
    openapi_extra=_YAML_BODY,
)
async def validate(
    request: Request,
    _: MarketerDep,
    filename: Annotated[str, Query(max_length=200)] = "journey.yaml",
) -> dict[str, Any]:
    """Validate and compile a journey without storing it: its id, plan hash and Mermaid diagram (422 if invalid)."""
    plan = compile_text(await _yaml_body(request), source=filename)
    return {"journey": plan.journey_id, "valid": True, "plan_hash": plan.plan_hash, "graph": to_mermaid(plan)}


@router.get("", response_model=list[JourneyOut])
async def list_journeys(rt: RuntimeDep, _: CallerDep) -> list[Any]:
    """Every journey with its status and versions."""
    return await rt.store.offload(rt.store.list_journeys)


@router.get("/{journey_id}", response_model=JourneyDetail)
async def get_journey(journey_id: str, rt: RuntimeDep, _: CallerDep) -> Any:
    """One journey's status, versions and enrollment counts (entered, running, exited by reason, converted)."""
    row = await rt.store.offload(rt.store.get_journey, journey_id)
    counts = await rt.store.offload(enrollment_counts, rt.store, journey_id)
    return {**row.model_dump(), "counts": counts}


@router.get("/{journey_id}/versions/{version}")
async def get_version(journey_id: str, version: VersionPath, rt: RuntimeDep, _: CallerDep) -> dict[str, Any]:
    """One version's YAML and compiled plan."""
    row = await rt.store.offload(rt.store.get_version, journey_id, version)
    return {
        "journey": row.journey_id,
        "version": row.version,
        "yaml": row.yaml,
        "plan": row.plan,
        "plan_hash": row.plan_hash,
        "author": row.author,
        "created_at": row.created_at,
    }


@router.get("/{journey_id}/stats", response_model=JourneyStats)
async def get_stats(
    journey_id: str,
    rt: RuntimeDep,
    _: CallerDep,
    version: Annotated[
        int | None, Query(ge=1, le=MAX_VERSION, description="Count one version only (default: all).")
    ] = None,
) -> JourneyStats:
    """Funnel per step, sends by status and reason, split arms with 95% intervals, goal conversions.

    Read from exact counters kept with every change, so it is cheap at any volume. The
    significance flag of a split appears once each arm has 200 enrollments.
    """
    return await rt.store.offload(journey_stats, rt.store, journey_id, version)


@router.post("/{journey_id}/activate", response_model=JourneyOut)
async def activate(
    journey_id: str,
    lifecycle: LifecycleDep,
    rt: RuntimeDep,
    caller: OperatorDep,
    body: Annotated[ActivateIn | None, Body()] = None,
) -> Any:
    """Start admitting customers with a version (default: the latest)."""
    row = await lifecycle.activate(journey_id, body.version if body else None)
    await _audit(rt, caller, "journey.activate", journey_id, {"version": row.active_version})
    return row


@router.post("/{journey_id}/pause", response_model=JourneyOut)
async def pause(journey_id: str, lifecycle: LifecycleDep, rt: RuntimeDep, caller: OperatorDep,
                body: Annotated[PauseIn | None, Body()] = None) -> Any:  # fmt: skip
    """Stop admissions now; running enrollments hold before their next send or activity."""
    body = body or PauseIn()
    stale = body.stale_after.total_seconds() if body.stale_after else None
    try:
        row = await lifecycle.pause(journey_id, on_resume=body.on_resume, stale_after_s=stale)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    await _audit(rt, caller, "journey.pause", journey_id, {"on_resume": body.on_resume, "stale_after_s": stale})
    return row


@router.post("/{journey_id}/resume")
async def resume(journey_id: str, lifecycle: LifecycleDep, rt: RuntimeDep, caller: OperatorDep) -> dict[str, Any]:
    """Admit again and release held enrollments under the pause's policy."""
    row, released = await lifecycle.resume(journey_id)
    await _audit(rt, caller, "journey.resume", journey_id, {"released": released})
    return {
        "journey": JourneyOut.model_validate(row, from_attributes=True).model_dump(mode="json"),
        "released": released,
    }


@router.post("/{journey_id}/archive")
async def archive(journey_id: str, lifecycle: LifecycleDep, rt: RuntimeDep, caller: OperatorDep) -> dict[str, Any]:
    """End every running enrollment (exit_reason operator) and admit none, for good."""
    row, ended = await lifecycle.archive(journey_id)
    await _audit(rt, caller, "journey.archive", journey_id, {"ended": ended})
    return {"journey": JourneyOut.model_validate(row, from_attributes=True).model_dump(mode="json"), "ended": ended}


async def _yaml_body(request: Request) -> str:
    """The request's YAML text, or a 413/415/422 the caller can act on."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in _YAML_TYPES:
        raise HTTPException(415, "send the journey as YAML with 'Content-Type: application/yaml'")
    raw = await request.body()
    if len(raw) > MAX_YAML_BYTES:
        raise HTTPException(413, f"journey YAML is limited to {MAX_YAML_BYTES // 1024} KiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(422, "journey YAML must be UTF-8") from exc


async def _audit(rt: Any, caller: Any, action: str, target: str, details: dict[str, Any]) -> None:
    await rt.store.offload(rt.store.audit, actor=caller.key_id, action=action, target=target, details=details)
