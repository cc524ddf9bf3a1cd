"""Findings 2, 3 and the deep-JSON part of 7: nothing can be stored that makes a later read
fail, and deep JSON is a 400 envelope, never a RecursionError."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.conftest import ADMIN_H, P, error, ok, push
from loom.domain.events import MAX_DEPTH


def _event(meta: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "ts": "2026-01-01T00:00:00.000Z",
        "entity": "change",
        "entity_id": "001-01_a",
        "op": "note",
        "actor": "agent",
        "by": "@a",
        "ctx": {"session_id": "s"},
        "meta": meta,
    }


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("archived_at", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"])
def test_import_refuses_archive_times_outside_the_utc_range(api: Any, archived_at: str) -> None:
    body = {
        "mode": "create-only",
        "changes": [
            {"id": "001-01_a", "proposal": "# p\n", "specs": [], "archived_at": archived_at}
        ],
    }
    r = api.post(f"{P}/import", json=body, headers=ADMIN_H)
    error(r, 400, "bad_request", "invalid_timestamp")
    for path in ("changes?lifecycle=all", "changes?lifecycle=archived", "export"):
        ok(api.get(f"{P}/{path}", headers=ADMIN_H))
    # The extremes that do convert are stored and read back.
    body["changes"][0]["archived_at"] = "0001-01-01T23:59:00+23:59"
    ok(api.post(f"{P}/import", json=body, headers=ADMIN_H))
    listed = ok(api.get(f"{P}/changes?lifecycle=all", headers=ADMIN_H))
    assert listed[0]["archived_at"].startswith("0001-01-01T00:00:00")
    ok(api.get(f"{P}/export", headers=ADMIN_H))
    ok(api.get(f"{P}/changes/001-01_a?lifecycle=all", headers=ADMIN_H))


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 950, 1_100])
def test_event_meta_nesting_is_limited_on_ingest(api: Any, depth: int) -> None:
    # (Built as text: the test's own json.dumps would hit the recursion limit first.)
    event = json.dumps(_event("META")).replace('"META"', "[" * depth + "1" + "]" * depth)
    body = f'{{"events": [{event}], "idempotency_key": "k{depth}"}}'
    headers = {**ADMIN_H, "Content-Type": "application/json"}
    r = api.post(f"{P}/events", content=body.encode(), headers=headers)
    assert r.status_code == 400, r.text[:200]
    assert r.json()["kind"] in ("invalid_event", "invalid_json")
    assert ok(api.get(f"{P}/events", headers=ADMIN_H)) == []


def test_event_meta_at_the_limit_is_stored_and_read_back(api: Any) -> None:
    body = {"events": [_event(_nested(MAX_DEPTH - 1))], "idempotency_key": "at-limit"}
    assert ok(api.post(f"{P}/events", json=body, headers=ADMIN_H))["accepted"] == 1
    events = ok(api.get(f"{P}/events", headers=ADMIN_H))
    assert events[0]["meta"] == _nested(MAX_DEPTH - 1)


DEEP = b"[" * 1_000 + b"]" * 1_000


@pytest.mark.parametrize(
    "path", ["changes/001-01_a/sync", "changes/001-01_a/claim", "allocate", "events", "import"]
)
def test_deep_json_with_an_idempotency_key_is_a_400_envelope(api: Any, path: str) -> None:
    ok(push(api, "001-01_a"))
    headers = {**ADMIN_H, "Idempotency-Key": f"deep-{path}", "Content-Type": "application/json"}
    for body in (DEEP, b'{"holder": "a", "x": ' + DEEP + b"}"):
        r = api.post(f"{P}/{path}", content=body, headers=headers)
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
        assert r.headers["content-type"] == "application/json"
        assert {"error", "code", "kind"} <= set(r.json())
