"""The dashboard under ``/ui/``: sign-in, projects, the live board, change pages.

Server-rendered (Jinja2, autoescaped); htmx and its SSE extension (shipped in ``static/``)
swap in fresh fragments when the stream says something happened. Every page works without
JavaScript (minus liveness). Responses carry a Content-Security-Policy that allows only
this server's own scripts and styles.
"""

from __future__ import annotations

import functools
import html
import time
import urllib.parse
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from loom.api._hub import Filters, Hub
from loom.api.access import named_token
from loom.api.auth import Scope, authorize, authorize_admin, is_named
from loom.api.routes_stream import EventStream, start_position
from loom.api.ui import _data
from loom.api.ui._cards import cards_html
from loom.api.ui._markdown import render_markdown
from loom.api.ui._session import (
    COOKIE,
    LOGIN_COOKIE,
    LOGIN_SECONDS,
    SESSION_SECONDS,
    Session,
    SessionSigner,
)
from loom.domain import ids
from loom.domain.tokens import NamedToken
from loom.errors import Forbidden, LoomError, NotFound, Unauthorized
from loom.service import Actor, Project, ServiceContext, catalog, leases, sessions
from loom.settings import Settings

__all__ = ["SECURITY_HEADERS", "router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

STREAM_RECHECK_SECONDS = 2.0
"""How often an open live feed re-checks its session (at most one primary-key read each)."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

_env = Environment(
    loader=PackageLoader("loom.api.ui", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["markdown"] = render_markdown
_env.globals["cards_html"] = cards_html


def _render(name: str, **values: Any) -> str:
    return _env.get_template(name).render(**values)


def _page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(_render(name, **values), status_code=status, headers=SECURITY_HEADERS)


async def _page_off_loop(name: str, **values: Any) -> HTMLResponse:
    """:func:`_page` on a worker thread: a board of thousands of cards, or a change's
    artifacts rendered from markdown, take far longer than the event loop may wait."""
    return await run_in_threadpool(functools.partial(_page, name, **values))


def _signer(request: Request) -> SessionSigner:
    signer: SessionSigner | None = getattr(request.app.state, "ui_signer", None)
    if signer is None:
        signer = request.app.state.ui_signer = SessionSigner(request.app.state.settings)
    return signer


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


async def _read(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    ctx = _ctx(request)
    return await ctx.db.run_read(functools.partial(fn, ctx, *args))


def _to_login() -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303, headers=SECURITY_HEADERS)


def _forbidden(session: Session | None, message: str) -> HTMLResponse:
    return _page("error.html", 403, title="Not allowed", message=message, signed_in=session)


def _not_found(session: Session | None, message: str) -> HTMLResponse:
    return _page("error.html", 404, title="Not found", message=message, signed_in=session)


async def _candidates(request: Request) -> list[tuple[str, str]]:
    settings: Settings = request.app.state.settings
    rows = await request.app.state.ctx.db.run_read(catalog.known_projects, _ctx(request))
    known = {(org, repo) for _id, org, repo in rows}  # known_projects: (id, org, repo)
    for entry in settings.allow_projects:
        org, _, repo = entry.partition("/")
        known.add((org, repo))
    return sorted(known)


async def _named(request: Request, token: str) -> NamedToken | None:
    """The stored named token (``loom_…``) the session's token stands for, if any: looked up
    as the API does (by hash, cached for at most a second, so revocation reaches here too)."""
    return await named_token(_ctx(request), f"Bearer {token}")


def _scope(
    settings: Settings,
    token: str,
    org: str,
    repo: str,
    named: NamedToken | None = None,
    now_us: int = 0,
) -> Scope | None:
    """The API's own check; None when the token may not open ``org/repo``."""
    try:
        return authorize(settings, f"Bearer {token}", org, repo, named=named, now_us=now_us)
    except (Unauthorized, Forbidden):
        return None


def _is_admin(
    settings: Settings, token: str, named: NamedToken | None = None, now_us: int = 0
) -> bool:
    if is_named(token):
        try:
            authorize_admin(settings, f"Bearer {token}", named, now_us)
        except (Unauthorized, Forbidden):
            return False
        return True
    try:
        return authorize(settings, f"Bearer {token}", "_", "_").admin
    except Forbidden:  # an admin token, the allowlist refused the placeholder project
        return True
    except Unauthorized:
        return False


async def _visible(request: Request, token: str) -> list[tuple[str, str]]:
    settings: Settings = request.app.state.settings
    named = await _named(request, token)
    now = _ctx(request).now_us()
    return [
        (org, repo)
        for org, repo in await _candidates(request)
        if _scope(settings, token, org, repo, named, now) is not None
    ]


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the dashboard's only form encoding);
    the first value of each field, each cut to 512 characters."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _FORM_LIMIT:
            return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    fields = urllib.parse.parse_qs(text, keep_blank_values=True, max_num_fields=20)
    return {k: v[0][:512] for k, v in fields.items() if v}


_FORM_LIMIT = 16 * 1024


class _Denied(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


async def _session(request: Request) -> Session | None:
    """The request's session, or None: no cookie, a forged or expired one, one signed out
    in any server process (recorded in the database; each process trusts its cached answer
    for at most ``token_cache_seconds``), or one whose named token was revoked or expired
    since (a session ends with its token)."""
    session = _signer(request).read(request.cookies.get(COOKIE))
    if session is None:
        return None
    ctx = _ctx(request)
    signed_out = sessions.cached_sign_out(ctx, session.nonce)
    if signed_out is sessions.MISS:
        signed_out = await ctx.db.run_read(sessions.is_signed_out, ctx, session.nonce)
    if signed_out:
        return None
    if is_named(session.token):
        named = await _named(request, session.token)
        if named is None or not named.usable(ctx.now_us()):
            return None
    return session


async def _project_access(request: Request, org: str, repo: str) -> tuple[Session, Scope, Project]:
    session = await _session(request)
    if session is None:
        raise _Denied(_to_login())
    try:
        ids.validate_org(org)
        ids.validate_repo(repo)
    except LoomError:
        raise _Denied(_not_found(session, "No such project.")) from None
    named = await _named(request, session.token)
    scope = _scope(
        request.app.state.settings, session.token, org, repo, named, _ctx(request).now_us()
    )
    if scope is None:
        raise _Denied(_forbidden(session, f"This token may not open {org}/{repo}."))
    return session, scope, Project(org, repo)


def _base(request: Request, session: Session, scope: Scope | None = None) -> dict[str, Any]:
    return {
        "signed_in": session,
        "csrf": _signer(request).csrf(session),
        "admin": bool(scope and scope.admin),
    }


# --- sign-in -------------------------------------------------------------------------------


def _login_page(request: Request, status: int = 200, error: str | None = None) -> Response:
    """The sign-in form, with its CSRF token and the nonce cookie it is checked against."""
    signer = _signer(request)
    nonce = signer.login_nonce(request.cookies.get(LOGIN_COOKIE))
    response = _page("login.html", status, error=error, csrf=signer.login_csrf(nonce))
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=LOGIN_SECONDS,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    if not _signer(request).check_login_csrf(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
        # Login CSRF: a form posted from elsewhere (no nonce cookie, or another one).
        return _login_page(request, 403, error="The sign-in form expired; sign in again.")
    token = form.get("token", "").strip()
    settings: Settings = request.app.state.settings
    named = await _named(request, token) if token else None
    admin = bool(token) and _is_admin(settings, token, named, _ctx(request).now_us())
    valid = admin or (bool(token) and bool(await _visible(request, token)))
    if not valid:
        return _login_page(request, 401, error="That token is not valid on this server.")
    value, _ = _signer(request).issue(token)
    response = RedirectResponse("/ui/", status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/ui", httponly=True, samesite="strict")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    csrf = (await _form(request)).get("csrf", "")
    session = await _session(request)
    if session is not None:
        if not _signer(request).check_csrf(session, csrf):
            return _forbidden(session, "The form expired; sign out again.")
        ctx = _ctx(request)
        # Recorded in the database: the cookie stops working in every server process.
        await ctx.db.run_write(sessions.sign_out, ctx, session.nonce, session.expires * 1_000_000)
    response = _to_login()
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
    return response


# --- pages ---------------------------------------------------------------------------------


@router.get("")
async def ui_root() -> Response:
    return RedirectResponse("/ui/", status_code=307, headers=SECURITY_HEADERS)


@router.get("/")
async def projects_page(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return _to_login()
    visible = await _visible(request, session.token)
    named = await _named(request, session.token)
    admin = _is_admin(request.app.state.settings, session.token, named, _ctx(request).now_us())
    return _page(
        "projects.html",
        projects=[f"{o}/{r}" for o, r in visible],
        **{**_base(request, session), "admin": admin},
    )


def _board_values(
    request: Request, project: Project, board: _data.Board, base: dict[str, Any]
) -> dict[str, Any]:
    query = "&".join(f"{k}={html.escape(v)}" for k, v in board.filters.items())
    return {
        **base,
        "project": project,
        "board": board,
        "query": query,
    }


def _filters(request: Request) -> tuple[str | None, str | None]:
    module = request.query_params.get("module") or None
    holder = request.query_params.get("holder") or None
    return (module[:20] if module else None, holder[:128] if holder else None)


@router.get("/{org}/{repo}")
async def board_page(request: Request, org: str, repo: str) -> Response:
    return await _board(request, org, repo, "board.html")


@router.get("/{org}/{repo}/board")
async def board_fragment(request: Request, org: str, repo: str) -> Response:
    """The board alone (what the page swaps in when the stream says something happened)."""
    return await _board(request, org, repo, "_board.html")


async def _board(request: Request, org: str, repo: str, template: str) -> Response:
    try:
        session, scope, project = await _project_access(request, org, repo)
    except _Denied as denied:
        return denied.response
    started = time.perf_counter()
    board = await _read(request, _data.board, project, *_filters(request))
    values = _board_values(request, project, board, _base(request, session, scope))
    response = await _page_off_loop(template, **values)
    # The server's own time for the page (read + render), for bench/stream.py and browsers'
    # developer tools.
    spent = (time.perf_counter() - started) * 1000
    response.headers["Server-Timing"] = f"app;dur={spent:.1f}"
    return response


@router.get("/{org}/{repo}/archived")
async def archived_page(request: Request, org: str, repo: str) -> Response:
    try:
        session, scope, project = await _project_access(request, org, repo)
    except _Denied as denied:
        return denied.response
    rows = await _read(request, _data.archived, project)
    return _page("archived.html", project=project, rows=rows, **_base(request, session, scope))


@router.get("/{org}/{repo}/changes/{change_id}")
async def change_page(request: Request, org: str, repo: str, change_id: str) -> Response:
    return await _change(request, org, repo, change_id, "change.html")


@router.get("/{org}/{repo}/changes/{change_id}/panel")
async def change_fragment(request: Request, org: str, repo: str, change_id: str) -> Response:
    return await _change(request, org, repo, change_id, "_change.html")


async def _change(
    request: Request, org: str, repo: str, change_id: str, template: str, **extra: Any
) -> Response:
    try:
        session, scope, project = await _project_access(request, org, repo)
    except _Denied as denied:
        return denied.response
    try:
        ids.validate_change_id(change_id)
        page = await _read(request, _data.change_page, project, change_id)
    except (NotFound, LoomError):
        return _not_found(session, f"No change {change_id} in {project.name}.")
    values = {**_base(request, session, scope), "project": project, **page, **extra}
    return await _page_off_loop(template, **values)


@router.post("/{org}/{repo}/changes/{change_id}/release")
async def force_release(
    request: Request,
    org: str,
    repo: str,
    change_id: str,
) -> Response:
    """Admin only: force-release the change's lease (recorded as ``force_release``)."""
    form = await _form(request)
    csrf, confirm = form.get("csrf", ""), form.get("confirm", "")
    try:
        session, scope, project = await _project_access(request, org, repo)
    except _Denied as denied:
        return denied.response
    if not scope.admin:
        return _forbidden(session, "Only an admin token may force-release a lease.")
    if not _signer(request).check_csrf(session, csrf):
        return _forbidden(session, "The form expired; reload the page and try again.")
    try:
        ids.validate_change_id(change_id)
    except LoomError:
        return _not_found(session, "No such change.")
    if confirm != "yes":
        return await _change(
            request, org, repo, change_id, "change.html", notice="Tick the box to confirm."
        )
    ctx = _ctx(request)
    try:
        await ctx.db.run_write(
            functools.partial(
                leases.release,
                ctx,
                project,
                change_id,
                "admin",
                force=True,
                actor=Actor(None, None, admin=True, token_name=scope.name),
            )
        )
    except NotFound:
        return _not_found(session, f"No change {change_id} in {project.name}.")
    return RedirectResponse(
        f"/ui/{org}/{repo}/changes/{change_id}", status_code=303, headers=SECURITY_HEADERS
    )


# --- the live feed -------------------------------------------------------------------------


def _feed_frame(project: Project, event: dict[str, Any]) -> bytes:
    line = _data.event_line(event)
    item = _render("_feed_item.html", e=line, project=project).replace("\n", " ").strip()
    return f"id: {int(event['seq'])}\nevent: loom\ndata: {item}\n\n".encode()


@router.get("/{org}/{repo}/stream")
async def ui_stream(
    request: Request,
    org: str,
    repo: str,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """The board's live feed: each event as an ``<li>`` (SSE event ``loom``). It ends
    within :data:`STREAM_RECHECK_SECONDS` of its session ending (signed out in any server
    process, or its named token revoked or expired)."""
    try:
        _, _, project = await _project_access(request, org, repo)
    except _Denied as denied:
        return denied.response

    async def still_allowed() -> bool:
        return await _session(request) is not None

    try:
        start = start_position(None, last_event_id)
    except LoomError:
        start = None
    hub: Hub = request.app.state.hub
    sub = await hub.subscribe(project, start, Filters())
    return EventStream(
        hub,
        project,
        sub,
        render=functools.partial(_feed_frame, project),
        still_allowed=still_allowed,
        recheck_seconds=STREAM_RECHECK_SECONDS,
    )
