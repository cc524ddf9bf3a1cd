"""Fixtures for client tests that need the real server."""

from __future__ import annotations

import time
from typing import Any

import pytest


@pytest.fixture
def server(live_server: Any) -> Any:
    """The live server, stopped and with its log pipe closed at teardown (no ResourceWarning)."""
    yield live_server
    live_server.stop()
    if live_server.process.stderr is not None:
        time.sleep(0.05)  # let the fixture's drain thread reach EOF
        live_server.process.stderr.close()
