"""Finding 6: an invalid token costs the same whatever the number of projects (it used to
derive every known project's token, on the event loop)."""

from __future__ import annotations

from typing import Any

from api.conftest import ADMIN_H, P, error, ok
from conftest import ORG, auth, project_token
from loom.api.auth import derive_project_token


def _derivations() -> int:
    info = derive_project_token.cache_info()
    return info.hits + info.misses


def test_bad_token_cost_does_not_grow_with_projects(api: Any) -> None:
    for i in range(150):
        r = api.put(
            f"/api/v1/projects/{ORG}/r{i}/specs/s", json={"markdown": "# s\n"}, headers=ADMIN_H
        )
        ok(r)
    bad = auth("not-a-token")
    error(api.get(f"{P}/changes", headers=bad), 401, "unauthorized", "invalid_token")  # warm
    before = _derivations()
    for _ in range(5):
        error(api.get(f"{P}/changes", headers=bad), 401, "unauthorized", "invalid_token")
    # Was one HMAC per known project per request (150 x 5 here); now at most one each.
    assert _derivations() - before <= 5
    # The 403 "valid token, wrong project" still holds, also for projects created later.
    other = auth(project_token(ORG, "r7"))
    error(api.get(f"{P}/changes", headers=other), 403, "forbidden", "forbidden")
    ok(api.put(f"/api/v1/projects/{ORG}/late/specs/s", json={"markdown": "# s\n"}, headers=ADMIN_H))
    late = auth(project_token(ORG, "late"))
    error(api.get(f"{P}/changes", headers=late), 403, "forbidden", "forbidden")
    ok(api.get(f"/api/v1/projects/{ORG}/late/specs", headers=late))
