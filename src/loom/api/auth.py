"""Authentication and authorisation (Ito-compatible tokens, PRODUCT.md §3.5 check order).

Three kinds of token: the configured admin tokens, Ito's HMAC project tokens (unless
``--no-project-tokens``) and named tokens (``loom_…``, stored as a hash, with a scope, a
target, an expiry and revocation; the caller resolves one by its hash and passes it in).

Order: path syntax (400, done before this) → a token valid for *some* scope (401) → the scope
covers this project and the project is allowed (403, one message for both, so the allowlist
cannot be probed). Comparisons are constant-time; tokens are never logged or echoed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass

from loom.domain.tokens import PREFIX, NamedToken
from loom.errors import Forbidden, Unauthorized
from loom.settings import Settings

__all__ = [
    "Scope",
    "authorize",
    "authorize_admin",
    "derive_project_token",
    "is_named",
    "parse_bearer",
]


@dataclass(frozen=True)
class Scope:
    kind: str  # "admin" | "project"
    org: str | None = None
    repo: str | None = None
    # Named tokens: ``read`` ones may not write; ``name`` is what audit events record.
    read_only: bool = False
    name: str | None = None

    @property
    def admin(self) -> bool:
        return self.kind == "admin"


def is_named(token: str | None) -> bool:
    """Whether a bearer token has the named-token form (``loom_…``)."""
    return token is not None and token.startswith(PREFIX)


@functools.lru_cache(maxsize=4096)
def derive_project_token(seed: str, org: str, repo: str) -> str:
    """Lowercase hex HMAC-SHA256(key=seed, message="org/repo"), as upstream Ito (memoised)."""
    return hmac.new(seed.encode(), f"{org}/{repo}".encode(), hashlib.sha256).hexdigest()


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header or not header.startswith("Bearer "):
        return None
    token = header[7:]
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        return None
    return token


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _matches_admin(settings: Settings, token: str) -> bool:
    matched = False
    for admin in settings.admin_tokens:
        value = admin.get_secret_value()
        if value and _eq(token, value):
            matched = True
    return matched


def _usable(named: NamedToken | None, now_us: int) -> NamedToken:
    """The named token, or 401: unknown, revoked, or expired."""
    if named is None:
        raise Unauthorized("Invalid bearer token", kind="invalid_token")
    if named.revoked_us is not None:
        raise Unauthorized("This token has been revoked", kind="token_revoked")
    if not named.usable(now_us):
        raise Unauthorized("This token has expired", kind="token_expired")
    return named


def _named_scope(named: NamedToken, org: str, repo: str) -> Scope:
    if not named.target.covers(org, repo):
        raise Forbidden(_FORBIDDEN, kind="forbidden")
    kind = "admin" if named.scope == "admin" else "project"
    return Scope(kind, org, repo, read_only=named.scope == "read", name=named.name)


def authorize_admin(
    settings: Settings,
    authorization: str | None,
    named: NamedToken | None = None,
    now_us: int = 0,
) -> str:
    """Allow a server-wide admin request (token routes, ``/metrics``) or raise 401/403.

    Returns the name to record: the named token's, or ``@admin``.
    """
    token = parse_bearer(authorization)
    if token is None:
        raise Unauthorized("Missing bearer token", kind="missing_token")
    if _matches_admin(settings, token):
        return "@admin"
    if is_named(token):
        found = _usable(named, now_us)
        if found.scope == "admin" and found.target.kind == "server":
            return found.name
        raise Forbidden("this needs an admin token", kind="admin_required")
    raise Unauthorized("Invalid bearer token", kind="invalid_token")


def authorize(
    settings: Settings,
    authorization: str | None,
    org: str,
    repo: str,
    *,
    named: NamedToken | None = None,
    now_us: int = 0,
) -> Scope:
    """Resolve the request's scope for project ``org/repo`` or raise 401/403.

    ``named``: the stored token whose hash matches the bearer token, when it has the named
    form (looked up by the caller); ``now_us`` decides its expiry. A token of another
    project is 401 here; ``loom.api.access`` turns it into the 403 "valid token, wrong
    project" (it knows the stored projects)."""
    token = parse_bearer(authorization)
    if token is None:
        raise Unauthorized("Missing bearer token", kind="missing_token")
    scope: Scope | None = None
    if _matches_admin(settings, token):
        scope = Scope("admin")
    elif is_named(token):
        scope = _named_scope(_usable(named, now_us), org, repo)
    elif settings.project_tokens and settings.token_seed is not None:
        seed = settings.token_seed.get_secret_value()
        if _eq(token, derive_project_token(seed, org, repo)):
            scope = Scope("project", org, repo)
    if scope is None:
        raise Unauthorized("Invalid bearer token", kind="invalid_token")
    if not settings.project_allowed(org, repo):
        raise Forbidden(_FORBIDDEN, kind="forbidden")
    return scope


_FORBIDDEN = "this token is not allowed to access this project"
