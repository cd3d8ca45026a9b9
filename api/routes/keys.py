"""API keys (admin) and the audit log (operators)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from api.auth import ROLES, create_key
from api.deps import AdminDep, OperatorDep, RuntimeDep

router = APIRouter(tags=["access"])


class KeyIn(BaseModel):
    """A key to create."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "crm-sync", "role": "marketer"}]}
    )
    name: str = Field(min_length=1, max_length=100)
    role: str = Field(description=f"one of {', '.join(ROLES)}")


def _public(row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "role": row.role, "created_at": row.created_at,
            "created_by": row.created_by, "revoked_at": row.revoked_at}  # fmt: skip


@router.post("/v1/keys", status_code=201)
async def new_key(body: Annotated[KeyIn, Body()], rt: RuntimeDep, caller: AdminDep) -> dict[str, Any]:
    """Create a key; the full key is in this response only."""
    try:
        row, key = await rt.store.offload(create_key, rt.store, name=body.name, role=body.role,
                                           created_by=caller.key_id)  # fmt: skip
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    await rt.store.offload(rt.store.audit, actor=caller.key_id, action="key.create", target=row.id,
                            details={"name": row.name, "role": row.role})  # fmt: skip
    return {**_public(row), "key": key}


@router.get("/v1/keys")
async def keys(rt: RuntimeDep, _: AdminDep) -> list[dict[str, Any]]:
    """Every key (never the secrets)."""
    return [_public(r) for r in await rt.store.offload(rt.store.list_keys)]


@router.delete("/v1/keys/{key_id}")
async def revoke(key_id: str, rt: RuntimeDep, caller: AdminDep) -> dict[str, Any]:
    """Revoke a key; it stops working at once."""
    row = await rt.store.offload(rt.store.revoke_key, key_id)
    await rt.store.offload(rt.store.audit, actor=caller.key_id, action="key.revoke", target=key_id)
    return _public(row)


@router.get("/v1/audit")
async def audit(rt: RuntimeDep, _: OperatorDep, target: Annotated[str | None, Query()] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[dict[str, Any]]:  # fmt: skip
    """The audit log, newest first: who did what, when, to what."""
    rows = await rt.store.offload(rt.store.list_audit, target=target, limit=limit)
    return [r.model_dump() for r in rows]
