"""Named tokens, /metrics and worker secrets against real ``loom serve --workers 2`` processes.

Which worker answers a connection is the kernel's choice; the tests learn it from the
server's own per-process gauge (``loom_worker_http_responses``, a ``pid`` label per worker in
prometheus-client's multiprocess mode), and keep opening fresh connections until both
workers have answered.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from _forkserver import run_loom
from api.routes_table import EVENT
from conftest import (
    ADMIN,
    ORG,
    REPO,
    SEED,
    LiveServer,
    _create_pg_database,
    auth,
    form_csrf,
    start_server,
    ui_login,
)
from leases._helpers import ENHANCED_TASKS, bundle

pytestmark = pytest.mark.slow

P = f"/api/v1/projects/{ORG}/{REPO}"
ADMIN_H = auth(ADMIN)
# Longer than the server's token cache (1 s): every request after it must see a revocation.
CACHE_TTL = 1.0


@pytest.fixture(scope="module")
def workers2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One ``--workers 2`` server for the module's tests (PostgreSQL: ``serve`` refuses
    several processes on SQLite), on a database of its own that the per-test resets never
    touch. Its two workers are spawned interpreters, ~1 s of CPU each to start: the tests
    share them, each with token names and changes of its own, and count answers from the
    moment they start (:func:`until_both_workers`)."""
    server = start_server(
        tmp_path_factory.mktemp("workers2") / "server",
        _create_pg_database(),
        "--workers",
        "2",
        extra_env={"LOOM_TOKEN_SEED": "env-seed-must-not-reach-workers"},
    )
    yield server
    server.stop(timeout=30)


def loom_cli(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "ITO_"))}
    extra = ["--data-dir", str(server.data_dir), "--database-url", server.database_url]
    return run_loom([*args, *extra], env)


def scrape(server: LiveServer) -> dict[str, list[Any]]:
    resp = httpx.get(f"{server.url}/metrics", headers=ADMIN_H, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    out: dict[str, list[Any]] = defaultdict(list)
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            out[sample.name].append(sample)
    return out


def per_worker(server: LiveServer, status: str) -> dict[str, float]:
    """Responses with ``status`` answered by each worker process (pid -> count)."""
    return {
        s.labels["pid"]: s.value
        for s in scrape(server)["loom_worker_http_responses"]
        if s.labels["status"] == status
    }


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples.get(name, [])
        if all(s.labels.get(k) == v for k, v in labels.items())
    )


def worker_pids(server: LiveServer) -> list[int]:
    """Every descendant process of the server (workers and multiprocessing helpers)."""
    found: list[int] = []
    todo = [server.process.pid]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            for child in children:
                found.append(int(child))
                todo.append(int(child))
    return found


def until_both_workers(server: LiveServer, status: str, request: Any, limit: int = 400) -> int:
    """Send ``request`` on fresh connections until two worker pids have answered with
    ``status`` since the call (answers before it, to other tests of the module, do not
    count); every answer must be ``status``. Returns the number of requests sent."""
    before = per_worker(server, status)
    for sent in range(1, limit + 1):
        with httpx.Client(base_url=server.url, timeout=10) as client:
            resp = request(client)
        assert resp.status_code == int(status), (sent, resp.status_code, resp.text)
        if sent % 8 == 0:
            now = per_worker(server, status)
            if sum(count > before.get(pid, 0) for pid, count in now.items()) >= 2:
                return sent
    raise AssertionError(f"the two workers did not both answer within {limit} requests")


