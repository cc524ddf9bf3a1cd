"""events: the (project_id, id) index covers only unnumbered events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Only PostgreSQL appends events without a ``seq`` (numbered later by ``publish_events``); the
index exists for that query. As a partial index it holds just the unpublished tail, and
SQLite, which numbers on append, no longer maintains it on every event write.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_project_id")
        batch_op.create_index(
            "ix_events_unnumbered",
            ["project_id", "id"],
            unique=False,
            sqlite_where=sa.text("seq IS NULL"),
            postgresql_where=sa.text("seq IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_events_unnumbered",
            sqlite_where=sa.text("seq IS NULL"),
            postgresql_where=sa.text("seq IS NULL"),
        )
        batch_op.create_index("ix_events_project_id", ["project_id", "id"], unique=False)
