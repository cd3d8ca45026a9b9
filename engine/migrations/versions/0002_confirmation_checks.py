"""Confirmation checks: when to ask WeCom again about a message waiting for confirmation.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 04:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision: messages waiting for confirmation get their next check time.

    Tasks already waiting are checked at the first sweep (their per-message trackers, if
    still running, record the same outcome; whichever records first wins).
    """
    inspector = sa.inspect(op.get_bind())
    # A data dir from before migrations was completed to the models' shape (engine.db.migrate)
    # and may have the column already.
    has_column = "next_check_at" in {c["name"] for c in inspector.get_columns("messages")}
    has_index = "ix_messages_next_check_at" in {i["name"] for i in inspector.get_indexes("messages")}
    with op.batch_alter_table("messages", schema=None) as batch_op:
        if not has_column:
            batch_op.add_column(sa.Column("next_check_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        if not has_index:
            batch_op.create_index(batch_op.f("ix_messages_next_check_at"), ["next_check_at"], unique=False)
    messages = sa.table("messages", sa.column("status", sa.String()), sa.column("created_at", sa.DateTime()),
                        sa.column("next_check_at", sa.DateTime()))  # fmt: skip
    op.execute(
        messages.update().where(messages.c.status == "pending_confirmation").values(next_check_at=messages.c.created_at)
    )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_next_check_at"))
        batch_op.drop_column("next_check_at")