def test_revocation_reaches_both_workers_and_no_secret_is_in_their_environment(
    workers2: LiveServer,
) -> None:
    server = workers2
    made = loom_cli(server, "token", "create", "--project", f"{ORG}/{REPO}", "--name", "agent-a")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("loom_") and "agent-a" in made.stderr
    token_h = auth(secret)

    # Both workers accept the token (and cache it): 404 marks these answers in the gauge.
    until_both_workers(
        server, "404", lambda c: c.get(f"{P}/changes/999-99_missing", headers=token_h)
    )

    revoked = loom_cli(server, "token", "revoke", "agent-a")
    assert revoked.returncode == 0, revoked.stderr
    deadline = time.monotonic() + CACHE_TTL
    while time.monotonic() < deadline:
        time.sleep(0.05)
    # From now on, every request of the revoked token is a 401, in both workers.
    until_both_workers(server, "401", lambda c: c.get(f"{P}/changes", headers=token_h))
    resp = httpx.get(f"{server.url}{P}/changes", headers=token_h)
    body = resp.json()
    assert (resp.status_code, body["code"], body["kind"]) == (401, "unauthorized", "token_revoked")

    listed = loom_cli(server, "token", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = [t for t in json.loads(listed.stdout)["tokens"] if t["name"] == "agent-a"]
    assert row["state"] == "revoked" and row["last_used"]
    assert secret not in listed.stdout

    pids = worker_pids(server)
    assert len(pids) >= 2
    for pid in pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        for needle in (ADMIN, SEED, "env-seed-must-not-reach-workers", secret):
            assert needle.encode() not in environ, (pid, needle)


def test_metrics_add_up_across_two_workers(workers2: LiveServer) -> None:
    server = workers2
    unauth = httpx.get(f"{server.url}/metrics")
    assert unauth.status_code == 401 and unauth.json()["kind"] == "missing_token"
    writer = auth(loom_cli(server, "token", "create", "--org", ORG, "--name", "m").stdout.strip())
    assert httpx.get(f"{server.url}/metrics", headers=writer).status_code == 403

    change = "001-01_alpha"
    resp = httpx.post(
        f"{server.url}{P}/changes/{change}/sync",
        json={"proposal": "# p\n", "specs": [], "revision": ""},
        headers=ADMIN_H,
    )
    assert resp.status_code == 200, resp.text
    before = scrape(server)
    claims = 24
    for i in range(claims):
        with httpx.Client(base_url=server.url, timeout=10) as client:
            holder = "h1" if i % 2 == 0 else "h2"
            got = client.post(
                f"{P}/changes/{change}/claim", json={"holder": holder}, headers=writer
            )
            if i % 2 == 0:
                assert got.status_code == 200, got.text
                assert client.post(
                    f"{P}/changes/{change}/release", json={"holder": holder}, headers=writer
                ).is_success
            else:
                assert got.status_code == 200, got.text  # released: h2 gets it
                client.post(
                    f"{P}/changes/{change}/release", json={"holder": holder}, headers=writer
                )
    conflict = httpx.post(
        f"{server.url}{P}/changes/{change}/claim", json={"holder": "a"}, headers=writer
    )
    assert conflict.status_code == 200
    taken = httpx.post(
        f"{server.url}{P}/changes/{change}/claim", json={"holder": "b"}, headers=writer
    )
    assert taken.status_code == 409
    batch = httpx.post(
        f"{server.url}{P}/events",
        json={
            "idempotency_key": "k1",
            "events": [EVENT],
        },
        headers=writer,
    )
    assert batch.status_code == 200, batch.text
    # Which worker accepts a connection is the kernel's choice: under load one worker can
    # take all of the above. Both must have answered before the scrape, for the per-process
    # gauge below to be checked (a route counted by no assertion here).
    until_both_workers(server, "200", lambda c: c.get(f"{P}/changes", headers=writer))
    after = scrape(server)

    route = "/api/v1/projects/{org}/{repo}/changes/{change_id}/claim"
    claimed = value(after, "loom_http_requests_total", route=route, method="POST", status="200")
    claimed -= value(before, "loom_http_requests_total", route=route, method="POST", status="200")
    assert claimed == claims + 1
    refused = value(after, "loom_http_requests_total", route=route, status="409")
    assert refused - value(before, "loom_http_requests_total", route=route, status="409") == 1
    grants = value(after, "loom_lease_grants_total", how="claim")
    assert grants - value(before, "loom_lease_grants_total", how="claim") == claims + 1
    conflicts = value(after, "loom_lease_conflicts_total")
    assert conflicts - value(before, "loom_lease_conflicts_total") == 1
    events = value(after, "loom_events_ingested_total") - value(
        before, "loom_events_ingested_total"
    )
    assert events == 1
    hist = value(after, "loom_http_request_duration_seconds_count", route=route)
    assert (
        hist - value(before, "loom_http_request_duration_seconds_count", route=route) == claims + 2
    )
    assert value(after, "loom_db_transaction_duration_seconds_count", kind="write") > 0
    assert value(after, "loom_leases_active") == 1
    # The claims were answered by both workers (the per-process gauge has one pid per worker).
    pids = {s.labels["pid"] for s in after["loom_worker_http_responses"]}
    assert len(pids) == 2, pids


def test_metrics_public_needs_no_token(tmp_path: Path) -> None:
    server = start_server(tmp_path / "pub", None, "--metrics-public")
    try:
        resp = httpx.get(f"{server.url}/metrics")
        assert resp.status_code == 200
        names = {f.name for f in text_string_to_metric_families(resp.text)}
        assert {"loom_http_requests", "loom_leases_active", "loom_lease_grants"} <= names
    finally:
        server.stop()


ENHANCED = (
    "# Tasks for: 001-01_alpha\n\n## Wave 1\n\n- **Depends On**: None\n\n"
    "### Task 1.1: First task\n- **Dependencies**: None\n- **Updated At**: 2026-03-01\n"
    "- **Status**: [ ] pending\n"
)


def test_scopes_targets_expiry_and_audit_on_a_real_server(live_server_on: LiveServer) -> None:
    server = live_server_on

    def create(*args: str) -> str:
        made = loom_cli(server, "token", "create", *args)
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()

    writer = auth(create("--org", ORG, "--name", "ci-agent-1"))
    reader = auth(create("--project", f"{ORG}/{REPO}", "--name", "dash", "--scope", "read"))
    expired = auth(
        create("--project", f"{ORG}/{REPO}", "--name", "old", "--expires", "2020-01-01T00:00:00Z")
    )
    c = httpx.Client(base_url=server.url, timeout=10)
    change = "001-01_alpha"
    bundle = {"proposal": "# p\n", "tasks": ENHANCED, "specs": [], "revision": ""}
    # The org token writes to two repos of its org, and nowhere else.
    for repo in (REPO, "gadgets"):
        resp = c.post(
            f"/api/v1/projects/{ORG}/{repo}/changes/{change}/sync", json=bundle, headers=writer
        )
        assert resp.status_code == 200, resp.text
    other = c.post(
        f"/api/v1/projects/other/{REPO}/changes/{change}/sync", json=bundle, headers=writer
    )
    assert (other.status_code, other.json()["kind"]) == (403, "forbidden")
    # The push's audit event names the token.
    events = c.get(f"{P}/events", headers=ADMIN_H).json()
    pushes = [e for e in events if e["entity"] == "change" and e["op"] == "create"]
    assert pushes and {e["by"] for e in pushes} == {"ci-agent-1"}, events
    # The read token: 403 on every kind of write, 200 on reads.
    writes = [
        ("POST", f"{P}/changes/{change}/sync", {**bundle, "revision": "1"}),
        ("POST", f"{P}/changes/{change}/tasks/1.1/start", None),
        ("POST", f"{P}/changes/{change}/claim", {"holder": "r"}),
        ("POST", f"{P}/changes/{change}/heartbeat", {"holder": "r"}),
        ("POST", f"{P}/changes/{change}/release", {"holder": "r"}),
        ("POST", f"{P}/allocate", {"holder": "r"}),
        ("POST", f"{P}/changes/{change}/archive", None),
        ("POST", f"{P}/events", {"events": [EVENT], "idempotency_key": "k"}),
    ]
    for method, path, body in writes:
        resp = c.request(method, path, json=body, headers=reader)
        assert (resp.status_code, resp.json()["code"], resp.json()["kind"]) == (
            403,
            "forbidden",
            "forbidden",
        ), (path, resp.text)
    for path in (
        f"{P}/changes",
        f"{P}/changes/{change}",
        f"{P}/changes/{change}/sync",
        f"{P}/changes/{change}/tasks",
        f"{P}/leases",
        f"{P}/events",
    ):
        assert c.get(path, headers=reader).status_code == 200, path
    after = c.get(f"{P}/events", headers=ADMIN_H).json()
    assert len(after) == len(events)  # the refused writes changed nothing
    # The expired token: 401.
    resp = c.get(f"{P}/changes", headers=expired)
    assert (resp.status_code, resp.json()["kind"]) == (401, "token_expired")
    # Revoked with the CLI while the server runs: 401 once the process cache (1 s) has aged.
    assert c.get(f"{P}/changes", headers=reader).status_code == 200
    assert loom_cli(server, "token", "revoke", "dash").returncode == 0
    deadline = time.monotonic() + CACHE_TTL
    while time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(3):
        resp = c.get(f"{P}/changes", headers=reader)
        assert (resp.status_code, resp.json()["kind"]) == (401, "token_revoked")
    c.close()


def test_no_project_tokens_refuses_hmac_tokens(tmp_path: Path) -> None:
    server = start_server(tmp_path / "nopt", None, "--no-project-tokens")
    try:
        resp = httpx.get(f"{server.url}{P}/changes", headers=auth(server.project_token()))
        assert (resp.status_code, resp.json()["kind"]) == (401, "invalid_token")
        assert httpx.get(f"{server.url}{P}/changes", headers=ADMIN_H).status_code == 200
        assert any("project tokens disabled (--no-project-tokens)" in line for line in server.log)
    finally:
        server.stop()


def test_every_audit_event_of_a_named_token_names_it(live_server_on: LiveServer) -> None:
    """Lease operations, task changes, archive and ingested events: ``by`` is the token's
    name; ``meta.holder`` still says who held the lease (issue #15)."""
    server = live_server_on

    def create(*args: str) -> dict[str, str]:
        made = loom_cli(server, "token", "create", *args)
        assert made.returncode == 0, made.stderr
        return auth(made.stdout.strip())

    agent = create("--project", f"{ORG}/{REPO}", "--name", "agent-7")
    ops = create("--admin", "--name", "ops-1")
    c = httpx.Client(base_url=server.url, timeout=10)

    def ok(method: str, path: str, body: Any = None, headers: dict[str, str] = agent) -> Any:
        resp = c.request(method, f"{P}{path}", json=body, headers=headers)
        assert resp.status_code == 200, (path, resp.text)
        return resp.json()

    first, second = "001-01_alpha", "001-02_beta"
    for change in (first, second):  # ready changes (a spec delta each)
        ok("POST", f"/changes/{change}/sync", bundle(change, tasks=ENHANCED_TASKS))
    ok("POST", f"/changes/{first}/claim", {"holder": "a1"})
    ok("POST", f"/changes/{first}/heartbeat", {"holder": "a1"})  # records no event
    with_holder = {**agent, "X-Loom-Holder": "a1"}
    ok("POST", f"/changes/{first}/tasks/1.1/start", None, with_holder)
    ok("POST", f"/changes/{first}/tasks/1.1/complete", None, with_holder)
    ok("POST", f"/changes/{first}/release", {"holder": "a1"})
    allocated = ok("POST", "/allocate", {"holder": "a2"})["claim"]
    assert allocated is not None
    ok("POST", f"/changes/{allocated['change_id']}/release?force=true", {"holder": "x"}, ops)
    ok("POST", f"/changes/{first}/archive", None, with_holder)
    ok("POST", "/events", {"events": [EVENT], "idempotency_key": "named-batch"})
    c.close()

    events = httpx.get(f"{server.url}{P}/events", headers=ADMIN_H, timeout=10).json()
    seen = {(e["op"], e["by"]) for e in events}
    for op in ("create", "claim", "status_change", "release", "allocate", "archive"):
        assert (op, "agent-7") in seen, (op, events)
    assert ("force_release", "ops-1") in seen, events
    assert {e["by"] for e in events} == {"agent-7", "ops-1"}, events
    lease_ops = ("claim", "allocate", "release")
    holders = {(e["op"], e["meta"]["holder"]) for e in events if e["op"] in lease_ops}
    assert {("claim", "a1"), ("release", "a1"), ("allocate", "a2")} <= holders
    ingested = [e for e in events if e["actor"] == "cli"]
    assert [(e["by"], e["sent_by"]) for e in ingested] == [("agent-7", "@t")]


def test_dashboard_sign_out_ends_the_session_in_both_workers(workers2: LiveServer) -> None:
    """A copied session cookie is refused by both processes of ``--workers 2`` on fresh
    connections once the sign-out made through one of them is a second old (issue #13)."""
    server = workers2
    pushed = httpx.post(
        f"{server.url}{P}/changes/002-01_dashboard/sync",
        json={"proposal": "# Dashboard\n", "specs": []},
        headers=ADMIN_H,
        timeout=10,
    )
    assert pushed.status_code == 200, pushed.text
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        assert ui_login(browser, ADMIN).status_code == 303
        session = browser.cookies["loom_session"]
    copied = {"Cookie": f"loom_session={session}"}
    missing = f"/ui/{ORG}/{REPO}/changes/999-99_missing"  # 404: marks these answers
    # Both workers accept the cookie (and cache "not signed out").
    until_both_workers(server, "404", lambda c: c.get(missing, headers=copied))
    # A live feed opened with the cookie (on either worker) ends after the sign-out too.
    feed_ended: list[float] = []
    feed_open = threading.Event()

    def follow_feed() -> None:
        with (
            httpx.Client(base_url=server.url, timeout=30) as c,
            c.stream("GET", f"/ui/{ORG}/{REPO}/stream", headers=copied) as feed,
        ):
            assert feed.status_code == 200
            for _ in feed.iter_bytes():
                feed_open.set()
        feed_ended.append(time.monotonic())

    follower = threading.Thread(target=follow_feed, daemon=True)
    follower.start()
    assert feed_open.wait(10)
    with httpx.Client(base_url=server.url, timeout=10, headers=copied) as browser:
        page = browser.get("/ui/")
        assert page.status_code == 200
        out = browser.post("/ui/logout", data={"csrf": form_csrf(page.text)})
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    signed_out = time.monotonic()
    deadline = time.monotonic() + CACHE_TTL
    while time.monotonic() < deadline:
        time.sleep(0.05)
    # Every fresh connection, whichever worker takes it, is sent to the sign-in form.
    until_both_workers(server, "303", lambda c: c.get(missing, headers=copied))
    with httpx.Client(base_url=server.url, timeout=10) as c:
        again = c.get("/ui/", headers=copied)
        assert again.status_code == 303 and again.headers["location"] == "/ui/login"
    # The feed's recheck (2 s) after the other worker's cache (1 s) has aged.
    follower.join(10)
    assert feed_ended and feed_ended[0] - signed_out < 2.0 + CACHE_TTL + 1.0, feed_ended
