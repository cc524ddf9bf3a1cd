"""Audit event validation, fingerprints and server events (API.md §2.8, ito-server.md §6.1)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loom.domain.events import (
    canonical_event_json,
    format_event_ts,
    make_event,
    parse_event_ts,
    validate_event,
)
from loom.errors import ValidationError


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "v": 1,
        "ts": "2026-02-28T10:00:00.000Z",
        "entity": "task",
        "entity_id": "1.1",
        "scope": "001-01_alpha",
        "op": "create",
        "from": None,
        "to": "pending",
        "actor": "cli",
        "by": "@alice",
        "meta": {"any": "json"},
        "count": 1,
        "ctx": {
            "session_id": "s-1",
            "harness_session_id": "h",
            "branch": "main",
            "worktree": "wt",
            "commit": "abc123",
        },
    }
    for key, value in overrides.items():
        if value is _DROP:
            event.pop(key, None)
        else:
            event[key] = value
    return event


_DROP = object()


def _invalid(obj: object, field: str, index: int = 3) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate_event(obj, index)
    err = info.value
    assert err.kind == "invalid_event"
    assert err.code == "bad_request"
    assert err.details == {"index": index, "field": field}
    assert err.message.startswith(f"event {index}: ")
    return err


def test_full_ito_example_is_valid_and_returned_unchanged() -> None:
    event = _event()
    original = copy.deepcopy(event)
    assert validate_event(event, 0) is event
    assert event == original


def test_minimal_event() -> None:
    event = {
        "v": 1,
        "ts": "2026-02-28T10:00:00Z",
        "entity": "change",
        "entity_id": "001-01_a",
        "op": "archive",
        "actor": "cli",
        "by": "@bob",
        "ctx": {"session_id": "x"},
    }
    assert validate_event(event, 0) == event


def test_unknown_fields_are_kept() -> None:
    event = _event(extra={"nested": [1, 2.5, None, True]}, ctx={"session_id": "s", "pid": 42})
    assert validate_event(event, 0)["extra"] == {"nested": [1, 2.5, None, True]}
    assert validate_event(event, 0)["ctx"]["pid"] == 42


@pytest.mark.parametrize("obj", [None, [], "event", 1])
def test_not_an_object(obj: object) -> None:
    _invalid(obj, "event")


@pytest.mark.parametrize(
    ("value", "field"),
    [(_DROP, "v"), (2, "v"), (0, "v"), (True, "v"), ("1", "v"), (1.0, "v"), (None, "v")],
)
def test_version(value: object, field: str) -> None:
    _invalid(_event(v=value), field)


@pytest.mark.parametrize(
    "ts",
    [
        "2026-02-28T10:00:00.000Z",
        "2026-02-28T10:00:00Z",
        "2026-02-28t10:00:00z",
        "2026-02-28T10:00:00+00:00",
        "2026-02-28T12:30:00.123456789+02:30",
        "2026-02-28T10:00:00-05:00",
        "2024-02-29T23:59:59.9Z",
    ],
)
def test_valid_timestamps(ts: str) -> None:
    validate_event(_event(ts=ts), 0)


@pytest.mark.parametrize(
    "ts",
    [
        "2026-02-28T10:00:00",  # no offset
        "2026-02-28 10:00:00Z",  # space separator
        "2026-02-28T10:00Z",  # no seconds
        "2026-02-28",
        "2026-02-30T10:00:00Z",  # no such day
        "2025-02-29T10:00:00Z",
        "2026-13-01T10:00:00Z",
        "2026-02-28T24:00:00Z",
        "2026-02-28T10:00:60Z",  # leap second
        "2026-02-28T10:00:00+24:00",
        "2026-02-28T10:00:00+0100",
        "2026-02-28T10:00:00.Z",
        "2026-02-28T10:00:00.1234567890Z",
        " 2026-02-28T10:00:00Z",
        "2026-02-28T10:00:00Z\n",
        "0001-01-01T00:00:00+01:00",  # valid text, before year 1 in UTC
        "",
        "yesterday",
    ],
)
def test_invalid_timestamps(ts: str) -> None:
    _invalid(_event(ts=ts), "ts")


@pytest.mark.parametrize("value", [_DROP, None, 1700000000, ""])
def test_ts_required_string(value: object) -> None:
    _invalid(_event(ts=value), "ts")


@pytest.mark.parametrize("field", ["entity", "entity_id", "op", "actor", "by"])
@pytest.mark.parametrize("value", [_DROP, None, "", "   ", 7, ["x"]])
def test_required_strings(field: str, value: object) -> None:
    err = _invalid(_event(**{field: value}), field)
    assert field in err.message


@pytest.mark.parametrize("field", ["scope", "from", "to"])
def test_optional_strings(field: str) -> None:
    validate_event(_event(**{field: None}), 0)
    validate_event(_event(**{field: _DROP}), 0)
    validate_event(_event(**{field: ""}), 0)
    _invalid(_event(**{field: 5}), field)
    _invalid(_event(**{field: {"a": 1}}), field)


@pytest.mark.parametrize("meta", [None, 1, "x", [1, "a"], {"a": {"b": [None]}}, True, 1.5])
def test_meta_any_json(meta: object) -> None:
    validate_event(_event(meta=meta), 0)


@pytest.mark.parametrize("count", [1, 2, 10**12])
def test_valid_count(count: int) -> None:
    validate_event(_event(count=count), 0)


@pytest.mark.parametrize("count", [0, -1, True, 1.0, "2", None])
def test_invalid_count(count: object) -> None:
    _invalid(_event(count=count), "count")


def test_ctx_rules() -> None:
    _invalid(_event(ctx=_DROP), "ctx")
    _invalid(_event(ctx=None), "ctx")
    _invalid(_event(ctx="s-1"), "ctx")
    _invalid(_event(ctx={}), "ctx.session_id")
    _invalid(_event(ctx={"session_id": ""}), "ctx.session_id")
    _invalid(_event(ctx={"session_id": 5}), "ctx.session_id")
    _invalid(_event(ctx={"session_id": "s", "branch": 3}), "ctx.branch")
    validate_event(_event(ctx={"session_id": "s", "branch": None, "commit": "abc"}), 0)


def test_unstorable_values_are_rejected() -> None:
    _invalid(_event(meta={"x": float("nan")}), "meta")
    _invalid(_event(meta=[float("inf")]), "meta")
    _invalid(_event(entity_id="a\x00b"), "entity_id")
    _invalid(_event(meta={"k": "\ud800"}), "meta")
    _invalid(_event(meta={"\x00": 1}), "meta")
    _invalid(_event(meta={1: 1}), "meta")
    _invalid(_event(meta={"s": {1, 2}}), "meta")
    _invalid(_event(**{"odd\ud800": 1}), "event")


def test_deeply_nested_meta_is_refused_without_recursing() -> None:
    # Stored JSON nests at most 64 levels (deeper would fail when read back); 5,000 levels
    # are refused with a clear error, not a RecursionError.
    meta: Any = []
    for _ in range(5000):
        meta = [meta]
    err = _invalid(_event(meta=meta), "meta")
    assert "deeper than 64" in err.message


def test_index_is_reported() -> None:
    err = _invalid(_event(op=""), "op", index=41)
    assert err.message.startswith("event 41: ")
    assert err.to_envelope()["index"] == 41


# --------------------------------------------------------------------------- timestamps


def test_parse_event_ts() -> None:
    assert parse_event_ts("2026-02-28T12:30:00.5+02:30") == datetime(
        2026, 2, 28, 10, 0, 0, 500000, tzinfo=UTC
    )
    assert parse_event_ts("2026-02-28T10:00:00.123456789Z").microsecond == 123456
    with pytest.raises(ValueError):
        parse_event_ts("2026-02-28T10:00:00")


def test_format_event_ts() -> None:
    ts = datetime(2026, 2, 28, 12, 0, 0, 987654, tzinfo=timezone(timedelta(hours=2)))
    assert format_event_ts(ts) == "2026-02-28T10:00:00.987Z"
    with pytest.raises(ValueError):
        format_event_ts(datetime(2026, 1, 1))


# --------------------------------------------------------------------------- make_event


def test_make_event_minimal_order_and_format() -> None:
    event = make_event(
        ts=datetime(2026, 3, 1, 9, 5, 7, 123999, tzinfo=UTC),
        entity="change",
        entity_id="001-01_a",
        op="claim",
        session_id="srv-1",
    )
    assert list(event) == ["v", "ts", "entity", "entity_id", "op", "actor", "by", "ctx"]
    assert event == {
        "v": 1,
        "ts": "2026-03-01T09:05:07.123Z",
        "entity": "change",
        "entity_id": "001-01_a",
        "op": "claim",
        "actor": "server",
        "by": "@loom",
        "ctx": {"session_id": "srv-1"},
    }


def test_make_event_all_fields() -> None:
    event = make_event(
        ts=datetime(2026, 3, 1, tzinfo=UTC),
        entity="task",
        entity_id="1.1",
        op="status_change",
        session_id="s",
        scope="001-01_a",
        from_="pending",
        to="in-progress",
        meta={"note": "n"},
        count=3,
        actor="cli",
        by="@me",
    )
    assert list(event) == [
        "v", "ts", "entity", "entity_id", "scope", "op", "from", "to", "actor", "by",
        "meta", "count", "ctx",
    ]  # fmt: skip
    assert event["count"] == 3
    assert event["from"] == "pending"


def test_make_event_rejects_bad_input() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        make_event(ts=now, entity="e", entity_id="i", op="o", session_id="s", count=0)
    with pytest.raises(ValueError):
        make_event(ts=datetime(2026, 3, 1), entity="e", entity_id="i", op="o", session_id="s")
    with pytest.raises(ValidationError):
        make_event(ts=now, entity="", entity_id="i", op="o", session_id="s")
    with pytest.raises(ValidationError):
        make_event(ts=now, entity="e", entity_id="i", op="o", session_id="s", meta=float("nan"))


# --------------------------------------------------------------------------- canonical text

_json_leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
_json_value = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(meta=_json_value, extra=st.dictionaries(st.text(min_size=1), _json_value, max_size=3))
def test_orjson_and_stdlib_canonical_texts_are_identical(meta: Any, extra: dict[str, Any]) -> None:
    """The fast encoder (events decoded by orjson) writes byte for byte what the standard one
    writes, so a batch has one fingerprint whichever decoder read it (floats aside: both
    round-trip, but may spell an exponent differently)."""
    event = {**extra, **_event(meta=meta)}
    try:
        slow = canonical_event_json(copy.deepcopy(event), 0)
    except ValidationError:
        with pytest.raises(ValidationError):
            canonical_event_json(copy.deepcopy(event), 0, strict_json=True)
        return
    assert canonical_event_json(copy.deepcopy(event), 0, strict_json=True) == slow
    assert json.loads(slow) == event


def test_fast_canonical_text_still_refuses_nul_and_takes_big_integers() -> None:
    with pytest.raises(ValidationError) as err:
        canonical_event_json(_event(meta={"x": "a\x00b"}), 3, strict_json=True)
    assert err.value.details["index"] == 3
    big = 2**80
    text = canonical_event_json(_event(meta={"n": big}), 0, strict_json=True)
    assert json.loads(text)["meta"] == {"n": big}
    # A literal backslash-u0000 (escaped backslash) is text, not a NUL.
    ok = canonical_event_json(_event(meta={"x": "\\u0000"}), 0, strict_json=True)
    assert json.loads(ok)["meta"] == {"x": "\\u0000"}
