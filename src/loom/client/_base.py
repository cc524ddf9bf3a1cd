"""The request machinery shared by every route of :class:`loom.client.Client`.

Holds the connection settings, builds URLs (each path segment percent-encoded), adds the
auth, holder, fencing and idempotency headers, retries failures that are safe to retry, and
maps error envelopes to the typed exceptions of :mod:`loom.errors`. No route lives here.
"""

from __future__ import annotations

import logging
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from loom.client._errors import ConnectionFailed, InvalidArgument
from loom.client._retry import RetryPolicy, parse_retry_after
from loom.errors import LoomError, ValidationError, error_from_envelope

__all__ = ["API_PREFIX", "BaseClient", "check_path_id", "segment_problem"]

API_PREFIX = "/api/v1"
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_log = logging.getLogger("loom.client")


def _redact_url(url: str) -> str:
    """The URL without any ``user:password@`` part."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def segment_problem(value: str) -> str | None:
    """Why ``value`` cannot be one id in a URL path, or None when it can.

    Refused: empty, ``.`` or ``..``, and anything containing ``/``, ``\\`` or a control
    character. Everything else is sent percent-encoded, so the server sees it verbatim.
    """
    if value == "":
        return "it is empty"
    if value in (".", ".."):
        return f"{value!r} is not an id"
    for bad in ("/", "\\"):
        if bad in value:
            return f"it contains {bad!r}"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        return "it contains a control character"
    return None


def _shown(value: str) -> str:
    return repr(value if len(value) <= 100 else value[:100] + "…")


def check_path_id(value: str | int, what: str = "id") -> str:
    """``value`` as a string if it can be one URL path segment, else :class:`InvalidArgument`.

    ``what`` names the id in the message (``"change id"``, ``"task id"``, ...).
    """
    text = str(value)
    problem = segment_problem(text)
    if problem is not None:
        raise InvalidArgument(f"invalid {what} {_shown(text)}: {problem}", field=what)
    return text


# The literal route segment before an id names it in error messages.
_ID_AFTER = {
    "changes": "change id",
    "tasks": "task id",
    "modules": "module id",
    "specs": "spec id",
}


def _segment(value: str | int, what: str = "path segment") -> str:
    """One URL path segment, validated and percent-encoded."""
    return quote(check_path_id(value, what), safe="")


def new_idempotency_key() -> str:
    """A fresh key for one logical operation (a UUID4, valid for headers and event bodies)."""
    return str(uuid.uuid4())


class BaseClient:
    """Connection settings, headers, retries and error mapping.

    Args:
        base_url: server root, e.g. ``http://127.0.0.1:9010`` (``/api/v1`` is added).
        token: bearer token (admin or project token). Never shown in reprs or errors.
        project: ``"org/repo"``; needed by every project route.
        holder: lease holder identity sent on writes (``X-Loom-Holder``).
        timeout: seconds for each HTTP request.
        retries: extra attempts after a retryable failure.
        transport: an httpx transport (tests use ``httpx.MockTransport``).
        sleep: called with the seconds to wait between attempts (tests inject a recorder).
        retry_policy: replaces the default policy built from ``retries``.
        total_timeout: seconds one logical request may take over all its attempts and waits
            (``None``: unbounded); each attempt's timeout is cut to what is left.
        on_retry: called with one line (what failed, what is retried, after how long)
            before each retry; the ``loom`` command prints it on stderr.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:9010",
        token: str | None = None,
        project: str | None = None,
        *,
        holder: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        retry_policy: RetryPolicy | None = None,
        total_timeout: float | None = None,
        on_retry: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.total_timeout = total_timeout
        self._on_retry = on_retry
        self._clock = clock
        self.__token = token
        self.project = project
        self.holder = holder
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy(retries=retries)
        self._sleep = sleep
        self._fencing: dict[str, int] = {}
        verify: ssl.SSLContext | bool = True
        if urlsplit(self.base_url).scheme == "http":
            # Plain HTTP never uses TLS (only relative paths, no redirects followed): skip
            # loading the CA bundle, ~30 ms of every CLI run. This context trusts nothing,
            # so it would fail closed if it were ever used.
            verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
            verify=verify,
        )

    # --- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        token = "None" if self.__token is None else "'***'"
        return (
            f"{type(self).__name__}(base_url={_redact_url(self.base_url)!r}, "
            f"project={self.project!r}, holder={self.holder!r}, token={token})"
        )

    @property
    def has_token(self) -> bool:
        """True when a token is configured (the token itself is never exposed)."""
        return bool(self.__token)

    def _auth_header(self) -> dict[str, str]:
        """``Authorization`` for requests sent outside :meth:`_request` (the event stream)."""
        return {"Authorization": f"Bearer {self.__token}"} if self.__token else {}

    # --- fencing tokens ------------------------------------------------------------

    def remember_fencing_token(self, change_id: str, token: int | None) -> None:
        """Send ``token`` as ``X-Loom-Fencing-Token`` on later writes to ``change_id``."""
        if token is None:
            self._fencing.pop(change_id, None)
        else:
            self._fencing[change_id] = token

    def fencing_token(self, change_id: str) -> int | None:
        """The fencing token this client knows for ``change_id``, if any."""
        return self._fencing.get(change_id)

    # --- URL building --------------------------------------------------------------

    def _project_path(self, *segments: str | int) -> str:
        """``/projects/{org}/{repo}/...``: each segment validated, then percent-encoded.

        No id can add or remove a path level: ``/``, ``\\``, ``..`` and control characters
        are refused (:class:`InvalidArgument`) before any request is sent.
        """
        if not self.project or self.project.count("/") != 1:
            raise ValidationError(
                "no project configured: create the Client with project='ORG/REPO'",
                kind="project_missing",
            )
        org, repo = self.project.split("/")
        parts = ["projects", _segment(org, "org"), _segment(repo, "repo")]
        previous = ""
        for segment in segments:
            parts.append(_segment(segment, _ID_AFTER.get(previous, "path segment")))
            previous = str(segment)
        return "/" + "/".join(parts)

    def _write_headers(
        self, change_id: str | None, fencing_token: int | None
    ) -> dict[str, str | bytes]:
        headers: dict[str, str | bytes] = {}
        if self.holder:
            # UTF-8 bytes: httpx would encode a str as ASCII (UnicodeEncodeError for "agent-é").
            headers["X-Loom-Holder"] = self.holder.encode("utf-8")
        token = fencing_token
        if token is None and change_id is not None:
            token = self._fencing.get(change_id)
        if token is not None:
            headers["X-Loom-Fencing-Token"] = str(token)
        return headers

    # --- the request loop ----------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str | bytes] | None = None,
        idempotency_key: str | None = None,
        retry: bool = True,
        accept: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """Send one logical request, retrying when safe, and return a 2xx response.

        Mutating requests get one ``Idempotency-Key`` (given or generated) that is reused
        by every attempt, so the server applies the operation at most once. Statuses in
        ``accept`` are returned instead of raised.
        """
        send_headers: dict[str, str | bytes] = {"Accept": "application/json"}
        if self.__token:
            send_headers["Authorization"] = f"Bearer {self.__token}"
        if method in _MUTATING:
            send_headers["Idempotency-Key"] = idempotency_key or new_idempotency_key()
        if headers:
            send_headers.update(headers)
        query = {k: v for k, v in (params or {}).items() if v is not None}
        policy = self.retry_policy
        started = self._clock()
        deadline = None if self.total_timeout is None else started + self.total_timeout
        attempt = 0
        while True:
            timeout = self.timeout
            if deadline is not None:
                timeout = max(0.001, min(timeout, deadline - self._clock()))
            try:
                response = self._http.request(
                    method,
                    path,
                    params=query or None,
                    json=json,
                    headers=[
                        (k.encode("ascii"), _header_bytes(v)) for k, v in send_headers.items()
                    ],
                    timeout=timeout,
                )
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise ConnectionFailed(
                    f"invalid server URL {_redact_url(self.base_url)!r}: {exc}"
                ) from None
            except httpx.TransportError as exc:
                problem = self._transport_problem(exc, timeout)
                if retry and attempt < policy.retries:
                    wait = policy.delay(attempt)
                    if self._in_time(deadline, wait):
                        self._retrying(method, path, problem, attempt, wait)
                        attempt += 1
                        continue
                raise self._gave_up(exc, problem, attempt, started) from None
            status = response.status_code
            _log.debug("%s %s -> %d (attempt %d)", method, path, status, attempt + 1)
            if 200 <= status < 300 or status in accept:
                return response
            if retry and attempt < policy.retries and self._retryable(response):
                wait = policy.delay(attempt, parse_retry_after(response.headers.get("Retry-After")))
                if self._in_time(deadline, wait):
                    self._retrying(method, path, f"HTTP {status}", attempt, wait)
                    attempt += 1
                    continue
            raise self._error(response)

    def _in_time(self, deadline: float | None, wait: float) -> bool:
        """True when a retry after ``wait`` seconds can still start before the deadline."""
        return deadline is None or self._clock() + wait < deadline

    def _retrying(self, method: str, path: str, problem: str, attempt: int, wait: float) -> None:
        line = (
            f"{problem}; retrying {method} {path} in {wait:.1f}s "
            f"(retry {attempt + 1} of {self.retry_policy.retries})"
        )
        _log.debug("%s", line)
        if self._on_retry is not None:
            self._on_retry(line)
        self._sleep(wait)

    def _transport_problem(self, exc: httpx.TransportError, timeout: float) -> str:
        where = _redact_url(self.base_url)
        if isinstance(exc, httpx.ConnectTimeout):
            return f"timed out connecting to {where} after {timeout:g}s"
        if isinstance(exc, httpx.TimeoutException):
            return f"the Loom server at {where} did not answer within {timeout:g}s"
        return f"cannot reach the Loom server at {where}: {type(exc).__name__}: {exc}"

    def _gave_up(
        self, exc: httpx.TransportError, problem: str, attempt: int, started: float
    ) -> ConnectionFailed:
        tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
        elapsed = self._clock() - started
        if isinstance(exc, httpx.TimeoutException):
            return ConnectionFailed(
                f"timed out: {problem} ({tries}, {elapsed:.0f}s in all)",
                kind="timeout",
            )
        return ConnectionFailed(f"{problem} ({tries})")

    def _retryable(self, response: httpx.Response) -> bool:
        if self.retry_policy.should_retry_status(response.status_code):
            return True
        if response.status_code == 409:
            body = self._body(response)
            return isinstance(body, dict) and body.get("kind") == "idempotency_in_flight"
        return False

    @staticmethod
    def _body(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return None

    def _error(self, response: httpx.Response) -> LoomError:
        body = self._body(response)
        if not isinstance(body, dict):
            text = response.text.strip()[:200]
            body = {"error": f"HTTP {response.status_code}" + (f": {text}" if text else "")}
        return error_from_envelope(response.status_code, body)

    def _json(self, response: httpx.Response) -> Any:
        body = self._body(response)
        if body is None and response.content:
            raise ValidationError(
                f"the server sent a non-JSON response (HTTP {response.status_code})",
                kind="bad_response",
            )
        return body


def _header_bytes(value: str | bytes) -> bytes:
    """A header value as sent: bytes as given (a UTF-8 holder name), text as ASCII (httpx's
    own rule for ``str`` values)."""
    return value if isinstance(value, bytes) else value.encode("ascii")
