"""``loom config show``: the resolved client configuration and where each value came from."""

from __future__ import annotations

import typer

from loom.cli._app import app
from loom.cli._common import Ctx, agent_command, agent_group_callback, emit_json, table

__all__ = ["config_app"]

config_app = typer.Typer(
    name="config",
    help="Client configuration (flags, LOOM_* env, .ito/config.json, .loom.toml, user config).",
)
app.add_typer(config_app)


@agent_group_callback(config_app)
def config(cx: Ctx) -> None:
    """Print every resolved setting and its source (`loom config show`; the token is redacted)."""
    show(cx)


@agent_command(config_app, "show")
def show(cx: Ctx) -> None:
    """Print every resolved setting and its source (the token is redacted).

    Precedence: flag > env > project files (.loom.toml, .ito/config.json) > git origin
    (project only) > user config (~/.config/loom/config.toml) > default.
    """
    data = cx.config.as_dict()
    if cx.json:
        emit_json(data | {"root": str(cx.config.root)})
        return
    rows = [
        (name, "" if v["value"] is None else v["value"], v["source"]) for name, v in data.items()
    ]
    table(["SETTING", "VALUE", "SOURCE"], rows)
