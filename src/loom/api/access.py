"""Per-request access: path ids validated first (400), then the token (401/403)."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from loom import metrics
from loom.api import _bigjson as bigjson
from loom.api._bigjson import LARGE_BODY
from loom.api._scope import ACCESS_KEY, BODY_KEY, HOT_KEY, WRITE_STARTED
from loom.api._token_index import ProjectTokenIndex
from loom.api.auth import (
    Scope,
    authorize,
    authorize_admin,
    is_named,
    parse_bearer,
)
from loom.api.responses import JSON
from loom.domain import ids
from loom.domain.tokens import NamedToken
from loom.errors import Forbidden, LeaseConflict, Unauthorized, ValidationError
from loom.service import Actor, Project, ServiceContext, catalog, tokens
from loom.service.idempotency import run_idempotent
from loom.service.leases import ON_LOOP
from loom.settings import Settings

__all__ = [
    "Access",
    "admin_access",
    "bool_param",
    "named_token",
    "prepare",
    "project_access",
    "read",
    "read_json",
    "valid_idempotency_key",
    "write",
]


def valid_idempotency_key(key: str) -> bool:
    return _IDEMPOTENCY_KEY.fullmatch(key) is not None


log = logging.getLogger("loom.api")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_TARGET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._: -]{0,127}$")


@dataclass(frozen=True)
class Access:
    project: Project
    scope: Scope
    actor: Actor


def _validate_target(value: str) -> str:
    """Read routes accept canonical ids and Ito's short forms (``1-2``, ``12.2-5_x``)."""
    try:
        return ids.validate_change_id(value)
    except ValidationError:
        if _TARGET.fullmatch(value) and ".." not in value:
            return value
        raise


@functools.lru_cache(maxsize=4096)
def _valid_project(org: str, repo: str) -> tuple[str, str]:
    """Validated (org, repo); memoised, as agents repeat the same few (errors are not)."""
    return ids.validate_org(org), ids.validate_repo(repo)


@functools.lru_cache(maxsize=16384)
def _valid_change(change_id: str, read: bool) -> str:
    return _validate_target(change_id) if read else ids.validate_change_id(change_id)


def _validate_path(request: Request) -> tuple[str, str]:
    params = request.path_params
    org, repo = _valid_project(params["org"], params["repo"])
    change_id = params.get("change_id")
    if change_id is not None:
        _valid_change(change_id, request.method == "GET")
    if "task_id" in params:
        ids.validate_task_id(params["task_id"])
    if "module_id" in params:
        ids.validate_module_id(params["module_id"])
    if "spec_id" in params:
        ids.validate_spec_id(params["spec_id"])
    return org, repo


