"""Loom's error tree, shared by the domain, the service layer, the HTTP API and the client.

Every error Loom raises on purpose is a :class:`LoomError`. Each class carries the HTTP
status and the coarse Ito-compatible ``code``; each instance carries a precise ``kind`` and
structured ``details`` that travel in the JSON envelope::

    LoomError
    ├── ValidationError ............ 400 bad_request
    │   ├── PayloadTooLarge ........ 413 payload_too_large
    │   ├── UnsupportedMediaType ... 415 unsupported_media_type
    │   └── Unprocessable .......... 422 unprocessable
    ├── Unauthorized ............... 401 unauthorized
    ├── Forbidden .................. 403 forbidden
    ├── NotFound ................... 404 not_found
    ├── MethodNotAllowed ........... 405 method_not_allowed
    ├── Conflict ................... 409 conflict
    │   ├── LeaseConflict .......... lease_conflict, not_lease_holder, stale_fencing_token,
    │   │                              unknown_fencing_token
    │   ├── RevisionConflict ....... revision_conflict
    │   ├── ArchivedConflict ....... archived
    │   ├── StaleSpecBase .......... stale_spec_base (archive; see docs/overlaps.md)
    │   └── IdempotencyInFlight .... idempotency_in_flight
    ├── RequestTimeout ............. 408 request_timeout (body_timeout, header_timeout)
    ├── PreconditionFailed ......... 412 precondition_failed (weak_etag)
    ├── PreconditionRequired ....... 428 precondition_required
    ├── RateLimited ................ 429 rate_limited
    ├── InternalError .............. 500 internal_error
    └── Unavailable ................ 503 service_unavailable

The envelope is ``{"error": message, "code": code, "kind": kind, **details}``.
:func:`error_from_envelope` maps an envelope back to the same classes (used by the client).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ArchivedConflict",
    "Conflict",
    "Forbidden",
    "IdempotencyInFlight",
    "InternalError",
    "LeaseConflict",
    "LoomError",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "PreconditionRequired",
    "RateLimited",
    "RequestTimeout",
    "RevisionConflict",
    "StaleSpecBase",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "UnsupportedMediaType",
    "ValidationError",
    "error_from_envelope",
]

_RESERVED = frozenset({"error", "code", "kind"})


class LoomError(Exception):
    """Root of every deliberate Loom error."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_kind: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, kind: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind or self.default_kind
        self.details: dict[str, Any] = {k: v for k, v in details.items() if k not in _RESERVED}
        self.http_status: int = self.status

    def to_envelope(self) -> dict[str, Any]:
        """The JSON error body (API.md §0)."""
        return {"error": self.message, "code": self.code, "kind": self.kind, **self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, kind={self.kind!r})"


class ValidationError(LoomError):
    """The request is malformed or breaks a rule; nothing was changed."""

    status = 400
    code = "bad_request"
    default_kind = "invalid_request"


class PayloadTooLarge(ValidationError):
    status = 413
    code = "payload_too_large"
    default_kind = "payload_too_large"


class UnsupportedMediaType(ValidationError):
    status = 415
    code = "unsupported_media_type"
    default_kind = "unsupported_media_type"


class Unprocessable(ValidationError):
    status = 422
    code = "unprocessable"
    default_kind = "validation_error"


class Unauthorized(LoomError):
    status = 401
    code = "unauthorized"
    default_kind = "unauthorized"


class Forbidden(LoomError):
    status = 403
    code = "forbidden"
    default_kind = "forbidden"


class NotFound(LoomError):
    status = 404
    code = "not_found"
    default_kind = "not_found"


class MethodNotAllowed(LoomError):
    status = 405
    code = "method_not_allowed"
    default_kind = "method_not_allowed"


class Conflict(LoomError):
    status = 409
    code = "conflict"
    default_kind = "conflict"


class LeaseConflict(Conflict):
    """The change is leased by someone else, or the caller's lease/fencing token is stale."""

    default_kind = "lease_conflict"


class RevisionConflict(Conflict):
    default_kind = "revision_conflict"


class ArchivedConflict(Conflict):
    default_kind = "archived"


class StaleSpecBase(Conflict):
    """Archive refused: a requirement the change touches changed since the change's base."""

    default_kind = "stale_spec_base"


class IdempotencyInFlight(Conflict):
    default_kind = "idempotency_in_flight"


class RequestTimeout(LoomError):
    status = 408
    code = "request_timeout"
    default_kind = "request_timeout"


class PreconditionFailed(LoomError):
    status = 412
    code = "precondition_failed"
    default_kind = "precondition_failed"


class PreconditionRequired(LoomError):
    status = 428
    code = "precondition_required"
    default_kind = "precondition_required"


class RateLimited(LoomError):
    status = 429
    code = "rate_limited"
    default_kind = "rate_limited"


class InternalError(LoomError):
    status = 500
    code = "internal_error"
    default_kind = "internal_error"


class Unavailable(LoomError):
    status = 503
    code = "service_unavailable"
    default_kind = "service_unavailable"


# One table: kind first (precise), then code, then status.
_BY_KIND: dict[str, type[LoomError]] = {
    "lease_conflict": LeaseConflict,
    "not_lease_holder": LeaseConflict,
    "stale_fencing_token": LeaseConflict,
    "unknown_fencing_token": LeaseConflict,
    "revision_conflict": RevisionConflict,
    "archived": ArchivedConflict,
    "stale_spec_base": StaleSpecBase,
    "idempotency_in_flight": IdempotencyInFlight,
}

_ALL: tuple[type[LoomError], ...] = (
    ValidationError,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    RequestTimeout,
    PreconditionFailed,
    PreconditionRequired,
    RateLimited,
    InternalError,
    Unavailable,
)
_BY_CODE: dict[str, type[LoomError]] = {cls.code: cls for cls in _ALL}
_BY_STATUS: dict[int, type[LoomError]] = {cls.status: cls for cls in _ALL}


def error_from_envelope(status: int, body: Any) -> LoomError:
    """Rebuild the typed error from an HTTP status and its (possibly non-JSON) body."""
    if not isinstance(body, dict):
        body = {}
    kind = body.get("kind")
    code = body.get("code")
    cls: type[LoomError] | None = None
    if isinstance(kind, str):
        cls = _BY_KIND.get(kind)
    if cls is None and isinstance(code, str):
        cls = _BY_CODE.get(code)
    if cls is None:
        cls = _BY_STATUS.get(status)
    if cls is None:
        if 500 <= status < 600:
            cls = Unavailable if status in (502, 503, 504) else InternalError
        elif status == 409:
            cls = Conflict
        else:
            cls = ValidationError
    message = body.get("error")
    if not isinstance(message, str):
        message = f"HTTP {status}"
    details = {k: v for k, v in body.items() if k not in _RESERVED}
    err = cls(message, kind=kind if isinstance(kind, str) else None, **details)
    err.http_status = status
    return err
