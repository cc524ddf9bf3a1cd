"""Finding 8's smaller items: weak ETags, Windows-reserved ids, fencing tokens ahead of the
lease, UTF-8 holder names."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.conftest import ADMIN_H, P, error, ok, push
from conftest import ADMIN, LiveServer
from loom.client import Client


def test_a_weak_etag_never_matches_for_a_write(api: Any) -> None:
    ok(push(api, "001-01_a"))
    body = {"proposal": "# 2\n", "specs": []}
    for weak in ('W/"1"', "W/1"):
        r = api.post(f"{P}/changes/001-01_a/sync", json=body, headers={**ADMIN_H, "If-Match": weak})
        error(r, 412, "precondition_failed", "weak_etag")
    error(push(api, "001-01_a", revision='W/"1"'), 412, "precondition_failed", "weak_etag")
    assert ok(api.get(f"{P}/changes/001-01_a/sync", headers=ADMIN_H))["revision"] == "1"
    r = api.post(f"{P}/changes/001-01_a/sync", json=body, headers={**ADMIN_H, "If-Match": '"1"'})
    assert ok(r)["new_revision"] == "2"


@pytest.mark.parametrize("name", ["con", "NUL", "prn", "aux.md", "com1", "lpt9.x", "Con.txt"])
def test_windows_reserved_names_are_refused_as_ids(api: Any, name: str) -> None:
    low = name.lower()
    r = api.put(f"{P}/specs/{low}", json={"markdown": "# s\n"}, headers=ADMIN_H)
    error(r, 400, "bad_request", "invalid_id")
    error(push(api, "001-01_a", specs=[[low, "x"]]), 400, "bad_request", "invalid_id")
    if "." not in low:
        error(push(api, low), 400, "bad_request", "invalid_id")  # a legacy change slug
    ok(push(api, f"001-01_{low.replace('.', '-')}"))  # inside a canonical id it is harmless
    ok(api.put(f"{P}/specs/x{low}", json={"markdown": "# s\n"}, headers=ADMIN_H))  # "xcon"


def test_a_fencing_token_ahead_of_the_lease_is_not_called_stale(api: Any) -> None:
    ok(push(api, "001-01_a"))
    claim = ok(api.post(f"{P}/changes/001-01_a/claim", json={"holder": "agent-1"}, headers=ADMIN_H))
    token = claim["fencing_token"]
    headers = {"X-Loom-Holder": "agent-1"}
    for sent, kind in ((token + 1, "unknown_fencing_token"), (token - 1, "stale_fencing_token")):
        r = push(
            api, "001-01_a", revision="1", headers={**headers, "X-Loom-Fencing-Token": str(sent)}
        )
        body = error(r, 409, "conflict", kind)
        assert body["fencing_token"] == token
    r = push(api, "001-01_a", revision="1", headers={**headers, "X-Loom-Fencing-Token": str(token)})
    ok(r)


@pytest.mark.slow
def test_utf8_holder_names_round_trip_through_loom_client(
    live_server: LiveServer, request: pytest.FixtureRequest
) -> None:
    with Client(live_server.url, ADMIN, "acme/widgets") as admin:
        admin.push("001-01_a", revision="", proposal="# p\n")
    holder = "agent-é-東京"
    client = Client(live_server.url, ADMIN, "acme/widgets", holder=holder)
    request.addfinalizer(client.close)
    claim = client.claim("001-01_a")  # was a UnicodeEncodeError in the client
    assert claim.holder == holder
    # A write from the same holder passes the strict lease check: the header was decoded as
    # UTF-8 (as latin-1 it named another holder: 409 for the real holder).
    assert client.push("001-01_a", revision="1", proposal="# 2\n").new_revision == "2"
    with httpx.Client(base_url=live_server.url, headers=ADMIN_H) as raw:
        r = raw.post(
            f"{P}/changes/001-01_a/sync",
            json={"specs": [], "revision": "2"},
            headers={"X-Loom-Holder": "agent-e"},
        )
        error(r, 409, "conflict", "lease_conflict")
        r = raw.post(
            f"{P}/changes/001-01_a/sync",
            json={"specs": [], "revision": "2"},
            headers={"X-Loom-Holder": b"agent-\xff"},
        )
        error(r, 400, "bad_request", "invalid_id")
