"""Fixtures for client tests that need the real server."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def server(live_server: Any) -> Any:
    """The live server (``live_server`` stops it and closes its log pipe at teardown)."""
    return live_server
