"""Fault injection against the real server: the first response of each write is lost.

The wrapping transport forwards the request to the real server, lets it apply the change,
then drops the response and raises a connection error. The client retries with the same
``Idempotency-Key``; the server must replay its stored response, so every mutation is
applied exactly once.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from loom.client import Client, ImportChange, ProjectSnapshot

pytestmark = pytest.mark.slow

TASKS = "- [ ] one\n- [ ] two\n"


class DropFirstResponse(httpx.BaseTransport):
    """Forwards to the server; loses the first response of every non-GET request path."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.dropped: list[str] = []
        self.keys: dict[str, list[str]] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        path = f"{request.method} {request.url.path}"
        if request.method != "GET":
            self.keys.setdefault(path, []).append(request.headers["Idempotency-Key"])
            if path not in self.dropped:
                self.dropped.append(path)
                response.close()
                raise httpx.ReadError("connection reset: response lost")
        return response

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def lossy(server: Any) -> Any:
    transport = DropFirstResponse()
    client = Client(
        server.url,
        server.admin_token,
        "acme/widgets",
        holder="agent-a",
        transport=transport,
        sleep=lambda s: None,
    )
    with Client(server.url, server.admin_token, "acme/widgets", holder="agent-a") as plain:
        plain.import_snapshot(
            ProjectSnapshot(
                changes=[
                    ImportChange(
                        id="001-01_a",
                        proposal="# A\n",
                        tasks=TASKS,
                        specs=[("cap", "## ADDED Requirements\n")],
                    ),
                    ImportChange(id="001-02_b", proposal="# B\n", tasks=TASKS, specs=[("c", "x")]),
                ]
            )
        )
        yield client, transport, plain
    client.close()


def test_lost_responses_apply_each_mutation_once(lossy: Any) -> None:
    client, transport, plain = lossy

    allocated = client.allocate(ttl_seconds=60)
    assert allocated.claim is not None
    change = allocated.claim.change_id
    leases = plain.list_leases()
    assert [(lease.change_id, lease.fencing_token) for lease in leases] == [
        (change, allocated.claim.fencing_token)
    ]  # one lease, not two

    base = plain.pull(change).revision
    done = client.complete_task(change, "1")
    assert done.task.status == "complete"
    after_task = plain.pull(change).revision
    assert int(after_task) == int(base) + 1  # bumped once

    pushed = client.push(
        change, revision=after_task, proposal="# new\n", tasks=plain.pull(change).tasks
    )
    assert pushed.new_revision == str(int(after_task) + 1)
    assert plain.pull(change).revision == pushed.new_revision

    event = {
        "v": 1,
        "ts": "2026-01-01T00:00:00Z",
        "entity": "task",
        "entity_id": "1",
        "op": "note",
        "actor": "cli",
        "by": "@a",
        "ctx": {"session_id": "s"},
    }
    before = len(plain.get_events())
    ingested = client.post_events([event])
    assert ingested.accepted == 1  # the replayed first response
    assert len(plain.get_events()) == before + 1

    # Every lost write was retried exactly once, with the key of its first attempt.
    assert len(transport.dropped) == 4
    for keys in transport.keys.values():
        assert len(keys) == 2 and keys[0] == keys[1]
