"""Database engine creation and schema set-up."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, create_engine

from engine import models  # noqa: F401  (registers the tables)


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` and make sure the schema exists.

    SQLite gets WAL and a busy timeout, because the API and the worker write to the same
    file from different threads.
    """
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    SQLModel.metadata.create_all(engine)
    return engine
