"""Named tokens in-process, on both databases: scopes, targets, expiry, revocation, audit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from conftest import ADMIN, ORG, REPO, FakeClock, auth, project_token, ui_login

from .conftest import ENHANCED, P, error, ok, push
from .routes_table import ROUTES, fill

ADMIN_H = auth(ADMIN)


def create(api: Any, name: str, headers: dict[str, str] | None = None, **body: Any) -> Any:
    resp = api.post("/api/v1/admin/tokens", json={"name": name, **body}, headers=headers or ADMIN_H)
    return resp


def new_token(api: Any, name: str, **body: Any) -> str:
    data = ok(create(api, name, **body), 200)
    assert data["token"].startswith("loom_")
    return str(data["token"])


@pytest.fixture
def tapi(app_factory: Callable[..., Any]) -> Any:
    """An app that reads named tokens from the database on every request (cache 0 s)."""
    return app_factory(token_cache_seconds=0)


def seed_change(api: Any) -> None:
    ok(push(api, "001-01_alpha", tasks=ENHANCED))


def test_only_the_hash_is_stored_and_list_never_shows_secrets(tapi: Any, database_url: str) -> None:
    secret = new_token(tapi, "agent-1", project=f"{ORG}/{REPO}")
    assert len(secret) == 48
    listed = ok(tapi.get("/api/v1/admin/tokens", headers=ADMIN_H))["tokens"]
    assert [t["name"] for t in listed] == ["agent-1"]
    assert listed[0]["scope"] == "write"
    assert listed[0]["target"] == f"{ORG}/{REPO}"
    assert listed[0]["state"] == "active"
    assert secret not in str(listed)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text("SELECT * FROM api_tokens"))]
    engine.dispose()
    assert len(rows) == 1
    assert all(secret not in str(v) and secret[5:] not in str(v) for v in rows[0])


def test_a_duplicate_name_is_409_and_bad_input_400(tapi: Any) -> None:
    new_token(tapi, "dup", org=ORG)
    error(create(tapi, "dup", org=ORG), 409, "conflict", "token_exists")
    error(create(tapi, "x", org=ORG, project="a/b"), 400, "bad_request", "invalid_target")
    bad = create(tapi, "bad name", org=ORG)  # the body schema's pattern
    assert (bad.status_code, bad.json()["code"]) == (400, "bad_request"), bad.text
    error(create(tapi, "e", org=ORG, expires="soon"), 400, "bad_request", "invalid_expiry")
    error(create(tapi, "e", org=ORG, expires="0s"), 400, "bad_request", "invalid_expiry")
    error(create(tapi, "e", org=ORG, expires="999999999w"), 400, "bad_request", "invalid_expiry")
    error(
        create(tapi, "e", org=ORG, expires="99999-01-01T00:00:00Z"),
        400,
        "bad_request",
        "invalid_expiry",
    )
    assert [t["name"] for t in ok(tapi.get("/api/v1/admin/tokens", headers=ADMIN_H))["tokens"]] == [
        "dup"
    ]


def test_read_token_reads_and_is_403_on_every_write(tapi: Any) -> None:
    seed_change(tapi)
    ok(tapi.put(f"{P}/modules/001", json={"name": "M"}, headers=ADMIN_H))
    ok(tapi.put(f"{P}/specs/auth", json={"markdown": "# a\n"}, headers=ADMIN_H))
    reader = auth(new_token(tapi, "reader", project=f"{ORG}/{REPO}", scope="read"))
    writes = [(m, p, b) for m, p, b in ROUTES if m != "GET"]
    assert len(writes) == 16  # every mutating route of the table, lease operations included
    for method, path, body in writes:
        resp = tapi.request(method, fill(path), json=body, headers=reader)
        error(resp, 403, "forbidden", "forbidden")
    for method, path, _ in ROUTES:
        if method == "GET":
            resp = tapi.get(fill(path), headers=reader)
            assert resp.status_code in (200, 404), (path, resp.status_code, resp.text)
            if path in ("/changes", "/changes/{change_id}/sync", "/leases", "/events"):
                assert resp.status_code == 200, (path, resp.text)
    verify = ok(tapi.get(f"{P}/auth/verify", headers=reader))
    assert verify["token_name"] == "reader" and verify["access"] == "read"
    # Nothing was written by the refused requests.
    events = ok(tapi.get(f"{P}/events", headers=ADMIN_H))
    assert all(e.get("by") != "reader" for e in events)


def test_expired_token_is_401_on_the_injected_clock(tapi: Any, clock: FakeClock) -> None:
    seed_change(tapi)
    token = auth(new_token(tapi, "short", project=f"{ORG}/{REPO}", expires="90s"))
    ok(tapi.get(f"{P}/changes", headers=token))
    clock.advance(89)
    ok(tapi.get(f"{P}/changes", headers=token))
    clock.advance(1)
    error(tapi.get(f"{P}/changes", headers=token), 401, "unauthorized", "token_expired")
    listed = ok(tapi.get("/api/v1/admin/tokens", headers=ADMIN_H))["tokens"]
    assert listed[0]["state"] == "expired"


def test_a_past_rfc3339_expiry_makes_an_expired_token(tapi: Any) -> None:
    made = ok(create(tapi, "late", org=ORG, expires="2020-01-01T00:00:00Z"), 200)
    assert made["state"] == "expired" and made["expires"] == "2020-01-01T00:00:00.000000Z"
    error(
        tapi.get(f"{P}/changes", headers=auth(made["token"])), 401, "unauthorized", "token_expired"
    )


def test_revoked_token_is_401_on_its_next_request(tapi: Any) -> None:
    token = auth(new_token(tapi, "gone", org=ORG))
    ok(tapi.get(f"{P}/changes", headers=token))
    ok(tapi.delete("/api/v1/admin/tokens/gone", headers=ADMIN_H))
    error(tapi.get(f"{P}/changes", headers=token), 401, "unauthorized", "token_revoked")
    error(
        tapi.delete("/api/v1/admin/tokens/gone", headers=ADMIN_H),
        404,
        "not_found",
        "token_not_found",
    )
    # The name can be used again; the old secret stays dead.
    fresh = auth(new_token(tapi, "gone", org=ORG))
    ok(tapi.get(f"{P}/changes", headers=fresh))
    error(tapi.get(f"{P}/changes", headers=token), 401, "unauthorized", "invalid_token")


def test_org_token_covers_its_org_only(tapi: Any) -> None:
    token = auth(new_token(tapi, "org-agent", org=ORG))
    for repo in (REPO, "gadgets"):
        ok(push(tapi, "001-01_alpha", headers=token, prefix=f"/api/v1/projects/{ORG}/{repo}"))
    resp = push(tapi, "001-01_alpha", headers=token, prefix="/api/v1/projects/other/widgets")
    error(resp, 403, "forbidden", "forbidden")


def test_project_token_target_and_unknown_named_token(tapi: Any) -> None:
    token = auth(new_token(tapi, "one", project=f"{ORG}/{REPO}"))
    ok(tapi.get(f"{P}/changes", headers=token))
    error(
        tapi.get(f"/api/v1/projects/{ORG}/gadgets/changes", headers=token),
        403,
        "forbidden",
        "forbidden",
    )
    bogus = auth("loom_" + "A" * 43)
    error(tapi.get(f"{P}/changes", headers=bogus), 401, "unauthorized", "invalid_token")


def test_audit_events_name_the_token(tapi: Any) -> None:
    token = auth(new_token(tapi, "ci-agent-7", project=f"{ORG}/{REPO}"))
    ok(push(tapi, "001-01_alpha", headers=token))
    ok(tapi.post(f"{P}/changes/001-01_alpha/claim", json={"holder": "h1"}, headers=token))
    events = ok(tapi.get(f"{P}/events", headers=ADMIN_H))
    pushed = [e for e in events if e["entity"] == "change" and e["op"] in ("create", "update")]
    assert pushed and all(e["by"] == "ci-agent-7" for e in pushed), events


def test_a_takeover_after_expiry_names_the_token_that_took_over(
    tapi: Any, clock: FakeClock
) -> None:
    """The ``expire`` and ``claim`` a takeover records name the new holder's token; each
    keeps the holder it concerns in ``meta.holder``. Ito's tokens keep ``@holder``."""
    ok(push(tapi, "001-01_alpha"))
    first = auth(new_token(tapi, "agent-a", project=f"{ORG}/{REPO}"))
    second = auth(new_token(tapi, "agent-b", project=f"{ORG}/{REPO}"))
    claim = f"{P}/changes/001-01_alpha/claim"
    ok(tapi.post(claim, json={"holder": "a", "ttl_seconds": 60}, headers=first))
    clock.advance(61)
    ok(tapi.post(claim, json={"holder": "b", "ttl_seconds": 60}, headers=second))
    clock.advance(61)
    ok(tapi.post(claim, json={"holder": "c"}, headers=auth(project_token())))
    events = ok(tapi.get(f"{P}/events?entity=change", headers=ADMIN_H))
    lease = [(e["op"], e["by"], e["meta"]["holder"]) for e in events if e["op"] != "create"]
    assert lease == [
        ("claim", "agent-a", "a"),
        ("expire", "agent-b", "a"),
        ("claim", "agent-b", "b"),
        ("expire", "@c", "b"),
        ("claim", "@c", "c"),
    ], events


