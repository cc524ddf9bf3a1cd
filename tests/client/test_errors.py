"""Every error envelope maps to the right exception class; the token never leaks."""

from __future__ import annotations

import logging

import httpx
import pytest

import loom.client as lc
from loom.errors import (
    ArchivedConflict,
    Conflict,
    IdempotencyInFlight,
    InternalError,
    MethodNotAllowed,
    PayloadTooLarge,
    Unprocessable,
)

from ._fakes import TOKEN, Recorder, error, make_client

CASES: list[tuple[httpx.Response, type[Exception]]] = [
    (error(400, "bad_request", "invalid_id"), lc.ValidationError),
    (error(401, "unauthorized"), lc.Unauthorized),
    (error(403, "forbidden"), lc.Forbidden),
    (error(404, "not_found", "change_not_found"), lc.NotFound),
    (error(405, "method_not_allowed"), MethodNotAllowed),
    (error(409, "conflict", "lease_conflict", holder="b", expires_at="x"), lc.LeaseConflict),
    (error(409, "conflict", "not_lease_holder"), lc.LeaseConflict),
    (error(409, "conflict", "stale_fencing_token"), lc.LeaseConflict),
    (
        error(409, "conflict", "revision_conflict", local_revision="1", server_revision="2"),
        lc.RevisionConflict,
    ),
    (error(409, "conflict", "archived"), ArchivedConflict),
    (error(409, "conflict", "something_else"), Conflict),
    (error(413, "payload_too_large"), PayloadTooLarge),
    (error(422, "unprocessable", "idempotency_key_reused"), Unprocessable),
    (error(428, "precondition_required"), lc.PreconditionRequired),
    (error(500, "internal_error"), InternalError),
    (httpx.Response(503, json={"code": "service_unavailable"}), lc.Unavailable),
    (httpx.Response(404, text="<html>nope</html>"), lc.NotFound),
    (httpx.Response(502, text="proxy down"), lc.Unavailable),
]


@pytest.mark.parametrize(("response", "exc"), CASES)
def test_error_mapping(response: httpx.Response, exc: type[Exception]) -> None:
    rec = Recorder(handler=lambda r: response)
    client = make_client(rec, retries=0)
    with pytest.raises(exc) as info:
        client.pull("001-01_a")
    assert type(info.value) is exc
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)


def test_in_flight_after_retries_is_idempotency_in_flight() -> None:
    rec = Recorder(handler=lambda r: error(409, "conflict", "idempotency_in_flight"))
    with pytest.raises(IdempotencyInFlight):
        make_client(rec, retries=1).archive("001-01_a")
    assert len(rec.requests) == 2


def test_conflict_details_are_kept() -> None:
    rec = Recorder(
        [error(409, "conflict", "revision_conflict", local_revision="3", server_revision="5")]
    )
    with pytest.raises(lc.RevisionConflict) as info:
        make_client(rec).push("001-01_a", revision="3")
    assert info.value.details["server_revision"] == "5"
    assert info.value.details["local_revision"] == "3"
    assert info.value.http_status == 409


def test_required_names_are_exported() -> None:
    for name in (
        "LeaseConflict",
        "RevisionConflict",
        "PreconditionRequired",
        "NotFound",
        "Unauthorized",
        "Forbidden",
        "Unavailable",
        "ValidationError",
        "ConnectionFailed",
        "Client",
    ):
        assert name in lc.__all__
        assert hasattr(lc, name)
    assert set(lc.__all__) == {n for n in dir(lc) if not n.startswith("_")} - {"annotations"}


def test_token_not_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder(handler=lambda r: httpx.Response(503, json={}))
    client = make_client(rec, retries=1)
    assert TOKEN not in repr(client)
    assert "***" in repr(client)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(lc.Unavailable):
            client.health()
    assert caplog.records  # something was logged ...
    assert all(TOKEN not in r.getMessage() for r in caplog.records)  # ... but not the token
    assert rec.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_credentials_in_url_are_redacted() -> None:
    client = lc.Client("http://user:pw@127.0.0.1:1", "t", "a/b", retries=0)
    assert "pw" not in repr(client)
    with pytest.raises(lc.ConnectionFailed) as info:
        client.health()
    assert "pw" not in str(info.value)
