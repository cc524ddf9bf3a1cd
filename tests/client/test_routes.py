"""Each Client method sends the documented request and parses the documented response."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from loom.client import Client, ProjectSnapshot
from loom.models import ImportChange, ImportModule, ImportSpec

from ._fakes import Recorder, make_client

P = "/api/v1/projects/acme/widgets"
CLAIM = {
    "change_id": "001-01_a",
    "holder": "agent-1",
    "acquired_at": "2030-01-01T00:00:00Z",
    "expires_at": "2030-01-01T00:15:00Z",
    "ttl_seconds": 900,
    "fencing_token": 7,
}
TASK = {"id": "1.1", "name": "First", "status": "in-progress", "wave": 1}
SUMMARY = {
    "id": "001-01_a",
    "module_id": "001",
    "completed_tasks": 1,
    "shelved_tasks": 0,
    "in_progress_tasks": 0,
    "pending_tasks": 1,
    "total_tasks": 2,
    "has_proposal": True,
    "has_design": False,
    "has_specs": True,
    "has_tasks": True,
    "work_status": "ready",
    "last_modified": "2026-11-27T10:00:00Z",
    "revision": "3",
    "archived_at": None,
    "lease": {"holder": "agent-7", "expires_at": "2030-01-01T00:00:00Z", "fencing_token": 4},
    "future_field": 1,
}
EVENT = {
    "v": 1,
    "ts": "2026-02-28T10:00:00Z",
    "entity": "task",
    "entity_id": "1.1",
    "op": "create",
    "from": None,
    "to": "pending",
    "actor": "cli",
    "by": "@a",
    "ctx": {"session_id": "s"},
    "seq": 1,
}

Route = tuple[
    Callable[[Client], Any],  # call
    str,  # method
    str,  # path
    dict[str, str],  # query
    Any,  # body (None = no body)
    Any,  # response json
    Callable[[Any], bool],  # check result
]

ROUTES: dict[str, Route] = {
    "health": (
        lambda c: c.health(),
        "GET",
        "/api/v1/health",
        {},
        None,
        {"status": "ok", "version": "0.1.0"},
        lambda r: r.version == "0.1.0",
    ),
    "ready": (
        lambda c: c.ready(),
        "GET",
        "/api/v1/ready",
        {},
        None,
        {"status": "ready"},
        lambda r: r.ok,
    ),
    "verify": (
        lambda c: c.verify(),
        "GET",
        f"{P}/auth/verify",
        {},
        None,
        {"valid": True, "scope": "project", "project_id": "acme/widgets"},
        lambda r: r.scope == "project",
    ),
    "list_changes": (
        lambda c: c.list_changes(lifecycle="all", module="001", status=["ready", "paused"]),
        "GET",
        f"{P}/changes",
        {"lifecycle": "all", "module": "001", "status": "ready,paused"},
        None,
        [SUMMARY],
        lambda r: r[0].lease.fencing_token == 4 and r[0].model_extra == {"future_field": 1},
    ),
    "get_change": (
        lambda c: c.get_change("001-01_a", lifecycle="archived"),
        "GET",
        f"{P}/changes/001-01_a",
        {"lifecycle": "archived"},
        None,
        {
            "id": "001-01_a",
            "specs": [{"name": "cap", "content": "x"}],
            "progress": {"total": 2, "complete": 1},
        },
        lambda r: r.specs[0].name == "cap" and r.progress.complete == 1,
    ),
    "pull": (
        lambda c: c.pull("001-01_a"),
        "GET",
        f"{P}/changes/001-01_a/sync",
        {},
        None,
        {"change_id": "001-01_a", "proposal": "p", "specs": [["cap", "md"]], "revision": 3},
        lambda r: r.revision == "3" and r.specs == [("cap", "md")],
    ),
    "archive": (
        lambda c: c.archive("001-01_a"),
        "POST",
        f"{P}/changes/001-01_a/archive",
        {},
        {},
        {"change_id": "001-01_a", "archived_at": "2030-01-01T00:00:00Z"},
        lambda r: r.archived_at.year == 2030,
    ),
    "get_tasks": (
        lambda c: c.get_tasks("001-01_a"),
        "GET",
        f"{P}/changes/001-01_a/tasks",
        {},
        None,
        {"change_id": "001-01_a", "format": "enhanced", "tasks": [TASK], "ready": ["1.1"]},
        lambda r: r.tasks[0].wave == 1 and r.ready == ["1.1"],
    ),
    "get_tasks_raw": (
        lambda c: c.get_tasks_raw("001-01_a"),
        "GET",
        f"{P}/changes/001-01_a/tasks/raw",
        {},
        None,
        {"change_id": "001-01_a"},
        lambda r: r.content is None,
    ),
    "init_tasks": (
        lambda c: c.init_tasks("001-01_a"),
        "POST",
        f"{P}/changes/001-01_a/tasks/init",
        {},
        {},
        {"change_id": "001-01_a", "existed": False, "revision": "2"},
        lambda r: r.existed is False,
    ),
    "start_task": (
        lambda c: c.start_task("001-01_a", "1.1"),
        "POST",
        f"{P}/changes/001-01_a/tasks/1.1/start",
        {},
        {},
        {"change_id": "001-01_a", "task": TASK, "revision": "4"},
        lambda r: r.task.status == "in-progress",
    ),
    "task_action_json": (
        lambda c: c.task_action_json("001-01_a", "1.1", "shelve", {"reason": "later"}),
        "POST",
        f"{P}/changes/001-01_a/tasks/1.1/shelve",
        {},
        {"reason": "later"},
        {"change_id": "001-01_a", "task": TASK, "revision": "5"},
        lambda r: r == {"change_id": "001-01_a", "task": TASK, "revision": "5"},
    ),
    "change_id_of": (
        lambda c: c.change_id_of("1-1"),
        "GET",
        f"{P}/changes/1-1",
        {"lifecycle": "all"},
        None,
        {"id": "001-01_a", "proposal": "# P\n", "progress": {}},
        lambda r: r == "001-01_a",
    ),
    "complete_task": (
        lambda c: c.complete_task("001-01_a", "1.1", note="done it"),
        "POST",
        f"{P}/changes/001-01_a/tasks/1.1/complete",
        {},
        {"note": "done it"},
        {"change_id": "001-01_a", "task": TASK},
        lambda r: r.task.id == "1.1",
    ),
    "shelve_task": (
        lambda c: c.shelve_task("001-01_a", "1.1", reason="later"),
        "POST",
        f"{P}/changes/001-01_a/tasks/1.1/shelve",
        {},
        {"reason": "later"},
        {"change_id": "001-01_a", "task": TASK},
        lambda r: r.task.id == "1.1",
    ),
    "unshelve_task": (
        lambda c: c.unshelve_task("001-01_a", "1.1"),
        "POST",
        f"{P}/changes/001-01_a/tasks/1.1/unshelve",
        {},
        {},
        {"change_id": "001-01_a", "task": TASK},
        lambda r: r.task.id == "1.1",
    ),
    "add_task": (
        lambda c: c.add_task("001-01_a", "New one", wave=2),
        "POST",
        f"{P}/changes/001-01_a/tasks/add",
        {},
        {"title": "New one", "wave": 2},
        {"change_id": "001-01_a", "task": TASK},
        lambda r: r.task.id == "1.1",
    ),
    "list_modules": (
        lambda c: c.list_modules(),
        "GET",
        f"{P}/modules",
        {},
        None,
        [
            {
                "id": "001",
                "name": "m",
                "change_count": 2,
                "sub_modules": [{"id": "001.01", "name": "s"}],
            }
        ],
        lambda r: r[0].sub_modules[0].id == "001.01",
    ),
    "get_module": (
        lambda c: c.get_module("001.01"),
        "GET",
        f"{P}/modules/001.01",
        {},
        None,
        {"id": "001.01", "name": "s", "changes": ["001.01-01_x"]},
        lambda r: r.changes == ["001.01-01_x"],
    ),
    "put_module": (
        lambda c: c.put_module("002", name="two", markdown="# Two\n"),
        "PUT",
        f"{P}/modules/002",
        {},
        {"name": "two", "markdown": "# Two\n"},
        {"id": "002", "name": "two"},
        lambda r: r.name == "two",
    ),
    "list_specs": (
        lambda c: c.list_specs(),
        "GET",
        f"{P}/specs",
        {},
        None,
        [
            {
                "id": "auth",
                "path": ".ito/specs/auth/spec.md",
                "last_modified": "2030-01-01T00:00:00Z",
            }
        ],
        lambda r: r[0].id == "auth",
    ),
    "get_spec": (
        lambda c: c.get_spec("auth"),
        "GET",
        f"{P}/specs/auth",
        {},
        None,
        {"id": "auth", "markdown": "# Auth\n"},
        lambda r: r.markdown == "# Auth\n",
    ),
    "put_spec": (
        lambda c: c.put_spec("auth", "# A\n"),
        "PUT",
        f"{P}/specs/auth",
        {},
        {"markdown": "# A\n"},
        {"id": "auth", "markdown": "# A\n"},
        lambda r: r.id == "auth",
    ),
    "import": (
        lambda c: c.import_snapshot(
            ProjectSnapshot(
                modules=[ImportModule(id="001", name="m", markdown="x")],
                specs=[ImportSpec(id="auth", markdown="y")],
                changes=[ImportChange(id="001-01_a", specs=[("cap", "z")], metadata="m: 1\n")],
            ),
            overwrite=True,
        ),
        "POST",
        f"{P}/import",
        {},
        {
            "mode": "overwrite",
            "modules": [{"id": "001", "name": "m", "markdown": "x"}],
            "specs": [{"id": "auth", "markdown": "y"}],
            "changes": [
                {
                    "id": "001-01_a",
                    "proposal": None,
                    "design": None,
                    "tasks": None,
                    "specs": [["cap", "z"]],
                    "metadata": "m: 1\n",
                    "archived_at": None,
                }
            ],
        },
        {"created": 3, "updated": 0, "unchanged": 0, "conflicts": []},
        lambda r: r.created == 3,
    ),
    "export": (
        lambda c: c.export_snapshot(),
        "GET",
        f"{P}/export",
        {},
        None,
        {"modules": [], "specs": [], "changes": [{"id": "001-01_a", "archived_at": None}]},
        lambda r: r.changes[0].id == "001-01_a",
    ),
    "claim": (
        lambda c: c.claim("001-01_a", ttl_seconds=60),
        "POST",
        f"{P}/changes/001-01_a/claim",
        {},
        {"holder": "agent-1", "ttl_seconds": 60},
        CLAIM,
        lambda r: r.fencing_token == 7,
    ),
    "heartbeat": (
        lambda c: c.heartbeat("001-01_a"),
        "POST",
        f"{P}/changes/001-01_a/heartbeat",
        {},
        {"holder": "agent-1"},
        CLAIM,
        lambda r: r.ttl_seconds == 900,
    ),
    "release": (
        lambda c: c.release("001-01_a", force=True),
        "POST",
        f"{P}/changes/001-01_a/release",
        {"force": "true"},
        {"holder": "agent-1"},
        {"change_id": "001-01_a", "released": True},
        lambda r: r.released,
    ),
    "get_lease": (
        lambda c: c.get_lease("001-01_a"),
        "GET",
        f"{P}/changes/001-01_a/lease",
        {},
        None,
        CLAIM,
        lambda r: r.holder == "agent-1",
    ),
    "list_leases": (
        lambda c: c.list_leases(),
        "GET",
        f"{P}/leases",
        {},
        None,
        [CLAIM],
        lambda r: r[0].change_id == "001-01_a",
    ),
    "allocate": (
        lambda c: c.allocate(ttl_seconds=30, module="001", changes=["001-01_a"]),
        "POST",
        f"{P}/allocate",
        {},
        {"holder": "agent-1", "ttl_seconds": 30, "module": "001", "changes": ["001-01_a"]},
        {"claim": CLAIM},
        lambda r: r.claim is not None and r.claim.fencing_token == 7,
    ),
    "get_events": (
        lambda c: c.get_events(since=3, limit=10, entity="task", scope="001-01_a", op="create"),
        "GET",
        f"{P}/events",
        {"since": "3", "limit": "10", "entity": "task", "scope": "001-01_a", "op": "create"},
        None,
        [EVENT],
        lambda r: r[0].from_ is None and r[0].to == "pending" and r[0].seq == 1,
    ),
}


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_route(name: str) -> None:
    call, method, path, query, body, response, check = ROUTES[name]
    rec = Recorder(handler=lambda r: httpx.Response(200, json=response))
    result = call(make_client(rec))
    request = rec.requests[0]
    assert request.method == method
    assert request.url.path == path
    assert dict(request.url.params) == query
    if body is None:
        assert request.content == b""
    else:
        assert json.loads(request.content) == body
    if path.startswith(P):
        assert request.headers["Authorization"].startswith("Bearer ")
    assert check(result)


def test_push_sends_revision_if_match_holder_and_fencing_token() -> None:
    rec = Recorder(
        [
            httpx.Response(200, json={**CLAIM, "fencing_token": 9}),
            httpx.Response(200, json={"change_id": "001-01_a", "new_revision": 4}),
        ]
    )
    client = make_client(rec)
    client.claim("001-01_a")
    result = client.push("001-01_a", revision="3", tasks="- [ ] x\n", specs=[("cap", "md")])
    assert result.new_revision == "4"
    request = rec.requests[1]
    assert request.headers["If-Match"] == '"3"'
    assert request.headers["X-Loom-Holder"] == "agent-1"
    assert request.headers["X-Loom-Fencing-Token"] == "9"
    assert json.loads(request.content) == {
        "proposal": None,
        "design": None,
        "tasks": "- [ ] x\n",
        "specs": [["cap", "md"]],
        "revision": "3",
    }


def test_fencing_token_forgotten_after_release_and_explicit_token_wins() -> None:
    rec = Recorder(
        [
            httpx.Response(200, json=CLAIM),
            httpx.Response(200, json={"change_id": "001-01_a", "task": TASK}),
            httpx.Response(200, json={"change_id": "001-01_a", "released": True}),
            httpx.Response(200, json={"change_id": "001-01_a", "task": TASK}),
            httpx.Response(200, json={"change_id": "001-01_a", "task": TASK}),
        ]
    )
    client = make_client(rec)
    client.claim("001-01_a")
    client.start_task("001-01_a", "1.1")
    assert rec.requests[1].headers["X-Loom-Fencing-Token"] == "7"
    client.release("001-01_a")
    client.start_task("001-01_a", "1.1")
    assert "X-Loom-Fencing-Token" not in rec.requests[3].headers
    assert rec.requests[3].headers["X-Loom-Holder"] == "agent-1"
    client.start_task("001-01_a", "1.1", fencing_token=12)
    assert rec.requests[4].headers["X-Loom-Fencing-Token"] == "12"


def test_task_action_json_refuses_an_unknown_action_before_any_request() -> None:
    rec = Recorder(handler=lambda r: httpx.Response(200, json={}))
    with pytest.raises(ValueError, match="unknown task action 'add'"):
        make_client(rec).task_action_json("001-01_a", "1.1", "add")
    assert rec.requests == []


def test_empty_revision_sends_no_if_match() -> None:
    rec = Recorder(
        handler=lambda r: httpx.Response(200, json={"change_id": "x", "new_revision": "1"})
    )
    make_client(rec).push("001-01_a", revision="")
    assert "If-Match" not in rec.requests[0].headers


def test_path_segments_are_percent_encoded() -> None:
    rec = Recorder(handler=lambda r: httpx.Response(200, json={"change_id": "x", "task": TASK}))
    make_client(rec).start_task("001-01_a", "a b?c#d%e")
    assert rec.requests[0].url.raw_path.decode().endswith("/tasks/a%20b%3Fc%23d%25e/start")


BAD_IDS = ["a/b", "../x", "..", ".", "", "a\\b", "x\ny", "tab\there", "nul\x00", "del\x7f"]
CHANGE_CALLS: list[Callable[[Client, str], Any]] = [
    lambda c, i: c.get_change(i),
    lambda c, i: c.pull(i),
    lambda c, i: c.push(i, revision="1"),
    lambda c, i: c.archive(i),
    lambda c, i: c.get_tasks(i),
    lambda c, i: c.get_tasks_raw(i),
    lambda c, i: c.init_tasks(i),
    lambda c, i: c.start_task(i, "1.1"),
    lambda c, i: c.complete_task(i, "1.1"),
    lambda c, i: c.shelve_task(i, "1.1"),
    lambda c, i: c.unshelve_task(i, "1.1"),
    lambda c, i: c.add_task(i, "title"),
    lambda c, i: c.claim(i),
    lambda c, i: c.heartbeat(i),
    lambda c, i: c.release(i),
    lambda c, i: c.get_lease(i),
]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("call", range(len(CHANGE_CALLS)))
def test_unsafe_change_ids_are_refused_before_any_request(bad: str, call: int) -> None:
    from loom.client import InvalidArgument, ValidationError

    rec = Recorder()
    with pytest.raises(InvalidArgument) as info:
        CHANGE_CALLS[call](make_client(rec), bad)
    assert rec.requests == []
    assert isinstance(info.value, ValidationError)  # one of Loom's usual error classes
    assert info.value.message.startswith(f"invalid change id {bad!r}")
    assert info.value.kind == "invalid_argument" and info.value.http_status == 0


@pytest.mark.parametrize("bad", BAD_IDS)
def test_unsafe_task_module_and_spec_ids_are_refused(bad: str) -> None:
    from loom.client import InvalidArgument

    rec = Recorder()
    client = make_client(rec)
    for call, what in [
        (lambda: client.start_task("001-01_a", bad), "task id"),
        (lambda: client.complete_task("001-01_a", bad), "task id"),
        (lambda: client.get_module(bad), "module id"),
        (lambda: client.get_spec(bad), "spec id"),
        (lambda: client.put_spec(bad, "# x"), "spec id"),
    ]:
        with pytest.raises(InvalidArgument, match=f"^invalid {what} "):
            call()
    assert rec.requests == []


def test_segment_problem_names_the_reason() -> None:
    from loom.client._base import segment_problem

    assert segment_problem("001-01_a") is None
    assert segment_problem("1-2") is None
    assert segment_problem("a..b") is None  # only a whole '..' segment is a path step
    assert segment_problem("a/b") == "it contains '/'"
    assert segment_problem("..") == "'..' is not an id"
    assert segment_problem("a\x01") == "it contains a control character"


def test_dot_segments_are_rejected_locally() -> None:
    from loom.client import ValidationError

    rec = Recorder()
    with pytest.raises(ValidationError):
        make_client(rec).pull("..")
    assert rec.requests == []


def test_missing_project_is_a_clear_error() -> None:
    from loom.client import ValidationError

    client = Client("http://loom.test", "t", None, transport=httpx.MockTransport(Recorder()))
    with pytest.raises(ValidationError, match="project='ORG/REPO'") as info:
        client.list_changes()
    assert info.value.kind == "project_missing"
    assert "LOOM_PROJECT" not in info.value.message  # the library reads no environment


def test_iter_changes_follows_the_cursor() -> None:
    pages = {
        None: (["001-01_a", "001-02_b"], "c1"),
        "c1": (["001-03_c"], None),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        ids, nxt = pages[request.url.params.get("cursor")]
        assert request.url.params["limit"] == "2"
        headers = {"X-Next-Cursor": nxt} if nxt else {}
        return httpx.Response(200, headers=headers, json=[{**SUMMARY, "id": i} for i in ids])

    rec = Recorder(handler=handler)
    ids = [c.id for c in make_client(rec).iter_changes(page_size=2)]
    assert ids == ["001-01_a", "001-02_b", "001-03_c"]
    assert len(rec.requests) == 2


def test_iter_events_follows_x_next_since() -> None:
    events = [{**EVENT, "seq": n} for n in range(1, 6)]

    def handler(request: httpx.Request) -> httpx.Response:
        since = int(request.url.params.get("since", "0"))
        limit = int(request.url.params["limit"])
        page = [e for e in events if e["seq"] > since][:limit]
        headers = {"X-Next-Since": str(page[-1]["seq"])} if page else {}
        return httpx.Response(200, headers=headers, json=page)

    rec = Recorder(handler=handler)
    seqs = [e.seq for e in make_client(rec).iter_events(since=1, page_size=2)]
    assert seqs == [2, 3, 4, 5]


def test_post_events_uses_one_key_in_body_and_header() -> None:
    rec = Recorder(handler=lambda r: httpx.Response(200, json={"accepted": 1, "duplicates": 0}))
    result = make_client(rec).post_events([dict(EVENT, extra_field="kept")])
    request = rec.requests[0]
    body = json.loads(request.content)
    assert body["idempotency_key"] == request.headers["Idempotency-Key"]
    assert body["events"][0]["extra_field"] == "kept"
    assert result.accepted == 1


def test_allocate_none_and_holder_required() -> None:
    from loom.client import ValidationError

    rec = Recorder(handler=lambda r: httpx.Response(200, json={"claim": None}))
    assert make_client(rec).allocate().claim is None
    with pytest.raises(ValidationError):
        make_client(rec, holder=None).allocate()
