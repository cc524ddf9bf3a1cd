"""The lease endpoints are answered ahead of the framework stack (loom.api.middleware.HotLane):
they must behave exactly as if the router had served them — body guard, error envelope,
unexpected errors, methods they do not serve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import FakeClock, make_settings
from loom.api.app import create_app
from loom.api.middleware import HotLane
from loom.service import leases as leases_service

from .conftest import ADMIN_H, P, error, ok, push

C = f"{P}/changes/001-01_alpha"
HOT = [f"{C}/claim", f"{C}/heartbeat", f"{C}/release", f"{P}/allocate"]
ALL_HOT = [*HOT, f"{P}/events"]


@pytest.mark.parametrize("path", HOT)
def test_a_body_over_the_limit_is_413_before_anything_runs(app_factory: Any, path: str) -> None:
    api = app_factory(max_body_bytes=1024)
    ok(push(api, "001-01_alpha"))
    resp = api.post(path, json={"holder": "a" * 2000}, headers=ADMIN_H)
    assert error(resp, 413, "payload_too_large", "payload_too_large")["max_bytes"] == 1024
    error(api.get(f"{C}/lease", headers=ADMIN_H), 404, "not_found", "lease_not_found")


@pytest.mark.parametrize("path", ALL_HOT)
def test_a_body_that_is_not_json_is_415(api: Any, path: str) -> None:
    resp = api.post(path, content=b"holder=a", headers={**ADMIN_H, "Content-Type": "text/plain"})
    error(resp, 415, "unsupported_media_type", "unsupported_media_type")


@pytest.mark.parametrize("path", HOT)
def test_malformed_json_400_bad_holder_400_wrong_shape_422(api: Any, path: str) -> None:
    ok(push(api, "001-01_alpha"))
    error(
        api.post(path, content=b"{", headers={**ADMIN_H, "Content-Type": "application/json"}),
        400,
        "bad_request",
        "invalid_json",
    )
    # A holder of the wrong type is a bad holder: 400 (API.md §2.7), naming the field.
    body = error(
        api.post(path, json={"holder": 5}, headers=ADMIN_H), 400, "bad_request", "invalid_id"
    )
    assert body["field"] == "holder"
    assert body["errors"][0]["loc"] == ["body", "holder"]
    error(api.post(path, json=[1], headers=ADMIN_H), 422, "unprocessable", "validation_error")


@pytest.mark.parametrize("path", ALL_HOT)
def test_a_missing_token_is_401_before_the_body_is_judged(api: Any, path: str) -> None:
    resp = api.post(path, content=b"{", headers={"Content-Type": "application/json"})
    error(resp, 401, "unauthorized", "missing_token")


def test_escaped_nul_and_lone_surrogates_in_a_holder_are_refused(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    json_h = {**ADMIN_H, "Content-Type": "application/json"}
    nul = api.post(f"{C}/claim", content=b'{"holder": "a\\u0000b"}', headers=json_h)
    assert "NUL" in error(nul, 422, "unprocessable", "validation_error")["error"]
    # A lone surrogate escape is JSON, but not storable text: 422, as on every other route.
    lone = api.post(f"{C}/claim", content=b'{"holder": "a\\ud800b"}', headers=json_h)
    assert "surrogate" in error(lone, 422, "unprocessable", "validation_error")["error"]
    error(api.get(f"{C}/lease", headers=ADMIN_H), 404, "not_found", "lease_not_found")


@pytest.mark.parametrize("path", HOT)
def test_other_methods_on_a_hot_path_are_405(api: Any, path: str) -> None:
    error(api.get(path, headers=ADMIN_H), 405, "method_not_allowed", "method_not_allowed")


def test_an_unexpected_error_in_a_hot_route_is_a_bare_500(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("secret /srv/loom/data path and SELECT * FROM leases")

    monkeypatch.setattr(leases_service, "claim", boom)
    resp = api.post(f"{C}/claim", json={"holder": "a"}, headers=ADMIN_H)
    assert error(resp, 500, "internal_error", "internal_error") == {
        "error": "internal server error",
        "code": "internal_error",
        "kind": "internal_error",
    }


def test_a_database_outage_on_a_hot_route_is_503(tmp_path: Path, clock: FakeClock) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "loom.db"
    app = create_app(
        make_settings(f"sqlite:///{missing}", tmp_path), clock=clock, run_migrations=False
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        resp = client.post(f"{C}/claim", json={"holder": "a"}, headers=ADMIN_H)
        body = error(resp, 503, "service_unavailable", "database_unavailable")
        assert str(tmp_path) not in resp.text
        assert body["error"] == "database unavailable"


def test_the_hot_routes_stay_in_the_openapi_document(api: Any) -> None:
    paths = api.get("/api/v1/openapi.json").json()["paths"]
    for path in ALL_HOT:
        template = path.replace("001-01_alpha", "{change_id}").replace(
            P, "/api/v1/projects/{org}/{repo}"
        )
        assert "post" in paths[template], template
        assert "requestBody" in paths[template]["post"]


# --------------------------------------------------------------------------- events


def _event(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "ts": "2026-02-28T10:00:00.000Z",
        "entity": "task",
        "entity_id": str(n),
        "op": "status_change",
        "actor": "cli",
        "by": "@a",
        "ctx": {"session_id": "s"},
        **extra,
    }


def _post_raw(api: Any, raw: bytes) -> Any:
    return api.post(
        f"{P}/events", content=raw, headers={**ADMIN_H, "Content-Type": "application/json"}
    )


def test_events_guard_and_shape_errors_match_the_model(app_factory: Any) -> None:
    api = app_factory(max_body_bytes=1024)
    big = {"events": [_event(i) for i in range(20)], "idempotency_key": "k"}
    error(
        api.post(f"{P}/events", json=big, headers=ADMIN_H),
        413,
        "payload_too_large",
        "payload_too_large",
    )
    error(_post_raw(api, b"[1, 2"), 400, "bad_request", "invalid_json")
    body = error(
        _post_raw(api, b'{"events": {"a": 1}, "idempotency_key": "k"}'),
        422,
        "unprocessable",
        "validation_error",
    )
    assert body["errors"][0]["loc"] == ["body", "events"]
    body = error(
        _post_raw(api, b'{"events": [], "idempotency_key": 5}'),
        422,
        "unprocessable",
        "validation_error",
    )
    assert body["errors"][0]["loc"] == ["body", "idempotency_key"]
    error(_post_raw(api, b"[]"), 422, "unprocessable", "validation_error")
    assert ok(api.get(f"{P}/events", headers=ADMIN_H)) == []


def test_non_finite_numbers_in_events_are_refused_naming_the_event(api: Any) -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        raw = (
            b'{"idempotency_key": "k", "events": ['
            + json.dumps(_event(1)).encode()
            + b", "
            + json.dumps(_event(2))[:-1].encode()
            + b', "meta": {"x": '
            + literal
            + b"}}]}"
        )
        body = error(_post_raw(api, raw), 400, "bad_request", "invalid_event")
        assert body["index"] == 1
    assert ok(api.get(f"{P}/events", headers=ADMIN_H)) == []


def test_events_keep_integers_beyond_64_bits_and_unicode(api: Any) -> None:
    batch = [_event(1, meta={"n": 2**80, "s": "naïve ✓ 日本"}), _event(2, meta={"f": 0.1})]
    resp = api.post(f"{P}/events", json={"events": batch, "idempotency_key": "k"}, headers=ADMIN_H)
    assert ok(resp) == {"accepted": 2, "duplicates": 0}
    stored = ok(api.get(f"{P}/events", headers=ADMIN_H))
    assert [e["meta"] for e in stored] == [{"n": 2**80, "s": "naïve ✓ 日本"}, {"f": 0.1}]
    # The same batch with other key order and spacing is the same batch.
    again = json.dumps(
        {"idempotency_key": "k", "events": [dict(reversed(e.items())) for e in batch]}, indent=2
    ).encode()
    assert ok(_post_raw(api, again)) == {"accepted": 0, "duplicates": 2}


def test_the_server_app_freezes_startup_objects_for_the_collector(
    tmp_path: Path, clock: FakeClock
) -> None:
    import gc

    settings = make_settings(f"sqlite:///{tmp_path / 'loom.db'}", tmp_path)
    # The suite's workers freeze what collection built; the count only falls as some of it
    # is freed.
    before = gc.get_freeze_count()
    with TestClient(create_app(settings, clock=clock)) as client:
        assert gc.get_freeze_count() <= before  # tests build many apps: no freezing by default
        client.get("/api/v1/health")
    thresholds = gc.get_threshold()
    try:
        with TestClient(create_app(settings, clock=clock, freeze_gc=True)) as client:
            assert gc.get_freeze_count() > before
            assert gc.get_threshold()[2] == 100  # full collections a tenth as often
            ok(client.get("/api/v1/health"))
    finally:
        gc.set_threshold(*thresholds)


# --------------------------------------------------------------------------- lane on / off

_EVENT = {
    "v": 1,
    "ts": "2026-02-28T10:00:00.000Z",
    "entity": "task",
    "entity_id": "1.1",
    "op": "status_change",
    "actor": "cli",
    "by": "@a",
    "ctx": {"session_id": "s"},
}
JSON_H = {**ADMIN_H, "Content-Type": "application/json"}
# A script over every hot route: successes, replays and each class of error.
SCRIPT: list[tuple[str, str, Any, dict[str, str]]] = [
    ("POST", f"{C}/claim", {"holder": "a", "ttl_seconds": 60}, ADMIN_H),
    ("POST", f"{C}/claim", {"holder": "b"}, ADMIN_H),  # 409 lease_conflict
    ("POST", f"{C}/claim", {"holder": "a"}, {**ADMIN_H, "Idempotency-Key": "k1"}),
    ("POST", f"{C}/claim", {"holder": "a"}, {**ADMIN_H, "Idempotency-Key": "k1"}),  # replay
    ("POST", f"{C}/claim", {"holder": "z"}, {**ADMIN_H, "Idempotency-Key": "k1"}),  # 422 reused
    ("POST", f"{C}/heartbeat", {"holder": "a", "ttl_seconds": 120}, ADMIN_H),
    ("POST", f"{C}/heartbeat", {"holder": "c"}, ADMIN_H),
    ("POST", f"{C}/heartbeat", {"holder": "a", "ttl_seconds": 1}, ADMIN_H),  # 400 ttl
    ("POST", f"{C}/release", {"holder": "b"}, ADMIN_H),
    ("POST", f"{C}/release?force=maybe", {"holder": "b"}, ADMIN_H),
    ("POST", f"{C}/release", {"holder": "a"}, ADMIN_H),
    ("POST", f"{P}/changes/001-99_nope/claim", {"holder": "a"}, ADMIN_H),  # 404
    ("POST", f"{P}/changes/Bad%20Id/claim", {"holder": "a"}, ADMIN_H),  # 400 invalid_id
    ("POST", f"{C}/claim", {"holder": "a"}, {}),  # 401
    ("POST", f"{C}/claim", {"holder": "a"}, {"Authorization": "Bearer nope"}),  # 401
    ("POST", f"{C}/claim", b"{", JSON_H),  # 400 invalid_json
    ("POST", f"{C}/claim", b"", JSON_H),  # 400 / 422 as the router would
    ("POST", f"{C}/claim", b"holder=a", {**ADMIN_H, "Content-Type": "text/plain"}),  # 415
    ("POST", f"{C}/claim", {"holder": "a" * 5000}, ADMIN_H),  # 413
    ("POST", f"{C}/claim", [1], ADMIN_H),  # 422
    ("POST", f"{C}/claim", {"holder": 5}, ADMIN_H),  # 400 field holder
    ("POST", f"{C}/claim", {"holder": "a"}, {**ADMIN_H, "X-Loom-Fencing-Token": "x"}),
    ("POST", f"{P}/allocate", {"holder": "d", "ttl_seconds": 30}, ADMIN_H),
    ("POST", f"{P}/allocate", {"holder": "e", "module": "xyz"}, ADMIN_H),
    ("POST", f"{P}/allocate", {"holder": "e", "changes": []}, {**ADMIN_H, "Idempotency-Key": "a"}),
    ("POST", f"{P}/allocate", {"holder": "e", "changes": []}, {**ADMIN_H, "Idempotency-Key": "a"}),
    ("POST", f"{P}/events", {"events": [_EVENT], "idempotency_key": "b1"}, ADMIN_H),
    ("POST", f"{P}/events", {"events": [_EVENT], "idempotency_key": "b1"}, ADMIN_H),
    ("POST", f"{P}/events", {"events": [{**_EVENT, "v": 2}], "idempotency_key": "b2"}, ADMIN_H),
    ("POST", f"{P}/events", {"events": "no"}, ADMIN_H),
    ("POST", f"{P}/events", b"[1,2", JSON_H),
    ("GET", f"{P}/events", None, ADMIN_H),
    ("GET", f"{P}/leases", None, ADMIN_H),
    ("GET", f"{C}/claim", None, ADMIN_H),  # 405, not served by the lane
]


def _answers(app: Any) -> list[tuple[int, dict[str, str], bytes]]:
    out = []
    with TestClient(app, raise_server_exceptions=False) as client:
        ok(push(client, "001-01_alpha"))
        for method, path, body, headers in SCRIPT:
            if isinstance(body, bytes):
                resp = client.request(method, path, content=body, headers=headers)
            elif body is None:
                resp = client.request(method, path, headers=headers)
            else:
                resp = client.request(method, path, json=body, headers=headers)
            kept = {k: v for k, v in resp.headers.items() if k != "date"}
            out.append((resp.status_code, kept, resp.content))
    return out


def test_the_lane_and_the_router_give_the_same_answers(tmp_path: Path) -> None:
    """The same script against the app with and without the hot lane: every status, header
    and body byte agrees (each app has its own database and the same clock)."""
    answers = []
    for lane in (True, False):
        settings = make_settings(
            f"sqlite:///{tmp_path / f'lane-{lane}.db'}", tmp_path, max_body_bytes=4096
        )
        app = create_app(settings, clock=FakeClock(), hot_lane=lane)
        assert any(m.cls is HotLane for m in app.user_middleware) is lane
        answers.append(_answers(app))
    with_lane, without = answers
    assert len(with_lane) == len(SCRIPT)
    for step, (a, b) in enumerate(zip(with_lane, without, strict=True)):
        assert a == b, (step, SCRIPT[step][:2], a, b)
    statuses = {status for status, _h, _b in with_lane}
    assert {200, 400, 401, 404, 405, 409, 413, 415, 422} <= statuses


def test_a_middleware_added_later_sees_the_hot_routes(tmp_path: Path) -> None:
    """The lane is the innermost middleware: one added to the app afterwards (here a header)
    reaches claim and events as it reaches push."""
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'm.db'}", tmp_path), clock=FakeClock())

    @app.middleware("http")
    async def stamp(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["X-Stamp"] = "yes"
        return response

    with TestClient(app) as client:
        assert push(client, "001-01_alpha").headers["x-stamp"] == "yes"
        claimed = client.post(f"{C}/claim", json={"holder": "a"}, headers=ADMIN_H)
        assert claimed.status_code == 200 and claimed.headers["x-stamp"] == "yes"
        events = client.post(f"{P}/events", json={"events": []}, headers=ADMIN_H)
        assert events.status_code == 200 and events.headers["x-stamp"] == "yes"
