"""The change page reads the change's events by index, however long the project's log."""

from __future__ import annotations

from typing import Any

from conftest import ADMIN, ORG, REPO, auth, ui_login
from loom.store import _raw
from loom.store.events import _BY_ENTITY, _BY_SCOPE

P = f"/api/v1/projects/{ORG}/{REPO}"
CHANGE = "001-01_alpha"


def _event(entity: str, entity_id: str, op: str, scope: str | None = None) -> dict[str, Any]:
    event = {
        "v": 1,
        "ts": "2026-02-28T10:00:00.000Z",
        "entity": entity,
        "entity_id": entity_id,
        "op": op,
        "actor": "cli",
        "by": "@filler",
        "ctx": {"session_id": "s"},
    }
    if scope is not None:
        event["scope"] = scope
    return event


def _ingest(api: Any, key: str, events: list[dict[str, Any]]) -> None:
    resp = api.post(
        f"{P}/events", json={"events": events, "idempotency_key": key}, headers=auth(ADMIN)
    )
    assert resp.status_code == 200 and resp.json()["accepted"] == len(events), resp.text


def test_a_changes_events_older_than_5000_others_are_on_its_page(api: Any) -> None:
    pushed = api.post(
        f"{P}/changes/{CHANGE}/sync",
        json={"proposal": "# Alpha\n", "tasks": "- [ ] 1.1 Do it\n", "specs": []},
        headers=auth(ADMIN),
    )
    assert pushed.status_code == 200, pushed.text
    _ingest(
        api,
        "mine",
        [
            _event("change", CHANGE, "marker_of_the_change"),
            _event("task", "1.1", "marker_of_a_task", scope=CHANGE),
        ],
    )
    for batch in range(6):  # 6,000 events of other changes after them
        others = [
            _event("task", "1.1", "noise_elsewhere", scope=f"002-{n % 90 + 10}_x")
            for n in range(1000)
        ]
        _ingest(api, f"other-{batch}", others)
    assert ui_login(api, ADMIN).status_code == 303
    page = api.get(f"/ui/{ORG}/{REPO}/changes/{CHANGE}")
    assert page.status_code == 200
    assert "marker of the change" in page.text and "marker of a task" in page.text
    assert "noise elsewhere" not in page.text

    # Both reads are index range scans (the planner's own answer, statistics up to date).
    db = api.app.state.ctx.db
    with db.write() as conn:
        if db.kind == "postgresql":
            _raw.execute(conn, _raw.SQL("ANALYZE events"), ())
        else:
            _raw.execute(conn, _raw.SQL("ANALYZE"), ())
    with db.read() as conn:
        for sql, index in ((_BY_ENTITY, "ix_events_entity"), (_BY_SCOPE, "ix_events_scope")):
            prefix = "EXPLAIN " if db.kind == "postgresql" else "EXPLAIN QUERY PLAN "
            plan = " ".join(
                str(part)
                for row in _raw.fetchall(conn, _raw.SQL(prefix + sql.qmark), (1, CHANGE, 500))
                for part in row
            )
            assert index in plan, plan
            assert "Seq Scan" not in plan and "SCAN events" not in plan.replace(
                f"SCAN events USING INDEX {index}", ""
            ), plan
