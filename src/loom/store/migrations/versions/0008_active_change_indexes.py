"""changes: partial indexes over active changes, in canonical order

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

A large project is mostly archived (the reference corpus: 93%). Allocation's candidate
queries and ``GET /changes`` (active by default) walked every change of the project, or
sorted every ready one including the archived, to find a few active rows:

- ``ix_changes_eligible``: unarchived ready or in-progress changes, by sort key. The
  allocation window (64 candidates) read 2,269 rows and sorted them at 10,000 changes
  (21.6 ms on PostgreSQL); with it, 64 index entries (0.3 ms).
- ``ix_changes_active``: unarchived changes, by sort key: an active list page reads its
  page, not the archived rows between.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ACTIVE = "archived_us IS NULL"
ELIGIBLE = "archived_us IS NULL AND work_status IN ('ready', 'in-progress')"


def upgrade() -> None:
    for name, where in (("ix_changes_active", ACTIVE), ("ix_changes_eligible", ELIGIBLE)):
        op.create_index(
            name,
            "changes",
            ["project_id", "sort_key"],
            unique=False,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )


def downgrade() -> None:
    op.drop_index("ix_changes_eligible", table_name="changes")
    op.drop_index("ix_changes_active", table_name="changes")
