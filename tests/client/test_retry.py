"""Retry policy, backoff, Retry-After and idempotency keys of the client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from loom.client import ConnectionFailed, LeaseConflict, NotFound, RetryPolicy, Unavailable
from loom.client._retry import parse_retry_after
from loom.errors import InternalError, RateLimited, ValidationError

from ._fakes import TOKEN, Recorder, error, make_client

OK_HEALTH = httpx.Response(200, json={"status": "ok", "version": "0.1.0"})


def test_parse_retry_after_seconds_and_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after(" 1.5 ", now=now) == 1.5
    assert parse_retry_after("-3", now=now) == 0.0
    later = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(later, now=now) == 42.0
    earlier = format_datetime(now - timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None


def test_backoff_is_exponential_capped_with_full_jitter() -> None:
    calls: list[tuple[float, float]] = []

    def fake_uniform(lo: float, hi: float) -> float:
        calls.append((lo, hi))
        return hi / 2

    policy = RetryPolicy(retries=10, base_delay=0.5, max_delay=4.0, random=fake_uniform)
    delays = [policy.delay(n) for n in range(6)]
    assert calls == [(0.0, 0.5), (0.0, 1.0), (0.0, 2.0), (0.0, 4.0), (0.0, 4.0), (0.0, 4.0)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    # Retry-After wins over the jittered backoff, but is capped.
    assert policy.delay(0, retry_after=9.0) == 9.0
    assert RetryPolicy(max_retry_after=5.0).delay(3, retry_after=60.0) == 5.0


def test_default_jitter_stays_within_bounds() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    for attempt in range(6):
        for _ in range(50):
            assert 0.0 <= policy.delay(attempt) <= min(8.0, 2.0**attempt)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_statuses_are_retried(status: int) -> None:
    rec = Recorder([httpx.Response(status, json={"error": "busy", "code": "x"}), OK_HEALTH])
    sleeps: list[float] = []
    client = make_client(rec, sleeps=sleeps)
    assert client.health().status == "ok"
    assert len(rec.requests) == 2
    assert sleeps == [0.5]  # base delay for the first retry (fake jitter returns the cap)


@pytest.mark.parametrize(
    ("response", "exc"),
    [
        (error(500, "internal_error"), InternalError),
        (error(400, "bad_request", "invalid_id"), ValidationError),
        (error(404, "not_found", "change_not_found"), NotFound),
        (error(409, "conflict", "lease_conflict", holder="x"), LeaseConflict),
    ],
)
def test_other_statuses_are_not_retried(response: httpx.Response, exc: type[Exception]) -> None:
    rec = Recorder([response, OK_HEALTH])
    sleeps: list[float] = []
    client = make_client(rec, sleeps=sleeps)
    with pytest.raises(exc):
        client.get_change("001-01_a")
    assert len(rec.requests) == 1
    assert sleeps == []


def test_retry_after_header_is_honoured() -> None:
    rec = Recorder(
        [
            httpx.Response(429, headers={"Retry-After": "3"}, json={"code": "rate_limited"}),
            httpx.Response(503, headers={"Retry-After": "0"}, json={}),
            OK_HEALTH,
        ]
    )
    sleeps: list[float] = []
    make_client(rec, sleeps=sleeps).health()
    assert sleeps == [3.0, 0.0]


def test_gives_up_after_max_retries_and_raises_the_mapped_error() -> None:
    rec = Recorder(handler=lambda r: httpx.Response(503, json={"code": "service_unavailable"}))
    sleeps: list[float] = []
    with pytest.raises(Unavailable):
        make_client(rec, retries=2, sleeps=sleeps).health()
    assert len(rec.requests) == 3
    assert sleeps == [0.5, 1.0]


def test_429_after_retries_is_rate_limited() -> None:
    rec = Recorder(handler=lambda r: httpx.Response(429, json={"code": "rate_limited"}))
    with pytest.raises(RateLimited):
        make_client(rec, retries=1).health()
    assert len(rec.requests) == 2


def test_retries_zero_means_one_attempt() -> None:
    rec = Recorder(handler=lambda r: httpx.Response(502, text="bad gateway"))
    with pytest.raises(Unavailable) as info:
        make_client(rec, retries=0).health()
    assert len(rec.requests) == 1
    assert "bad gateway" in info.value.message


def test_connection_errors_are_retried_then_succeed() -> None:
    rec = Recorder([httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), OK_HEALTH])
    sleeps: list[float] = []
    assert make_client(rec, sleeps=sleeps).health().status == "ok"
    assert len(rec.requests) == 3
    assert sleeps == [0.5, 1.0]


def test_connection_failure_after_retries_is_connection_failed() -> None:
    rec = Recorder(handler=lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused")))
    client = make_client(rec, retries=2)
    with pytest.raises(ConnectionFailed) as info:
        client.health()
    assert isinstance(info.value, Unavailable)
    assert info.value.http_status == 0
    assert len(rec.requests) == 3
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value)


def test_one_idempotency_key_per_operation_reused_across_retries() -> None:
    claim = {
        "change_id": "001-01_a",
        "holder": "agent-1",
        "expires_at": "2030-01-01T00:00:00Z",
        "fencing_token": 1,
    }
    rec = Recorder(
        [
            httpx.ConnectError("reset"),
            httpx.Response(503, json={}),
            httpx.Response(200, json=claim),
            httpx.Response(200, json=claim),
        ]
    )
    client = make_client(rec)
    client.claim("001-01_a")
    keys = [r.headers.get("Idempotency-Key") for r in rec.requests]
    assert len(keys) == 3
    assert keys[0] and keys[0] == keys[1] == keys[2]
    client.claim("001-01_a")
    assert rec.requests[3].headers["Idempotency-Key"] != keys[0]


def test_explicit_idempotency_key_is_used() -> None:
    rec = Recorder(handler=lambda r: httpx.Response(200, json={"claim": None}))
    make_client(rec).allocate(idempotency_key="my-key-1")
    assert rec.requests[0].headers["Idempotency-Key"] == "my-key-1"


def test_gets_carry_no_idempotency_key() -> None:
    rec = Recorder([OK_HEALTH])
    make_client(rec).health()
    assert "Idempotency-Key" not in rec.requests[0].headers


def test_idempotency_in_flight_conflict_is_retried() -> None:
    rec = Recorder(
        [
            error(409, "conflict", "idempotency_in_flight"),
            httpx.Response(
                200, json={"change_id": "001-01_a", "archived_at": "2030-01-01T00:00:00Z"}
            ),
        ]
    )
    result = make_client(rec).archive("001-01_a")
    assert result.change_id == "001-01_a"
    assert len(rec.requests) == 2
    assert rec.requests[0].headers["Idempotency-Key"] == rec.requests[1].headers["Idempotency-Key"]


def test_ready_503_is_reported_not_retried() -> None:
    rec = Recorder(
        handler=lambda r: httpx.Response(
            503, json={"status": "not_ready", "reason": "database unavailable"}
        )
    )
    ready = make_client(rec).ready()
    assert not ready.ok
    assert ready.reason == "database unavailable"
    assert len(rec.requests) == 1
