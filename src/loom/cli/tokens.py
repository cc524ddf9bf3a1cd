"""``loom token create|list|revoke``: named tokens, on the server's own database.

Like ``loom db``, these open the database ``loom serve`` uses (``--data-dir``,
``--database-url``, ``--config``, the same precedence); the running server sees a new or
revoked token within a second, without a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from loom.cli._common import EXIT_ERROR, EXIT_NOT_FOUND, emit_json, err, out, table
from loom.cli.server import (
    ConfigOption,
    DatabaseUrlOption,
    DataDirOption,
    JsonOption,
    _database_errors,
    _db,
    token_app,
)

__all__ = ["token_create", "token_list", "token_revoke"]

T = TypeVar("T")


@contextmanager
def _context(database_url: str | None, data_dir: Path | None, config: Path | None) -> Iterator[Any]:
    from loom.service import ServiceContext
    from loom.store import migrate

    db = _db(database_url, data_dir, config)
    try:
        with _database_errors(db.url):
            migrate.upgrade(db)
            yield ServiceContext(db)
    finally:
        db.dispose()


def _call(fn: Callable[..., T], *args: Any) -> T:
    from loom.errors import LoomError, NotFound

    try:
        return fn(*args)
    except NotFound as exc:
        err(exc.message)
        raise typer.Exit(EXIT_NOT_FOUND) from None
    except LoomError as exc:
        if exc.status == 400:
            raise typer.BadParameter(exc.message) from None
        err(exc.message)
        raise typer.Exit(EXIT_ERROR) from None


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="The token's name (what audit events record).")],
    project: Annotated[
        str | None, typer.Option(help="ORG/REPO: the token covers this project.")
    ] = None,
    org: Annotated[str | None, typer.Option(help="The token covers every repo of ORG.")] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="The token covers the whole server.")
    ] = False,
    scope: Annotated[
        str | None,
        typer.Option(help="read, write or admin (default: write; admin with --admin)."),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(help="Duration (90s, 12h, 30d, 2w) or RFC 3339 time (default: never)."),
    ] = None,
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create a named token and print it (once: only its hash is stored).

    Give exactly one of --project, --org, --admin. A `read` token gets 403 on every write.
    """
    from loom.api.routes_admin import token_json
    from loom.domain.tokens import make_target
    from loom.service import tokens

    target = _call(make_target, project, org, admin)
    with _context(database_url, data_dir, config) as ctx:
        token, secret = _call(tokens.create_token, ctx, name, target, scope, expires)
        shown = token_json(token, ctx.now_us())
    if json_output:
        emit_json(shown | {"token": secret})
        return
    err(f"created token '{token.name}' ({token.scope}, {token.target.label}); shown once:")
    out(secret)


@token_app.command("list")
def token_list(
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """List named tokens: name, scope, target, created, expires, last used (never secrets)."""
    from loom.api.routes_admin import token_json
    from loom.service import tokens

    with _context(database_url, data_dir, config) as ctx:
        rows = [token_json(t, ctx.now_us()) for t in tokens.list_tokens(ctx)]
    if json_output:
        emit_json({"tokens": rows})
        return
    keys = ("name", "scope", "target", "created", "expires", "last_used", "state")
    table(
        ["NAME", "SCOPE", "TARGET", "CREATED", "EXPIRES", "LAST USED", "STATE"],
        [[r[k] or "-" for k in keys] for r in rows],
    )


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="The token's name.")],
    database_url: DatabaseUrlOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Revoke a named token: every server process refuses it within a second.

    Exits 4 when there is no active token of that name.
    """
    from loom.api.routes_admin import token_json
    from loom.service import tokens

    with _context(database_url, data_dir, config) as ctx:
        token = _call(tokens.revoke_token, ctx, name)
        shown = token_json(token, ctx.now_us())
    if json_output:
        emit_json(shown)
        return
    out(f"revoked token '{name}'")
