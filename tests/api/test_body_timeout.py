"""The body guard's read timeout: a body that stalls between two chunks gets 408, a body that
keeps arriving slowly does not (the timer restarts with every chunk)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from loom.api.middleware import read_body

SCOPE: dict[str, Any] = {
    "type": "http",
    "method": "POST",
    "path": "/api/v1/projects/acme/widgets/events",
    "headers": [(b"content-type", b"application/json")],
}


def _run(chunks: list[bytes], gap: float, timeout: float, stall: bool) -> tuple[Any, list[Any]]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def main() -> Any:
        pending = list(chunks)

        async def receive() -> Any:
            if not pending:
                await asyncio.Event().wait()  # the client went quiet
            await asyncio.sleep(gap)
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or stall}

        return await read_body(SCOPE, receive, send, 10_000, timeout)

    return asyncio.run(main()), sent


def test_a_stalled_body_is_answered_408_body_timeout() -> None:
    body, sent = _run([b'{"events": ['], gap=0, timeout=0.2, stall=True)
    assert body is None
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["kind"] == "body_timeout"


def test_a_slow_body_that_keeps_coming_is_read_whole() -> None:
    chunks = [b'{"a": ', b"1", b", ", b'"b": ', b"2", b"}"] * 3
    # Each chunk comes well within the timeout; all of them together take longer than it.
    body, sent = _run(chunks, gap=0.1, timeout=1.0, stall=False)
    assert body == b"".join(chunks)
    assert sent == []
