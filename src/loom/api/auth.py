"""Authentication and authorisation (Ito-compatible tokens, PRODUCT.md §3.5 check order).

Order: path syntax (400, done before this) → a token valid for *some* scope (401) → the scope
covers this project and the project is allowed (403, one message for both, so the allowlist
cannot be probed). Comparisons are constant-time; tokens are never logged or echoed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass

from loom.errors import Forbidden, Unauthorized
from loom.settings import Settings

__all__ = ["Scope", "authorize", "derive_project_token", "parse_bearer"]


@dataclass(frozen=True)
class Scope:
    kind: str  # "admin" | "project"
    org: str | None = None
    repo: str | None = None

    @property
    def admin(self) -> bool:
        return self.kind == "admin"


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


def authorize(settings: Settings, authorization: str | None, org: str, repo: str) -> Scope:
    """Resolve the request's scope for project ``org/repo`` or raise 401/403.

    A token of another project is 401 here; ``loom.api.access`` turns it into the 403
    "valid token, wrong project" (it knows the stored projects)."""
    token = parse_bearer(authorization)
    if token is None:
        raise Unauthorized("Missing bearer token", kind="missing_token")
    scope: Scope | None = None
    matched_admin = False
    for admin in settings.admin_tokens:
        value = admin.get_secret_value()
        if value and _eq(token, value):
            matched_admin = True
    if matched_admin:
        scope = Scope("admin")
    elif settings.token_seed is not None:
        seed = settings.token_seed.get_secret_value()
        if _eq(token, derive_project_token(seed, org, repo)):
            scope = Scope("project", org, repo)
    if scope is None:
        raise Unauthorized("Invalid bearer token", kind="invalid_token")
    if not settings.project_allowed(org, repo):
        raise Forbidden(_FORBIDDEN, kind="forbidden")
    return scope


_FORBIDDEN = "this token is not allowed to access this project"
