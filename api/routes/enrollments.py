"""Enrollments and the message log (read side)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import CallerDep, OperatorDep, RuntimeDep
from engine.errors import JourneyStateError
from engine.temporal import query_status
from workflows.messages import OperatorExit

router = APIRouter(tags=["enrollments"])


@router.get("/v1/journeys/{journey_id}/enrollments")
async def list_enrollments(
    journey_id: str,
    rt: RuntimeDep,
    _: CallerDep,
    customer: Annotated[str | None, Query()] = None,
    status: Annotated[str | None, Query()] = None,
) -> list[dict[str, Any]]:
    """Enrollments of a journey, newest first."""
    rows = await rt.store.offload(rt.store.list_enrollments, journey_id=journey_id, customer_id=customer, status=status)
    return [r.model_dump() for r in rows]


@router.get("/v1/enrollments/{enrollment_id}")
async def get_enrollment(enrollment_id: str, rt: RuntimeDep, _: CallerDep) -> dict[str, Any]:
    """Live state of one enrollment, from the workflow's status query."""
    row = await rt.store.offload(rt.store.get_enrollment, enrollment_id)
    record = row.model_dump()
    try:
        live = await query_status(rt.temporal, row.workflow_id, run_id=row.enrollment_id)
        record["live"] = asdict(live)
    except RPCError as exc:
        record["live"] = None
        record["live_error"] = exc.message
    return record


@router.get("/v1/messages", tags=["messages"])
async def list_messages(
    rt: RuntimeDep,
    _: CallerDep,
    customer: Annotated[str | None, Query()] = None,
    journey: Annotated[str | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="ISO time, inclusive")] = None,
    until: Annotated[datetime | None, Query(description="ISO time, exclusive")] = None,
    status: Annotated[str | None, Query(description="sent, skipped, deferred, failed, pending_confirmation")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """The message log: every send attempt with content, status and reason."""
    rows = await rt.store.offload(
        rt.store.list_messages, journey_id=journey, customer_id=customer, limit=limit,
        since=since.astimezone(UTC) if since else None, until=until.astimezone(UTC) if until else None, status=status,
    )  # fmt: skip
    return [r.model_dump() for r in rows]


@router.post("/v1/enrollments/{enrollment_id}/{action}")
async def act_on_enrollment(
    enrollment_id: str,
    action: Annotated[str, Path(pattern="^(exit|retry|skip)$")],
    rt: RuntimeDep,
    caller: OperatorDep,
) -> dict[str, Any]:
    """Operator action on one enrollment: ``exit``, ``retry`` or ``skip`` a parked step.

    An illegal transition (retrying an enrollment that is not parked, exiting one that
    already ended) is refused by the workflow's validator and answered 409.
    """
    row = await rt.store.offload(rt.store.get_enrollment, enrollment_id)
    handle = rt.temporal.get_workflow_handle(row.workflow_id, run_id=None)
    args = [OperatorExit(reason="operator")] if action == "exit" else []
    try:
        result = await handle.execute_update(action, *args)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = getattr(cause, "message", None) or str(cause or exc)
        raise JourneyStateError(message, current=row.status, requested=action) from exc
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise JourneyStateError(f"enrollment is not running ({exc.message})", current=row.status,
                                    requested=action) from exc  # fmt: skip
        raise
    await rt.store.offload(rt.store.audit, actor=caller.key_id, action=f"enrollment.{action}", target=enrollment_id,
                            details={"journey": row.journey_id, "customer": row.customer_id})  # fmt: skip
    return {"enrollment_id": enrollment_id, "action": action, "result": result}
