"""Large bodies are decoded (and fingerprinted) in small steps off the event loop
(``loom.api._bigjson``): the result must be exactly the standard library's."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from loom.api import _bigjson as bigjson

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=60,
)


@settings(max_examples=examples(300), deadline=None)
@given(_values, st.sampled_from([None, 0, 2]), st.booleans())
def test_loads_and_canonical_text_match_the_standard_library(
    value: Any, indent: int | None, ascii_only: bool
) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    assert bigjson.loads(text.encode()) == json.loads(text)
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    assert "".join(bigjson.canonical_chunks(value)) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[1,]",
        '{"a":1,}',
        "[1 2]",
        '{"a" 1}',
        "[",
        '{"a":',
        "1 2",
        "[01]",
        "{1:2}",
        '"\x01"',
        '[{"a":1} {"b":2}]',
        "[[1],]",
        '["' + "x" * 100_000,  # unterminated, beyond every window
        "[" + '{"a":"' + "y" * 70_000 + '"},' * 3 + "]",
    ],
)
def test_loads_refuses_what_the_standard_library_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        bigjson.loads(text)


def test_large_containers_and_deep_nesting() -> None:
    big = [{"x": "a" * 100_000, "n": [i] * 3} for i in range(5)] + [list(range(50_000))]
    text = json.dumps({"k": big, "e": [], "o": {}})
    assert bigjson.loads(text) == json.loads(text)
    with pytest.raises(RecursionError):
        bigjson.loads("[" * 5000 + "]" * 5000)
    nan = "[NaN, -Infinity, 1e999]"
    assert repr(bigjson.loads(nan)) == repr(json.loads(nan))


def test_no_step_holds_the_interpreter_for_long() -> None:
    """While a 9 MiB body of small elements is decoded on another thread, this thread gets
    the interpreter back within a few milliseconds each time (``json.loads`` of the same
    text is one call of ~100 ms)."""
    body = json.dumps(
        {"events": [{"i": i, "meta": {"note": "x" * 120, "n": [i, None]}} for i in range(50_000)]}
    ).encode()
    assert len(body) > 8 * 2**20
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    gaps: list[float] = []
    done = threading.Event()
    try:
        worker = threading.Thread(target=lambda: (bigjson.loads(body), done.set()))
        whole = time.perf_counter()
        worker.start()
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
        worker.join()
        whole = time.perf_counter() - whole
    finally:
        sys.setswitchinterval(old)
    gaps.sort()
    # The typical gap is the switch interval, the longest the longest C call plus the
    # machine's own noise (on a shared machine the process is also preempted now and then:
    # the 90th percentile, not the maximum). One ``json.loads`` of this body is a single
    # gap far longer than that.
    started = time.perf_counter()
    json.loads(body)
    single = time.perf_counter() - started
    # Enough gaps to have a 90th percentile: about 700 on a quiet machine, 99 once with the
    # other test worker busy (each gap then includes preemption); one long call gives 1.
    assert len(gaps) >= 20, (len(gaps), single, whole)
    assert gaps[len(gaps) * 9 // 10] < max(0.005, single / 10), (gaps[-5:], single, whole)


def test_long_lists_render_a_slice_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """GET /events without a limit answers every event of the project: one ``orjson.dumps``
    of 100,000 events held the interpreter (and so the event loop) for its whole run."""
    import orjson

    from loom.api import responses

    sizes: list[int] = []
    real = orjson.dumps

    def dumps(value: Any) -> bytes:
        sizes.append(len(value) if isinstance(value, list) else 1)
        return real(value)

    monkeypatch.setattr(responses.orjson, "dumps", dumps)
    for n in (0, 1, 1000, 1001, 2500, 100_000):
        content = [{"seq": i, "meta": {"n": [i, None, "é"]}} for i in range(n)]
        expected = real(content)
        sizes.clear()
        assert responses.JSON(content).body == expected, n
        assert max(sizes) <= 1000, n
