"""FastAPI dependencies: the runtime, the dispatcher and authentication."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from engine.dispatch import Dispatcher
from engine.lifecycle import Lifecycle
from engine.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The process runtime created at start-up."""
    return request.app.state.runtime  # type: ignore[no-any-return]


def get_dispatcher(request: Request) -> Dispatcher:
    """The event dispatcher created at start-up."""
    return request.app.state.dispatcher  # type: ignore[no-any-return]


def get_lifecycle(request: Request) -> Lifecycle:
    """Journey lifecycle transitions (activate, pause, resume, archive)."""
    return request.app.state.lifecycle  # type: ignore[no-any-return]


def require_key(request: Request) -> str:
    """Check ``Authorization: Bearer <key>``; returns the caller's identity."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401, "missing API key: send 'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"}
        )
    admin_key: str = request.app.state.admin_key
    if not admin_key or not hmac.compare_digest(token.strip().encode(), admin_key.encode()):
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return "admin"


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
LifecycleDep = Annotated[Lifecycle, Depends(get_lifecycle)]
CallerDep = Annotated[str, Depends(require_key)]
