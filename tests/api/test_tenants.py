"""Two tenants on one server (API.md §0 Auth, PRODUCT.md §3.5): a project token reaches only
its own project (403 elsewhere, on every route), admin reaches all, and the allowlist answers
403 to valid tokens and 401 to everyone else, so it cannot be probed."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import auth, project_token
from store._snapshot import snapshot

from .conftest import ADMIN_H, ENHANCED, error, ok, push
from .routes_table import ROUTES, fill

A = ("acme", "widgets")
B = ("globex", "gadgets")
FORBIDDEN = {
    "error": "this token is not allowed to access this project",
    "code": "forbidden",
    "kind": "forbidden",
}


def _prefix(project: tuple[str, str]) -> str:
    return f"/api/v1/projects/{project[0]}/{project[1]}"


def _seed(api: Any, *projects: tuple[str, str]) -> None:
    for project in projects:
        prefix = _prefix(project)
        ok(push(api, "001-01_alpha", tasks=ENHANCED, prefix=prefix))
        ok(api.put(f"{prefix}/modules/001", json={"name": "Backend"}, headers=ADMIN_H))
        ok(api.put(f"{prefix}/specs/auth", json={"markdown": "# Auth\n"}, headers=ADMIN_H))


def _call(api: Any, project: tuple[str, str], headers: dict[str, str], route: Any) -> Any:
    method, template, body = route
    url = fill(template, org=project[0], repo=project[1])
    return api.request(method, url, json=body, headers=headers)


def _rid(route: Any) -> str:
    return f"{route[0]} {route[1]}"


def test_a_project_token_cannot_read_or_write_another_project(api: Any, database_url: str) -> None:
    _seed(api, A, B)
    before = snapshot(database_url)
    for route in ROUTES:
        for me, other in ((A, B), (B, A)):
            resp = _call(api, other, auth(project_token(*me)), route)
            assert error(resp, 403, "forbidden", "forbidden") == FORBIDDEN, _rid(route)
    assert snapshot(database_url) == before


def test_tokens_matching_nothing_are_401_on_every_route(api: Any) -> None:
    _seed(api, A, B)
    never_seen = project_token("initech", "tps")  # a project the server does not know
    for route in ROUTES:
        error(_call(api, B, {}, route), 401, "unauthorized", "missing_token")
        error(_call(api, B, auth("bogus"), route), 401, "unauthorized", "invalid_token")
        error(_call(api, B, auth(never_seen), route), 401, "unauthorized", "invalid_token")
        error(
            _call(api, B, auth(project_token(*B, seed="other-seed")), route),
            401,
            "unauthorized",
            "invalid_token",
        )


@pytest.mark.parametrize("who", ["admin", "own"])
def test_admin_and_the_own_token_pass_every_route(api: Any, who: str) -> None:
    _seed(api, A, B)
    headers = ADMIN_H if who == "admin" else auth(project_token(*B))
    for route in ROUTES:
        resp = _call(api, B, headers, route)
        assert resp.status_code not in (401, 403), (_rid(route), resp.text)
        assert resp.status_code < 500, (_rid(route), resp.text)


def test_project_tokens_of_allowlisted_projects_are_known_too(app_factory: Any) -> None:
    """A project named in the allowlist counts as known even before it has any data."""
    api = app_factory(allow_projects=("acme/widgets", "globex/gadgets"))
    resp = api.get(f"{_prefix(B)}/changes", headers=auth(project_token(*A)))
    assert error(resp, 403, "forbidden", "forbidden") == FORBIDDEN


def test_the_allowlist(app_factory: Any, database_url: str) -> None:
    api = app_factory(allow_orgs=("acme",), allow_projects=("globex/gadgets",))
    _seed(api, A, B)
    before = snapshot(database_url)
    denied = [("globex", "secret-repo"), ("initech", "tps")]
    allowed = [A, ("acme", "anything"), B]
    for route in ROUTES:
        for project in denied:
            # Valid tokens: the admin's, and the project's own derived token.
            for headers in (ADMIN_H, auth(project_token(*project))):
                resp = _call(api, project, headers, route)
                assert error(resp, 403, "forbidden", "forbidden") == FORBIDDEN, _rid(route)
        for project in denied + allowed:
            # Without a valid token the answer does not depend on the allowlist.
            assert _call(api, project, {}, route).json() == {
                "error": "Missing bearer token",
                "code": "unauthorized",
                "kind": "missing_token",
            }
            assert _call(api, project, auth("bogus"), route).json() == {
                "error": "Invalid bearer token",
                "code": "unauthorized",
                "kind": "invalid_token",
            }
    assert snapshot(database_url) == before
    for project in allowed:
        ok(api.get(f"{_prefix(project)}/changes", headers=ADMIN_H))
        ok(api.get(f"{_prefix(project)}/auth/verify", headers=auth(project_token(*project))))


def test_data_is_isolated_between_projects(api: Any) -> None:
    _seed(api, A)
    b = _prefix(B)
    assert ok(api.get(f"{b}/changes", headers=ADMIN_H)) == []
    assert ok(api.get(f"{b}/specs", headers=ADMIN_H)) == []
    assert ok(api.get(f"{b}/modules", headers=ADMIN_H)) == []
    assert ok(api.get(f"{b}/events", headers=ADMIN_H)) == []
    assert ok(api.get(f"{b}/leases", headers=ADMIN_H)) == []
    error(
        api.get(f"{b}/changes/001-01_alpha/sync", headers=ADMIN_H),
        404,
        "not_found",
        "change_not_found",
    )
    error(api.get(f"{b}/specs/auth", headers=ADMIN_H), 404, "not_found", "spec_not_found")
    # The same change id in B is a different change.
    ok(push(api, "001-01_alpha", proposal="# B\n", prefix=b))
    assert ok(api.get(f"{b}/changes/001-01_alpha/sync", headers=ADMIN_H))["proposal"] == "# B\n"
    assert (
        ok(api.get(f"{_prefix(A)}/changes/001-01_alpha/sync", headers=ADMIN_H))["proposal"]
        == "# Proposal\n"
    )
