"""Modules (and sub-modules) and promoted specs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, func, select
from sqlalchemy.dialects import postgresql, sqlite

from loom.store._upsert import upsert
from loom.store.schema import changes, modules, specs

__all__ = [
    "ModuleRow",
    "SpecRow",
    "change_counts",
    "get_module",
    "get_spec",
    "list_module_change_ids",
    "list_modules",
    "list_specs",
    "upsert_module",
]


@dataclass(frozen=True)
class ModuleRow:
    module_id: str
    parent_id: str | None
    name: str
    description: str | None
    markdown: str | None
    updated_us: int


@dataclass(frozen=True)
class SpecRow:
    spec_id: str
    markdown: str
    updated_us: int
    revision: int = 1


def _module(r: RowMapping) -> ModuleRow:
    return ModuleRow(
        r["module_id"],
        r["parent_id"],
        r["name"],
        r["description"],
        r["markdown"],
        int(r["updated_us"]),
    )


def list_modules(conn: Connection, project_id: int) -> list[ModuleRow]:
    rows = conn.execute(
        select(modules).where(modules.c.project_id == project_id).order_by(modules.c.module_id)
    ).mappings()
    return [_module(r) for r in rows]


def get_module(
    conn: Connection, project_id: int, module_id: str, *, for_update: bool = False
) -> ModuleRow | None:
    stmt = select(modules).where(
        modules.c.project_id == project_id, modules.c.module_id == module_id
    )
    if for_update and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).mappings().first()
    return None if row is None else _module(row)


def upsert_module(
    conn: Connection,
    project_id: int,
    module_id: str,
    *,
    parent_id: str | None,
    name: str,
    description: str | None,
    markdown: str | None,
    now_us: int,
    replace: bool = True,
) -> None:
    """Create or replace a module row; with ``replace=False`` an existing row (for example
    one created concurrently by ``PUT /modules``) is left as it is."""
    values = {
        "parent_id": parent_id,
        "name": name,
        "description": description,
        "markdown": markdown,
        "updated_us": now_us,
    }
    keys = {"project_id": project_id, "module_id": module_id}
    if replace:
        upsert(conn, modules, keys, values)
        return
    module: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        module.insert(modules)
        .values(**keys, **values)
        .on_conflict_do_nothing(index_elements=list(keys))
    )


def change_counts(conn: Connection, project_id: int) -> tuple[dict[str, int], dict[str, int]]:
    """Active change counts per module (module-level changes only) and per sub-module."""
    active = changes.c.archived_us.is_(None)
    per_module = {
        r[0]: int(r[1])
        for r in conn.execute(
            select(changes.c.module_id, func.count())
            .where(
                changes.c.project_id == project_id,
                active,
                changes.c.module_id.is_not(None),
                changes.c.sub_module_id.is_(None),
            )
            .group_by(changes.c.module_id)
        )
    }
    per_sub = {
        r[0]: int(r[1])
        for r in conn.execute(
            select(changes.c.sub_module_id, func.count())
            .where(changes.c.project_id == project_id, active, changes.c.sub_module_id.is_not(None))
            .group_by(changes.c.sub_module_id)
        )
    }
    return per_module, per_sub


def list_module_change_ids(conn: Connection, project_id: int, module_id: str) -> list[str]:
    """Every change (active or archived) of a module or sub-module, in canonical order."""
    col = changes.c.sub_module_id if "." in module_id else changes.c.module_id
    rows = conn.execute(
        select(changes.c.change_id)
        .where(changes.c.project_id == project_id, col == module_id)
        .order_by(changes.c.sort_key)
    )
    return [r[0] for r in rows]


def list_specs(conn: Connection, project_id: int) -> list[tuple[str, int]]:
    rows = conn.execute(
        select(specs.c.spec_id, specs.c.updated_us)
        .where(specs.c.project_id == project_id)
        .order_by(specs.c.spec_id)
    )
    return [(r[0], int(r[1])) for r in rows]


def get_spec(
    conn: Connection, project_id: int, spec_id: str, *, for_update: bool = False
) -> SpecRow | None:
    stmt = select(specs.c.spec_id, specs.c.markdown, specs.c.updated_us, specs.c.revision).where(
        specs.c.project_id == project_id, specs.c.spec_id == spec_id
    )
    if for_update and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    return None if row is None else SpecRow(row[0], row[1], int(row[2]), int(row[3]))
