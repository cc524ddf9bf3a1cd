"""Server-wide admin routes: named tokens (``/api/v1/admin/tokens``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from loom.api.access import admin_access, read_json
from loom.api.bodies import parse_body
from loom.api.contract import ID_GRAMMARS, operation, operation_id
from loom.api.responses import JSON
from loom.domain.timefmt import format_us
from loom.domain.tokens import NAME_PATTERN, NamedToken, make_target
from loom.errors import Unprocessable, ValidationError
from loom.models import NamedTokenCreated, NamedTokenInfo, NamedTokenList
from loom.service import tokens

__all__ = ["router", "token_json"]

router = APIRouter(prefix="/api/v1/admin", generate_unique_id_function=operation_id)
_ORG = ID_GRAMMARS["org"]["pattern"][1:-1]
AdminDep = Annotated[str, Depends(admin_access)]


class TokenCreate(BaseModel):
    """Exactly one of ``project`` (ORG/REPO), ``org`` or ``admin: true``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    project: str | None = Field(default=None, pattern=f"^{_ORG}/{_ORG}$")
    org: str | None = Field(default=None, pattern=ID_GRAMMARS["org"]["pattern"])
    admin: bool = False
    scope: Literal["read", "write", "admin"] | None = None
    expires: str | None = Field(
        default=None,
        max_length=64,
        description="A duration (90s, 15m, 12h, 30d, 2w) or an RFC 3339 time.",
    )


def token_json(token: NamedToken, now_us: int) -> dict[str, Any]:
    """A token as the API and ``loom token list --json`` show it (never the secret)."""
    return {
        "name": token.name,
        "scope": token.scope,
        "target": token.target.label,
        "created": format_us(token.created_us),
        "expires": format_us(token.expires_us),
        "last_used": format_us(token.last_used_us),
        "revoked": format_us(token.revoked_us),
        "state": token.state(now_us),
    }


@router.post(
    "/tokens",
    summary="Create a named token (the secret is in this response only)",
    **operation(NamedTokenCreated, errors=[409], body=TokenCreate),
)
async def create_token(request: Request, _admin: AdminDep) -> JSON:
    # The body is parsed after the admin check (a body parameter would be decoded by the
    # framework first, for anyone), and off the event loop when large (loom.api.bodies).
    try:
        body = await parse_body(request, TokenCreate)
    except Unprocessable as err:  # this route's schema violations are 400s (as they were)
        raise ValidationError(err.message, kind="invalid_parameter", **err.details) from None
    target = make_target(body.project, body.org, body.admin)
    ctx = request.app.state.ctx
    token, secret = await ctx.db.run_write(
        tokens.create_token, ctx, body.name, target, body.scope, body.expires
    )
    return JSON(token_json(token, ctx.now_us()) | {"token": secret})


@router.get("/tokens", summary="Named tokens (never their secrets)", **operation(NamedTokenList))
async def list_tokens(request: Request, _admin: AdminDep) -> Any:
    return await read_json(request, _token_list)


def _token_list(ctx: Any) -> dict[str, Any]:
    now = ctx.now_us()
    return {"tokens": [token_json(t, now) for t in tokens.list_tokens(ctx)]}


@router.delete(
    "/tokens/{name}",
    summary="Revoke a named token (effective within a second)",
    **operation(NamedTokenInfo, errors=[404]),
)
async def revoke_token(
    request: Request, _admin: AdminDep, name: Annotated[str, Path(pattern=NAME_PATTERN)]
) -> Any:
    ctx = request.app.state.ctx
    token = await ctx.db.run_write(tokens.revoke_token, ctx, name)
    return token_json(token, ctx.now_us())
