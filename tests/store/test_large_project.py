"""What keeps a large project (tens of thousands of changes) fast: the statements a bulk
import and a change read run do not grow with the number of changes; PostgreSQL's planner
gets statistics after a large import (bench/large.py measures the latencies)."""

from __future__ import annotations

import pytest

from loom.service import imports
from loom.service._context import ServiceContext

from ._statements import statements
from .conftest import ACTOR, PROJECT

DELTA = "## ADDED Requirements\n\n### Requirement: R{n}\nR{n} works.\n"


def _changes(first: int, count: int) -> list[imports.ImportChange]:
    return [
        imports.ImportChange(
            f"{1 + n // 100:03d}-{n % 100 + 1:02d}_c{n}",
            "# P\n",
            None,
            "- [ ] 1.1 Do it\n",
            ((f"cap-{n % 3}", DELTA.format(n=n)),),
            None,
            None if n % 2 else 1_700_000_000_000_000,
        )
        for n in range(first, first + count)
    ]


def _import(ctx: ServiceContext, changes: list[imports.ImportChange]) -> dict[str, object]:
    return imports.import_tree(
        ctx, PROJECT, mode="create-only", modules=[], specs=[], changes=changes, actor=ACTOR
    )


def test_a_bulk_import_runs_as_many_statements_for_40_new_changes_as_for_4(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both imports land in one module (001) that the first import created.
    _import(ctx, _changes(0, 1))
    with statements(ctx, monkeypatch) as few:
        assert _import(ctx, _changes(1, 4))["created"] == 4
    with statements(ctx, monkeypatch) as many:
        assert _import(ctx, _changes(5, 40))["created"] == 40
    assert len(many) == len(few), (few, many)


def test_a_large_import_leaves_postgresql_statistics_and_a_small_one_does_not_reanalyse(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    if ctx.db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps no planner statistics here")

    def reltuples() -> float:
        with ctx.db.read() as conn:
            sql = "SELECT reltuples FROM pg_class WHERE oid = to_regclass('changes')"
            return float(conn.exec_driver_sql(sql).scalar_one())

    assert reltuples() < 0  # never analysed: the planner would guess
    with statements(ctx, monkeypatch) as first:
        _import(ctx, _changes(0, 300))
    assert reltuples() == 300
    assert any(s.startswith('ANALYZE "changes"') for s in first)
    with statements(ctx, monkeypatch) as second:
        _import(ctx, _changes(300, 1))
    assert not any(s.startswith("ANALYZE") for s in second), second


def test_reading_a_change_loads_its_artifacts_once(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loom.service import changes

    _import(ctx, _changes(0, 3))
    with statements(ctx, monkeypatch) as seen:
        detail = changes.change_detail(ctx, PROJECT, "001-02_c1", "all")
    assert detail["proposal"] == "# P\n"
    # The id lookup reads only the archive state; the proposal/design/tasks texts come once.
    assert sum("proposal" in s for s in seen) == 1, seen
    assert len(seen) <= 4, seen  # lookup, row, deltas, lease
