"""Edges of request handling found by a black-box audit against API.md §0: encoded slashes,
trailing newlines, the Allow header of a 405, empty and undecodable bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import auth

from .conftest import ADMIN_H, P, error, ok, push, raw_request
from .routes_table import ROUTES, fill

C = f"{P}/changes/001-01_alpha"


@pytest.mark.parametrize(
    ("method", "raw_path"),
    [
        ("GET", f"{P}/changes/001-01_alpha%2Fsync"),
        ("GET", f"{P}/changes/001-01_alpha%2fsync"),
        ("GET", f"{P}/changes/..%2F..%2Fx/sync"),
        ("GET", "/api/v1/projects/acme%2Fx/widgets/auth/verify"),
        ("POST", f"{C}/tasks/a%2Fb/start"),
        ("POST", f"{P}/changes/001-01_alpha%2Fx/tasks/1.1/start"),
        ("POST", f"{C}%2Fclaim"),
    ],
)
def test_an_encoded_slash_in_an_id_is_400_invalid_id(api: Any, method: str, raw_path: str) -> None:
    ok(push(api, "001-01_alpha"))
    status, headers, body = raw_request(api, method, raw_path, headers=ADMIN_H, body={})
    assert status == 400, body
    assert headers["content-type"] == "application/json"
    assert b'"kind":"invalid_id"' in body


def test_a_trailing_newline_is_not_part_of_a_valid_id(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    for path in (f"{C}%0A", f"{C}%0A/sync", f"{C}%0A/tasks"):
        status, _, body = raw_request(api, "GET", path, headers=ADMIN_H)
        assert status == 400, (path, body)
        assert b'"kind":"invalid_id"' in body
    resp = api.post(f"{C}/tasks/init", headers={**ADMIN_H, "Idempotency-Key": "k\n"})
    error(resp, 400, "bad_request", "invalid_idempotency_key")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", f"{C}/sync", "GET, POST"),
        ("DELETE", f"{P}/events", "GET, POST"),
        ("DELETE", f"{P}/modules/001", "GET, PUT"),
        ("PATCH", f"{P}/specs/auth", "GET, PUT"),
        ("GET", f"{C}/claim", "POST"),
    ],
)
def test_a_405_names_every_method_of_the_path(
    api: Any, method: str, path: str, allowed: str
) -> None:
    resp = api.request(method, path, headers=ADMIN_H)
    error(resp, 405, "method_not_allowed", "method_not_allowed")
    assert resp.headers["allow"] == allowed


@pytest.mark.parametrize("path", [f"{C}/sync", f"{P}/import", f"{C}/tasks/add", f"{C}/claim"])
def test_an_empty_body_where_json_is_required_is_malformed_json(api: Any, path: str) -> None:
    json_h = {"Content-Type": "application/json"}
    resp = api.post(path, content=b"", headers={**ADMIN_H, **json_h})
    error(resp, 400, "bad_request", "invalid_json")
    # ... after the token check, as every other error.
    error(
        api.post(path, content=b"", headers={**auth("bogus"), **json_h}),
        401,
        "unauthorized",
        "invalid_token",
    )


def test_a_body_that_is_not_utf8_is_malformed_json(api: Any) -> None:
    resp = api.post(
        f"{C}/sync",
        content=b'{"specs": [], "proposal": "\xff"}',
        headers={**ADMIN_H, "Content-Type": "application/json"},
    )
    error(resp, 400, "bad_request", "invalid_json")
    error(api.get(f"{C}", headers=ADMIN_H), 404, "not_found", "change_not_found")


_SERVER_ROUTES = [
    ("GET", "/api/v1/health", None),
    ("GET", "/api/v1/ready", None),
    ("GET", "/api/v1/openapi.json", None),
    ("GET", "/api/v1/admin/tokens", None),
    ("GET", "/metrics", None),
]


def test_a_query_parameter_without_a_name_is_400_on_every_route(api: Any) -> None:
    """Found by schemathesis' negative_data_rejection: ``GET …/changes?=false`` was 200. A
    nameless parameter is malformed (it cannot be an unknown parameter an Ito client meant),
    so every route refuses it before routing or authentication; unknown *named* parameters
    stay ignored (docs/ito-compat.md)."""
    ok(push(api, "001-01_alpha"))
    routes = [(m, fill(p), b) for m, p, b in ROUTES] + _SERVER_ROUTES
    for method, path, body in routes:
        for query in ("=false", "lifecycle=all&=x", "="):
            status, headers, raw = raw_request(
                api, method, f"{path}?{query}", headers=ADMIN_H, body=body
            )
            assert status == 400, (method, path, query, raw)
            assert headers["content-type"] == "application/json"
            envelope = json.loads(raw)
            assert (envelope["code"], envelope["kind"]) == ("bad_request", "invalid_parameter")
            assert "empty name" in envelope["error"]
    error(api.get(f"{P}/changes?=false"), 400, "bad_request", "invalid_parameter")  # no token


def test_empty_pieces_and_unknown_named_parameters_are_still_accepted(api: Any) -> None:
    ok(push(api, "001-01_alpha"))
    for query in ("", "?lifecycle=all&&", "?&lifecycle=all", "?unknown=1", "?x", "?a=&b="):
        status, _, raw = raw_request(api, "GET", f"{P}/changes{query}", headers=ADMIN_H)
        assert status == 200, (query, raw)
        assert [c["id"] for c in json.loads(raw)] == ["001-01_alpha"]
