"""Database engine creation and schema set-up."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, create_engine

from engine import models  # noqa: F401  (registers the tables)


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` and make sure the schema exists.

    SQLite gets WAL and a busy timeout, because the API and the worker write to the same
    file from different threads.
    """
    # A ping per checkout guards against server-side disconnects; a SQLite file cannot
    # disconnect, and the ping was ~2.5% of the worker's CPU (bench/RESULTS.md).
    kwargs: dict[str, Any] = {"pool_pre_ping": not url.startswith("sqlite")}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            _use_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    migrate(engine)
    return engine


#: How long a new SQLite connection keeps asking to switch the file to WAL while another holds it.
WAL_SWITCH_WAIT_S = 30.0


def _use_wal(cursor: Any) -> None:
    """Put the SQLite file in WAL mode, waiting while another connection is switching it.

    Switching the journal mode answers "database is locked" at once, without SQLite's busy
    handler, when another connection holds the file: the API and the worker starting
    together on a new file failed that way about one start in seven (test_store). Once a
    file is in WAL mode the switch is a no-op and never waits.
    """
    deadline = time.monotonic() + WAL_SWITCH_WAIT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


MIGRATIONS = Path(__file__).with_name("migrations")


def insert_for(dialect: str) -> Any:
    """The dialect's ``insert`` (with ``on_conflict_do_*``): the two databases we run on share the syntax."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def alembic_config(connection: Connection) -> Config:
    """An Alembic configuration that runs the project's migrations on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> str | None:
    """Bring the schema to the latest migration; returns the revision it was at before.

    A database created before migrations existed (tables, no ``alembic_version``) is first
    completed the way it always was (missing tables and nullable columns added) and then
    stamped, so it joins the migration history without being recreated.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # The API and the worker start together and both migrate: one waits for the other.
            conn.execute(text("SELECT pg_advisory_xact_lock(7407101)"))
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock before looking
        before = MigrationContext.configure(conn).get_current_revision()
        config = alembic_config(conn)
        if before is None and inspect(conn).has_table("journeys"):
            # Completed to the first migration's shape, so later migrations still apply to it.
            SQLModel.metadata.create_all(conn)
            add_missing_columns(conn)
            from engine import counters  # imports this module: not at the top

            counters.backfill(conn)
            command.stamp(config, "0001")
        command.upgrade(config, "head")
    return before


def add_missing_columns(conn: Connection) -> list[str]:
    """Add nullable columns that the models have and an existing table lacks.

    Only for databases from before migrations (see :func:`migrate`), whose schema changes
    were additive. Returns ``table.column`` for each column added.
    """
    inspector = inspect(conn)
    added = []
    for table in SQLModel.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present or not column.nullable:
                continue
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'))
            added.append(f"{table.name}.{column.name}")
    return added
