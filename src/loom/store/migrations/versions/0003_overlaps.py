"""overlaps: requirement index, spec revisions and history, per-capability spec bases

Revision ID: 0003
Revises: 0004
Create Date: 2026-12-06

Existing data is carried over: every spec starts at revision 1 (its history holds that
text), every active change's deltas get the revision current now as their base, and the
requirement index is built from the active changes' deltas.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from loom.domain.specs import requirement_refs

revision = "0003"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "change_requirements",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("change_id", sa.String(length=160), nullable=False),
        sa.Column("capability", sa.String(length=128), nullable=False),
        sa.Column("requirement", sa.String(length=300), nullable=False),
        sa.Column("op", sa.String(length=10), nullable=False),
        sa.Column("from_name", sa.String(length=300), nullable=True),
        sa.Column("to_name", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id", "change_id"],
            ["changes.project_id", "changes.change_id"],
            name=op.f("fk_change_requirements_project_id_changes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "project_id",
            "change_id",
            "capability",
            "requirement",
            "op",
            name=op.f("pk_change_requirements"),
        ),
    )
    op.create_index(
        "ix_change_requirements_project_id_capability_requirement",
        "change_requirements",
        ["project_id", "capability", "requirement"],
        unique=False,
    )
    op.create_table(
        "spec_revisions",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("spec_id", sa.String(length=128), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("markdown", sa.Text(), nullable=True),
        sa.Column("change_id", sa.String(length=160), nullable=True),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_spec_revisions_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "project_id", "spec_id", "revision", name=op.f("pk_spec_revisions")
        ),
    )
    with op.batch_alter_table("specs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("revision", sa.BigInteger(), server_default="1", nullable=False)
        )
    with op.batch_alter_table("change_specs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("base_revision", sa.BigInteger(), nullable=True))

    conn = op.get_bind()
    conn.execute(
        sa.text(
            "INSERT INTO spec_revisions (project_id, spec_id, revision, markdown, change_id,"
            " source, created_us) SELECT project_id, spec_id, 1, markdown, NULL, 'import',"
            " updated_us FROM specs"
        )
    )
    conn.execute(
        sa.text(
            "UPDATE change_specs SET base_revision = COALESCE((SELECT s.revision FROM specs s"
            " WHERE s.project_id = change_specs.project_id"
            " AND s.spec_id = change_specs.capability), 0)"
        )
    )
    rows = conn.execute(
        sa.text(
            "SELECT cs.project_id, cs.change_id, cs.capability, cs.content FROM change_specs cs"
            " JOIN changes c ON c.project_id = cs.project_id AND c.change_id = cs.change_id"
            " WHERE c.archived_us IS NULL"
        )
    ).all()
    index = [
        {
            "project_id": pid,
            "change_id": change_id,
            "capability": ref.capability,
            "requirement": ref.requirement,
            "op": ref.op,
            "from_name": ref.from_name,
            "to_name": ref.to_name,
        }
        for pid, change_id, capability, content in rows
        for ref in requirement_refs(content, capability)
    ]
    if index:
        conn.execute(
            sa.text(
                "INSERT INTO change_requirements (project_id, change_id, capability,"
                " requirement, op, from_name, to_name) VALUES (:project_id, :change_id,"
                " :capability, :requirement, :op, :from_name, :to_name)"
            ),
            index,
        )


def downgrade() -> None:
    with op.batch_alter_table("change_specs", schema=None) as batch_op:
        batch_op.drop_column("base_revision")
    with op.batch_alter_table("specs", schema=None) as batch_op:
        batch_op.drop_column("revision")
    op.drop_table("spec_revisions")
    op.drop_index(
        "ix_change_requirements_project_id_capability_requirement",
        table_name="change_requirements",
    )
    op.drop_table("change_requirements")