def test_admin_routes_need_an_admin_token(tapi: Any) -> None:
    writer = auth(new_token(tapi, "w", org=ORG))
    server_reader = auth(new_token(tapi, "watch", admin=True, scope="read"))
    boss = auth(new_token(tapi, "boss", admin=True))
    error(tapi.get("/api/v1/admin/tokens"), 401, "unauthorized", "missing_token")
    error(
        tapi.get("/api/v1/admin/tokens", headers=auth(project_token())),
        401,
        "unauthorized",
        "invalid_token",
    )
    error(tapi.get("/api/v1/admin/tokens", headers=writer), 403, "forbidden", "admin_required")
    error(
        tapi.get("/api/v1/admin/tokens", headers=server_reader), 403, "forbidden", "admin_required"
    )
    ok(create(tapi, "made-by-boss", headers=boss, project=f"{ORG}/{REPO}"), 200)
    # A server-wide read token reads every project and writes none.
    ok(tapi.get("/api/v1/projects/any/thing/changes", headers=server_reader))
    error(push(tapi, "001-01_alpha", headers=server_reader), 403, "forbidden", "forbidden")
    # A server-wide admin token may force-release.
    ok(push(tapi, "001-01_alpha"))
    ok(tapi.post(f"{P}/changes/001-01_alpha/claim", json={"holder": "h"}, headers=ADMIN_H))
    ok(
        tapi.post(
            f"{P}/changes/001-01_alpha/release?force=true", json={"holder": "x"}, headers=boss
        )
    )


