"""The whole API with generated hostile text: every parser behind a route answers without a
5xx, and the change stays readable afterwards."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from api.conftest import ADMIN_H, P, push

from ._hostile import hostile, text_of

_ids = itertools.count(1)


@pytest.mark.slow
@given(parts=hostile())
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_hostile_text_through_every_route_never_answers_5xx(
    api: Any, parts: tuple[str, str, str]
) -> None:
    text = text_of(parts, 20_000)
    n = next(_ids)
    change = f"001-{n:02d}_hostile"
    answers = [
        push(api, change, tasks=text, specs=[["cap", text]]),
        api.get(f"{P}/changes/{change}/tasks", headers=ADMIN_H),
        api.get(f"{P}/changes/{change}", headers=ADMIN_H),
        api.get(f"{P}/changes?lifecycle=all", headers=ADMIN_H),
        api.post(f"{P}/changes/{change}/tasks/1.1/start", headers=ADMIN_H),
        api.post(f"{P}/changes/{change}/tasks/add", json={"title": "t"}, headers=ADMIN_H),
        api.put(f"{P}/modules/001", json={"name": "m", "markdown": text}, headers=ADMIN_H),
        api.put(f"{P}/specs/s{n}", json={"markdown": text}, headers=ADMIN_H),
        api.post(f"{P}/changes/{change}/archive", headers=ADMIN_H),
        api.get(f"{P}/export", headers=ADMIN_H),
    ]
    for r in answers:
        assert r.status_code < 500, (r.request.method, r.request.url, r.text[:300])
        assert r.headers["content-type"].startswith("application/json")
