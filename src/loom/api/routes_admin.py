"""Server-wide admin routes: named tokens (``/api/v1/admin/tokens``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from loom.api.access import admin_access, read
from loom.api.responses import JSON
from loom.domain.timefmt import format_us
from loom.domain.tokens import NamedToken, make_target
from loom.service import tokens

__all__ = ["router", "token_json"]

router = APIRouter(prefix="/api/v1/admin")
AdminDep = Annotated[str, Depends(admin_access)]


class TokenCreate(BaseModel):
    """Exactly one of ``project`` (ORG/REPO), ``org`` or ``admin: true``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    project: str | None = None
    org: str | None = None
    admin: bool = False
    scope: Literal["read", "write", "admin"] | None = None
    expires: str | None = None


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


@router.post("/tokens", summary="Create a named token (the secret is in this response only)")
async def create_token(request: Request, _admin: AdminDep, body: TokenCreate) -> JSON:
    target = make_target(body.project, body.org, body.admin)
    ctx = request.app.state.ctx
    token, secret = await ctx.db.run_write(
        tokens.create_token, ctx, body.name, target, body.scope, body.expires
    )
    return JSON(token_json(token, ctx.now_us()) | {"token": secret}, status_code=201)


@router.get("/tokens", summary="Named tokens (never their secrets)")
async def list_tokens(request: Request, _admin: AdminDep) -> Any:
    found = await read(request, tokens.list_tokens)
    now = request.app.state.ctx.now_us()
    return {"tokens": [token_json(t, now) for t in found]}


@router.delete("/tokens/{name}", summary="Revoke a named token (effective within a second)")
async def revoke_token(request: Request, _admin: AdminDep, name: str) -> Any:
    ctx = request.app.state.ctx
    token = await ctx.db.run_write(tokens.revoke_token, ctx, name)
    return token_json(token, ctx.now_us())