def _utf8_header(value: bytes, name: str) -> str:
    """A header value as UTF-8 (docs/ito-compat.md: how loom.client sends a holder name)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"{name} must be UTF-8", kind="invalid_id", field="holder") from None


def _access_headers(request: Request) -> tuple[str | None, str | None, str | None]:
    """(Authorization, X-Loom-Holder, X-Loom-Fencing-Token), first occurrence of each, in one
    pass over the raw headers (names arrive lower-cased from the ASGI server)."""
    auth = holder = fencing = None
    for name, value in request.scope["headers"]:
        if name == b"authorization":
            if auth is None:
                auth = value.decode("latin-1")
        elif name == b"x-loom-holder":
            if holder is None:
                holder = _utf8_header(value, "X-Loom-Holder")
        elif name == b"x-loom-fencing-token" and fencing is None:
            fencing = value.decode("latin-1")
    return auth, holder, fencing


def _token_index(request: Request, seed: str) -> ProjectTokenIndex:
    state = request.app.state
    index: ProjectTokenIndex | None = getattr(state, "token_index", None)
    if index is None:
        settings: Settings = state.settings
        allowlisted = [entry.partition("/")[::2] for entry in settings.allow_projects]
        index = state.token_index = ProjectTokenIndex(seed, allowlisted)
    return index


async def _token_of_other_project(
    request: Request, header: str | None, org: str, repo: str
) -> bool:
    """Whether the bearer token is the project token of another known project: one indexed
    query and one hash, whatever the number of projects (see :mod:`loom.api._token_index`)."""
    settings: Settings = request.app.state.settings
    token = parse_bearer(header)
    if token is None or settings.token_seed is None or not settings.project_tokens:
        return False
    if is_named(token):
        return False  # a named token is never an HMAC of another project
    ctx: ServiceContext = request.app.state.ctx
    index = _token_index(request, settings.token_seed.get_secret_value())

    def refresh() -> None:
        index.refresh(catalog.known_projects(ctx, index.last_id))

    await ctx.db.run_read(refresh)
    owner = index.owner(token)
    return owner is not None and owner != (org, repo)


async def named_token(ctx: ServiceContext, header: str | None) -> NamedToken | None:
    """The stored named token the bearer token stands for (None for other kinds of token).

    One indexed read by the secret's hash, answered from the process cache for up to a
    second; other tokens (admin, HMAC project tokens) never reach the database here.
    """
    token = parse_bearer(header)
    if token is None or not is_named(token):
        return None
    digest = tokens.token_hash(token)
    found = tokens.cached_token(ctx, digest)
    if found is tokens.MISS:
        found = await ctx.db.run_read(tokens.lookup_token, ctx, digest)
    if not isinstance(found, NamedToken):
        return None
    if ctx.tokens.due_for_touch(digest):
        # last_used: at most once a minute per token and process (one small write).
        await ctx.db.run_write(_record_use, ctx, digest)
    return found


def _record_use(ctx: ServiceContext, digest: str) -> None:
    try:
        tokens.record_use(ctx, digest)
    except Exception as exc:  # bookkeeping only: never fails a request
        log.warning("could not record a token's last use: %s", type(exc).__name__)


async def admin_access(request: Request) -> str:
    """Server-wide admin routes: the configured admin tokens or a named admin token."""
    settings: Settings = request.app.state.settings
    ctx: ServiceContext = request.app.state.ctx
    header = request.headers.get("authorization")
    named = await named_token(ctx, header)
    return authorize_admin(settings, header, named, ctx.now_us())


async def project_access(request: Request) -> Access:
    """FastAPI dependency for every project route."""
    org, repo = _validate_path(request)
    settings: Settings = request.app.state.settings
    ctx: ServiceContext = request.app.state.ctx
    header, holder, token_header = _access_headers(request)
    maybe_named = header is not None and "loom_" in header
    named = await named_token(ctx, header) if maybe_named else None
    try:
        scope = authorize(settings, header, org, repo, named=named, now_us=ctx.now_us())
    except Unauthorized as err:
        if (
            err.kind == "invalid_token"
            and not maybe_named
            and await _token_of_other_project(request, header, org, repo)
        ):
            raise Forbidden(
                "this token is not allowed to access this project", kind="forbidden"
            ) from None
        raise
    if holder is not None:
        holder = ids.validate_holder(holder)
    fencing: int | None = None
    if token_header is not None:
        value = token_header.strip()
        # isascii(): str.isdigit() also accepts "²" and other digits int() refuses (a 500).
        if not (value.isascii() and value.isdigit()) or len(value) > 18:
            raise ValidationError(
                "X-Loom-Fencing-Token must be a non-negative integer", kind="invalid_fencing_token"
            )
        fencing = int(value)
    access = Access(Project(org, repo), scope, Actor(holder, fencing, scope.admin, scope.name))
    request.scope[ACCESS_KEY] = access
    return access


async def read(request: Request, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    ctx: ServiceContext = request.app.state.ctx
    return await ctx.db.run_read(functools.partial(fn, ctx, *args, **kwargs))


async def read_json(
    request: Request,
    fn: Callable[..., Any],
    *args: Any,
    headers: Callable[[Any], dict[str, str]] | None = None,
    page_header: str | None = None,
    **kwargs: Any,
) -> JSON:
    """:func:`read`, with the JSON response rendered on the worker thread too: a large
    change or tasks list takes milliseconds to encode, which must not block the event loop.

    ``page_header``: ``fn`` returns ``(items, next)``; the body is the items, and ``next``,
    unless None or empty, goes in that header (``X-Next-Cursor``, ``X-Next-Since``)."""
    ctx: ServiceContext = request.app.state.ctx

    def run() -> JSON:
        body = fn(ctx, *args, **kwargs)
        if page_header is not None:
            body, after = body
            paged = {page_header: str(after)} if after is not None and after != "" else None
            return JSON(body, headers=paged)
        return JSON(body, headers=None if headers is None else headers(body))

    return await ctx.db.run_read(run)


async def prepare(request: Request, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run a use case's "prepare" step (parse or merge large artifacts into the domain memo)
    on a worker thread, before the use case's transaction, which on SQLite runs on the event
    loop."""
    ctx: ServiceContext = request.app.state.ctx
    await ctx.db.run_read(functools.partial(fn, ctx, *args, **kwargs))


