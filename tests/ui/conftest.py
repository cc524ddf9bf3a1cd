"""Browser fixtures: Debian's Chromium driven by Playwright (never `playwright install`).

Without Chromium the browser tests skip on a developer machine and FAIL under CI (``CI``
set, as ``.ci/run`` does), so a CI run can never pass without having run them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = os.environ.get("LOOM_CHROMIUM", "/usr/bin/chromium")


def _chromium_missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (browser tests are required under CI)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _chromium_missing(f"Chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _chromium_missing("the playwright package is not installed")
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield instance
        instance.close()
