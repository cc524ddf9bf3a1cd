"""ui_session_revocations: dashboard sign-outs, seen by every server process

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ui_session_revocations",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("expires_us", sa.BigInteger(), nullable=False),
        sa.Column("revoked_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_ui_session_revocations")),
    )
    op.create_index(
        "ix_ui_session_revocations_expires_us",
        "ui_session_revocations",
        ["expires_us"],
    )


def downgrade() -> None:
    op.drop_index("ix_ui_session_revocations_expires_us", table_name="ui_session_revocations")
    op.drop_table("ui_session_revocations")
