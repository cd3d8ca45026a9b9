"""Customer profiles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path

from api.deps import CallerDep, MarketerDep, RuntimeDep
from api.models import CustomerIn
from engine.errors import NotFoundError

router = APIRouter(prefix="/v1/customers", tags=["customers"])

CustomerId = Annotated[str, Path(min_length=1, max_length=200)]


@router.put("/{customer_id}")
async def put_customer(
    customer_id: CustomerId, body: Annotated[CustomerIn, Body()], rt: RuntimeDep, _: MarketerDep
) -> dict[str, Any]:
    """Create or replace a profile (attributes, tags, time zone, WeCom ids, consent)."""
    profile = body.model_dump(exclude_none=True)
    return await rt.store.offload(rt.store.put_customer, customer_id, profile)


@router.get("/{customer_id}")
async def get_customer(customer_id: CustomerId, rt: RuntimeDep, _: CallerDep) -> dict[str, Any]:
    """Read a profile."""
    found = await rt.store.offload(rt.store.get_customer, customer_id)
    if found is None:
        raise NotFoundError("customer", customer_id)
    return found
