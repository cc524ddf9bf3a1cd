"""events.entity_id and indexes: one entity's events without scanning the log

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

The column is filled from each stored event's JSON body (``entity_id``, cut to 200
characters as new rows are). The dashboard's change page reads a change's events through
``(project_id, entity_id, seq)`` and ``(project_id, scope, seq)`` (task events carry the
change in ``scope``; partial, as most events, lease events included, have none).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("entity_id", sa.String(length=200), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE events SET entity_id = left(body::json ->> 'entity_id', 200)")
    else:
        op.execute(
            "UPDATE events SET entity_id = substr(json_extract(body, '$.entity_id'), 1, 200)"
            " WHERE json_type(body, '$.entity_id') = 'text'"
        )
    op.create_index("ix_events_entity", "events", ["project_id", "entity_id", "seq"])
    op.create_index(
        "ix_events_scope",
        "events",
        ["project_id", "scope", "seq"],
        sqlite_where=sa.text("scope IS NOT NULL"),
        postgresql_where=sa.text("scope IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_events_scope", table_name="events")
    op.drop_index("ix_events_entity", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("entity_id")
