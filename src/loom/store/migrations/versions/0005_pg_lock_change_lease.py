"""PostgreSQL: lock a change and read its lease in one round trip

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-06

``loom_lock_change_lease(project_id, change_id)`` takes the change row's lock
(``SELECT … FOR UPDATE``) and then reads the lease in a second statement, which under READ
COMMITTED sees every commit made before the lock was granted (a single joined
``SELECT … FOR UPDATE`` would return the lease as it was before waiting). It decides
nothing: the lease rules stay in :mod:`loom.domain.leases`. SQLite needs no function (its
write transaction holds the database lock, and one joined statement does).
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None

_CREATE = """
CREATE OR REPLACE FUNCTION loom_lock_change_lease(
    p_project_id integer,
    p_change_id text,
    OUT archived_us bigint,
    OUT has_lease boolean,
    OUT holder text,
    OUT acquired_us bigint,
    OUT expires_us bigint,
    OUT ttl_seconds integer,
    OUT fencing_token bigint,
    OUT previous_holder text,
    OUT expiry_recorded boolean
) RETURNS SETOF record
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    SELECT c.archived_us INTO archived_us
      FROM changes c
     WHERE c.project_id = p_project_id AND c.change_id = p_change_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;  -- no row: the change does not exist
    END IF;
    SELECT true, l.holder, l.acquired_us, l.expires_us, l.ttl_seconds, l.fencing_token,
           l.previous_holder, l.expiry_recorded
      INTO has_lease, holder, acquired_us, expires_us, ttl_seconds, fencing_token,
           previous_holder, expiry_recorded
      FROM leases l
     WHERE l.project_id = p_project_id AND l.change_id = p_change_id;
    has_lease := FOUND;
    RETURN NEXT;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS loom_lock_change_lease(integer, text)")
