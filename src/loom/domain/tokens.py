"""Named tokens: the pure parts (format, hashing, names, scopes, targets, expiry).

A named token is ``loom_`` followed by 43 URL-safe base64 characters (32 random bytes), so
secret scanners can recognise a leaked one. Only its SHA-256 is stored: the secret has 256
bits of entropy, so a fast hash is enough (no password-style stretching is needed) and
lets a request find its token with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Final, Literal

from loom.domain.ids import validate_org, validate_repo
from loom.domain.timefmt import parse_rfc3339_us
from loom.errors import ValidationError

__all__ = [
    "NAME_PATTERN",
    "PREFIX",
    "SCOPES",
    "NamedToken",
    "Scope",
    "Target",
    "hash_token",
    "make_target",
    "new_secret",
    "parse_expiry",
    "validate_scope",
    "validate_token_name",
]

PREFIX: Final = "loom_"
SCOPES: Final = ("read", "write", "admin")
Scope = Literal["read", "write", "admin"]

NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$"
_NAME = re.compile(NAME_PATTERN)
_DURATION = re.compile(r"^(\d{1,9})([smhdw])$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_MAX_SECONDS: Final = 100 * 366 * 86_400


def new_secret() -> str:
    """A fresh token: ``loom_`` + 32 random bytes, URL-safe base64 (48 characters)."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(secret: str) -> str:
    """Lowercase hex SHA-256 of the whole token (what the database stores)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def validate_token_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValidationError(
            "token name must be 1-100 characters of A-Z a-z 0-9 . _ @ -, "
            "starting with a letter or digit",
            kind="invalid_token_name",
            field="name",
        )
    return name


def validate_scope(scope: str) -> Scope:
    if scope == "read":
        return "read"
    if scope == "write":
        return "write"
    if scope == "admin":
        return "admin"
    raise ValidationError("scope must be read, write or admin", kind="invalid_scope")


def parse_expiry(value: str, now_us: int) -> int:
    """``90s``/``15m``/``12h``/``30d``/``2w`` from now, or an RFC 3339 time (µs since epoch)."""
    text = value.strip()
    m = _DURATION.fullmatch(text)
    if m is not None:
        seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        if seconds <= 0:
            raise ValidationError("expiry must be in the future", kind="invalid_expiry")
        if seconds > _MAX_SECONDS:
            raise ValidationError("expiry must be within 100 years", kind="invalid_expiry")
        return now_us + seconds * 1_000_000
    try:
        at = parse_rfc3339_us(text)
    except ValueError:
        raise ValidationError(
            "expiry must be a duration (90s, 15m, 12h, 30d, 2w) or an RFC 3339 time",
            kind="invalid_expiry",
        ) from None
    return at


@dataclass(frozen=True)
class Target:
    """What a token covers: one project, every project of an org, or the whole server."""

    kind: Literal["project", "org", "server"]
    org: str | None = None
    repo: str | None = None

    def covers(self, org: str, repo: str) -> bool:
        if self.kind == "server":
            return True
        if self.kind == "org":
            return self.org == org
        return self.org == org and self.repo == repo

    @property
    def label(self) -> str:
        if self.kind == "server":
            return "*"
        if self.kind == "org":
            return f"{self.org}/*"
        return f"{self.org}/{self.repo}"


@dataclass(frozen=True)
class NamedToken:
    """A stored token (never the secret)."""

    name: str
    scope: Scope
    target: Target
    created_us: int
    expires_us: int | None = None
    revoked_us: int | None = None
    last_used_us: int | None = None

    def usable(self, now_us: int) -> bool:
        return self.revoked_us is None and (self.expires_us is None or now_us < self.expires_us)

    def state(self, now_us: int) -> str:
        if self.revoked_us is not None:
            return "revoked"
        if self.expires_us is not None and now_us >= self.expires_us:
            return "expired"
        return "active"


def make_target(project: str | None, org: str | None, admin: bool) -> Target:
    """The target from three mutually exclusive choices: ``ORG/REPO``, an org, or the server."""
    if sum((project is not None, org is not None, admin)) != 1:
        raise ValidationError(
            "give exactly one of project (ORG/REPO), org or admin", kind="invalid_target"
        )
    if project is not None:
        o, _, r = project.partition("/")
        return Target("project", validate_org(o), validate_repo(r))
    if org is not None:
        return Target("org", validate_org(org))
    return Target("server")
