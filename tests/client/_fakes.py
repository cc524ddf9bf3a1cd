"""Helpers for client tests: a recording MockTransport and canned responses."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from loom.client import Client, RetryPolicy

TOKEN = "s3cret-token-value"


@dataclass
class Recorder:
    """A MockTransport handler that records requests and answers from a queue or a function."""

    responses: list[httpx.Response | Exception] = field(default_factory=list)
    handler: Callable[[httpx.Request], httpx.Response] | None = None
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.responses:
            item = self.responses.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        if self.handler is not None:
            return self.handler(request)
        return httpx.Response(200, json={})

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content or b"null")


def make_client(
    recorder: Recorder,
    *,
    retries: int = 3,
    holder: str | None = "agent-1",
    sleeps: list[float] | None = None,
) -> Client:
    sink = sleeps if sleeps is not None else []
    return Client(
        "http://loom.test",
        TOKEN,
        "acme/widgets",
        holder=holder,
        retries=retries,
        transport=httpx.MockTransport(recorder),
        sleep=sink.append,
        retry_policy=RetryPolicy(retries=retries, random=lambda lo, hi: hi),
    )


def error(status: int, code: str, kind: str | None = None, **details: Any) -> httpx.Response:
    body: dict[str, Any] = {"error": f"{code} happened", "code": code, **details}
    if kind:
        body["kind"] = kind
    return httpx.Response(status, json=body)
