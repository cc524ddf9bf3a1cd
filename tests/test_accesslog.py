"""Query strings in the access log never repeat a value (CLI.md §1: no tokens in the log)."""

from __future__ import annotations

import logging

import pytest

from loom._accesslog import RedactingAccessFormatter, redact_query


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/api/v1/health", "/api/v1/health"),
        ("/p?since=5&limit=10", "/p?since=***&limit=***"),
        ("/p?token=s3cret", "/p?***"),
        ("/p?force=true&test-admin-token=1", "/p?force=***&***"),
        ("/p?s3cretTokenThatIsLongerThanThirtyTwoCharacters", "/p?***"),
        ("/p?a%20b=1&=x&op", "/p?***&***&op=***"),
    ],
)
def test_redact_query(path: str, logged: str) -> None:
    assert redact_query(path) == logged


def test_the_formatter_logs_the_redacted_request_line() -> None:
    formatter = RedactingAccessFormatter(fmt='"%(request_line)s" %(status_code)s', use_colors=False)
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/p?token=s3cret", "1.1", 200),
        None,
    )
    line = formatter.format(record)
    assert line == '"GET /p?*** HTTP/1.1" 200 OK'
    assert record.args is not None and "s3cret" in str(record.args)  # the record is untouched