async def _fingerprint(request: Request) -> str:
    body = request.scope.get(BODY_KEY)
    if body is None:
        body = await request.body()
    parts = (
        request.method,
        request.url.path,
        str(sorted(request.query_params.multi_items())),
        request.headers.get("x-loom-holder", ""),
        request.headers.get("x-loom-fencing-token", ""),
        request.headers.get("if-match", ""),
    )
    if len(body) <= _SMALL_BODY:
        return _digest(parts, body)
    ctx: ServiceContext = request.app.state.ctx
    return await ctx.db.run_read(_digest, parts, body)  # megabytes of JSON: off the loop


def _digest(parts: tuple[str, ...], body: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogateescape"))
        h.update(b"\x00")
    try:
        if len(body) > LARGE_BODY:  # the same text, in small steps (loom.api._bigjson)
            canonical = "".join(bigjson.canonical_chunks(bigjson.loads(body)))
        else:
            canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
        body = canonical.encode()
    except (ValueError, RecursionError):  # not JSON, or nested too deep: the bytes as sent
        pass
    h.update(body)
    return h.hexdigest()


_SMALL_BODY = 64 * 1024
"""A hot-lane write with a larger body (a big event batch) runs off the event loop too."""


async def write(
    request: Request,
    access: Access,
    fn: Callable[..., Any],
    *args: Any,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> JSON:
    """Run a mutating use case on the writer executor, honouring ``Idempotency-Key``.

    Every mutating route goes through here, so this is where ``read`` tokens are refused
    (not in :func:`project_access`: the MCP endpoint is POST-only and serves reads too).
    Unkeyed, the use cases of :data:`loom.service.leases.ON_LOOP` run on the event loop on
    PostgreSQL, without blocking it (:meth:`loom.store.engine.Database.run_write`).
    """
    if access.scope.read_only:
        raise Forbidden("this token may only read", kind="forbidden")
    request.scope[WRITE_STARTED] = True
    ctx: ServiceContext = request.app.state.ctx
    call = functools.partial(fn, ctx, access.project, *args, **kwargs)
    offload = (
        not request.scope.get(HOT_KEY) or len(request.scope.get(BODY_KEY) or b"") > _SMALL_BODY
    )
    key = request.headers.get("idempotency-key")
    try:
        if key is None:
            # Rendered where the use case ran (a large answer is not encoded on the loop).
            # Small unkeyed writes of the hot lane share a commit with those arriving in the
            # same turn of the event loop (SQLite group commit, loom.store.engine).
            return await ctx.db.run_write(
                _rendered, call, headers, offload=offload, batch=not offload, on_loop=fn in ON_LOOP
            )
        return await _write_keyed(request, access, key, call, headers, offload)
    except LeaseConflict:
        metrics.LEASE_CONFLICTS.inc()
        raise


async def _write_keyed(
    request: Request,
    access: Access,
    key: str,
    call: Callable[[], Any],
    headers: dict[str, str] | None,
    offload: bool,
) -> JSON:
    ctx: ServiceContext = request.app.state.ctx
    if not valid_idempotency_key(key):
        raise ValidationError(
            "Idempotency-Key must be 1-255 visible ASCII characters",
            kind="invalid_idempotency_key",
        )
    fingerprint = await _fingerprint(request)

    def keyed() -> tuple[bool, JSON]:
        status, body, replayed = run_idempotent(ctx, access.project, key, fingerprint, call)
        out = dict(headers or {})
        if replayed:
            out["Idempotent-Replayed"] = "true"
        return replayed, JSON(body, status_code=status, headers=out)

    replayed, response = await ctx.db.run_write(keyed, offload=offload)
    if replayed:
        metrics.IDEMPOTENT_REPLAYS.inc()
    return response


def _rendered(call: Callable[[], Any], headers: dict[str, str] | None) -> JSON:
    return JSON(call(), headers=headers)


def bool_param(request: Request, name: str) -> bool:
    """A ``?name=true|false|1|0`` query flag (absent: false); anything else is a 400."""
    if not request.scope.get("query_string"):
        return False  # no query at all (the common case: not worth parsing)
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise ValidationError(f"{name} must be true or false", kind="invalid_request")
    return value in ("true", "1")
