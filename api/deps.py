"""FastAPI dependencies: the runtime, the dispatcher and authentication."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from api.auth import Caller, admin_caller, authenticate
from engine.dispatch import Dispatcher
from engine.lifecycle import Lifecycle
from engine.runtime import Runtime

# These are coroutines though they do not wait: FastAPI runs a plain function dependency in
# its thread pool, a thread hand-off per request for an attribute read.


async def get_runtime(request: Request) -> Runtime:
    """The process runtime created at start-up."""
    return request.app.state.runtime  # type: ignore[no-any-return]


async def get_dispatcher(request: Request) -> Dispatcher:
    """The event dispatcher created at start-up."""
    return request.app.state.dispatcher  # type: ignore[no-any-return]


async def get_lifecycle(request: Request) -> Lifecycle:
    """Journey lifecycle transitions (activate, pause, resume, archive)."""
    return request.app.state.lifecycle  # type: ignore[no-any-return]


async def require_key(request: Request) -> Caller:
    """Check ``Authorization: Bearer <key>``; returns the caller."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    rt = request.app.state.runtime
    token, admin_key = token.strip(), request.app.state.admin_key
    # The admin key needs no database read, so no trip to the SQL thread either.
    caller = admin_caller(token, admin_key) or await rt.store.offload(authenticate, rt.store, token)
    if caller is None:
        raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return caller


def require(role: str) -> Any:
    """A dependency that admits callers whose role includes ``role``."""

    async def check(caller: Annotated[Caller, Depends(require_key)]) -> Caller:
        if not caller.can(role):
            raise HTTPException(403, f"this needs the {role} role; your key is {caller.role}")
        return caller

    return Depends(check)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
LifecycleDep = Annotated[Lifecycle, Depends(get_lifecycle)]
CallerDep = Annotated[Caller, require("viewer")]
MarketerDep = Annotated[Caller, require("marketer")]
OperatorDep = Annotated[Caller, require("operator")]
AdminDep = Annotated[Caller, require("admin")]