def test_project_tokens_can_be_switched_off(app_factory: Callable[..., Any]) -> None:
    on = app_factory()
    ok(on.get(f"{P}/changes", headers=auth(project_token())))
    off = app_factory(project_tokens=False)
    error(
        off.get(f"{P}/changes", headers=auth(project_token())), 401, "unauthorized", "invalid_token"
    )
    ok(off.get(f"{P}/changes", headers=ADMIN_H))


def test_the_token_cache_trusts_an_entry_for_less_than_its_ttl() -> None:
    from loom.domain.tokens import NamedToken, Target
    from loom.service._tokencache import MISS, TokenCache

    now = [100.0]
    cache = TokenCache(1.0, monotonic=lambda: now[0])
    token = NamedToken("n", "write", Target("org", ORG), 0)
    assert cache.get("h") is MISS
    cache.put("h", token)
    cache.put("unknown", None)
    now[0] += 0.999
    assert cache.get("h") is token
    assert cache.get("unknown") is None
    now[0] += 0.001
    assert cache.get("h") is MISS and cache.get("unknown") is MISS
    assert cache.due_for_touch("h") and not cache.due_for_touch("h")
    now[0] += 60
    assert cache.due_for_touch("h")


def test_the_dashboard_accepts_named_tokens_through_the_same_check(tapi: Any) -> None:
    ok(push(tapi, "001-01_alpha"))
    secret = new_token(tapi, "viewer", project=f"{ORG}/{REPO}", scope="read")
    login = ui_login(tapi, secret)
    assert login.status_code == 303, login.text
    assert tapi.get("/ui/").status_code == 200
    assert tapi.get(f"/ui/{ORG}/{REPO}").status_code == 200
    assert tapi.get(f"/ui/{ORG}/gadgets").status_code == 403
    ok(tapi.delete("/api/v1/admin/tokens/viewer", headers=ADMIN_H))
    # Revoked: the session ends with its token (back to the sign-in form), at once.
    gone = tapi.get(f"/ui/{ORG}/{REPO}", follow_redirects=False)
    assert (gone.status_code, gone.headers["location"]) == (303, "/ui/login")
    tapi.cookies.clear()
    again = ui_login(tapi, secret)
    assert again.status_code == 401
    # Only an admin-scoped named token gets the admin controls (force-release).
    ok(tapi.post(f"{P}/changes/001-01_alpha/claim", json={"holder": "h"}, headers=ADMIN_H))
    page = f"/ui/{ORG}/{REPO}/changes/001-01_alpha"
    for name, scope, shown in (("w2", "write", False), ("ops", "admin", True)):
        tapi.cookies.clear()
        token = new_token(tapi, name, org=ORG, scope=scope)
        assert ui_login(tapi, token).is_redirect
        assert ("Force-release" in tapi.get(page).text) is shown, name
