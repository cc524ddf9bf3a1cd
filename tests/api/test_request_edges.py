"""Edges of request handling found by a black-box audit against API.md §0: encoded slashes,
trailing newlines, the Allow header of a 405, empty and undecodable bodies."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import auth

from .conftest import ADMIN_H, P, error, ok, push, raw_request

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
