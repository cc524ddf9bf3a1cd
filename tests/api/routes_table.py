"""Every project route with a body that would be accepted, for the walks over all routes."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import Route

PREFIX = "/api/v1/projects/{org}/{repo}"

EVENT = {
    "v": 1,
    "ts": "2026-02-28T10:00:00.000Z",
    "entity": "task",
    "entity_id": "1.1",
    "op": "create",
    "actor": "cli",
    "by": "@t",
    "ctx": {"session_id": "s"},
}

# (method, path after the prefix, JSON body or None)
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/auth/verify", None),
    ("GET", "/changes", None),
    ("GET", "/changes/{change_id}", None),
    ("GET", "/changes/{change_id}/sync", None),
    ("POST", "/changes/{change_id}/sync", {"proposal": "# x\n", "specs": [], "revision": "1"}),
    ("POST", "/changes/{change_id}/archive", None),
    ("GET", "/changes/{change_id}/tasks", None),
    ("GET", "/changes/{change_id}/tasks/raw", None),
    ("POST", "/changes/{change_id}/tasks/init", None),
    ("POST", "/changes/{change_id}/tasks/add", {"title": "New"}),
    ("POST", "/changes/{change_id}/tasks/{task_id}/start", None),
    ("POST", "/changes/{change_id}/tasks/{task_id}/complete", {"note": "n"}),
    ("POST", "/changes/{change_id}/tasks/{task_id}/shelve", {"reason": "r"}),
    ("POST", "/changes/{change_id}/tasks/{task_id}/unshelve", None),
    ("GET", "/modules", None),
    ("GET", "/modules/{module_id}", None),
    ("PUT", "/modules/{module_id}", {"name": "Replaced"}),
    ("GET", "/specs", None),
    ("GET", "/specs/{spec_id}", None),
    ("PUT", "/specs/{spec_id}", {"markdown": "# replaced\n"}),
    ("POST", "/import", {"mode": "overwrite", "changes": [{"id": "009-01_imported"}]}),
    ("GET", "/export", None),
    ("POST", "/events", {"events": [EVENT], "idempotency_key": "walk"}),
    ("GET", "/events", None),
    ("POST", "/changes/{change_id}/claim", {"holder": "walker"}),
    ("POST", "/changes/{change_id}/heartbeat", {"holder": "walker"}),
    ("POST", "/changes/{change_id}/release", {"holder": "walker"}),
    ("GET", "/changes/{change_id}/lease", None),
    ("GET", "/leases", None),
    ("POST", "/allocate", {"holder": "walker"}),
    ("GET", "/changes/{change_id}/overlaps", None),
    ("GET", "/overlaps", None),
    ("GET", "/specs/{spec_id}/history", None),
]

# Routes whose answer never ends (Server-Sent Events): the walks above would block on them.
# Their auth, tenancy and filters are tested against a live server in tests/stream/.
STREAMS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/events/stream", None),
]

VALID = {"change_id": "001-01_alpha", "task_id": "1.1", "module_id": "001", "spec_id": "auth"}


def app_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path template) of every project route the app serves."""
    out: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, APIRoute | Route) and route.path.startswith(PREFIX):
            for method in route.methods or ():
                if method != "HEAD":
                    out.add((method, route.path.removeprefix(PREFIX)))
    return out


def fill(path: str, org: str = "acme", repo: str = "widgets", **values: str) -> str:
    params = {**VALID, **values}
    return (PREFIX + path).format(org=org, repo=repo, **params)
