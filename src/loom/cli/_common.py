"""Shared machinery of the agent commands: global options, output, errors and exit codes.

Every agent command is registered with :func:`agent_command`, which adds the connection
options (each with its environment variable shown in ``--help``) and ``--json``, builds the
:class:`loom.client.Client` lazily from the resolved configuration, and turns Loom errors
into a message on stderr and the documented exit code:

0 ok, 1 error, 2 usage, 3 conflict (lease/revision), 4 not found, 5 unreachable, 6 auth.

With ``--json`` an error is one JSON object on stdout: the API's error envelope
(``error``, ``code``, ``kind`` and details) plus ``exit_code`` (docs/cli.md).
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

from loom.client import (
    Client,
    ClientConfig,
    InvalidArgument,
    LeaseStore,
    resolve_config,
    segment_problem,
    state_dir,
    url_problem,
)
from loom.domain.statuses import WORK_STATUSES
from loom.errors import (
    Conflict,
    Forbidden,
    LoomError,
    NotFound,
    PreconditionRequired,
    RateLimited,
    Unauthorized,
    Unavailable,
    ValidationError,
)

__all__ = [
    "EXIT_AUTH",
    "EXIT_CONFLICT",
    "EXIT_ERROR",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "WORK_STATUSES",
    "ChangeArg",
    "Ctx",
    "ModuleOption",
    "TaskArg",
    "agent_command",
    "agent_group_callback",
    "check_change_id",
    "exit_code_for",
    "split_statuses",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_NOT_FOUND = 4
EXIT_UNREACHABLE = 5
EXIT_AUTH = 6

_USAGE_KINDS = frozenset(
    {"project_missing", "holder_missing", "invalid_config", "ambiguous_target", "usage_error"}
)
_NO_PROJECT = (
    "no project configured: pass --project ORG/REPO (or set LOOM_PROJECT, `project` in "
    ".loom.toml, or backend.project in .ito/config.json; `loom config show` shows the sources)"
)
# A task that cannot move from its state (blocked, shelved, already done): the server says
# 400 (as Ito does), but for the command line it is a conflict with the change's state.
_CONFLICT_KINDS = frozenset({"task_blocked", "task_invalid_state"})
F = TypeVar("F", bound=Callable[..., Any])
_PANEL = "Connection"


def exit_code_for(error: LoomError) -> int:
    """The documented exit code of a Loom error."""
    if isinstance(error, Unauthorized | Forbidden):
        return EXIT_AUTH
    if isinstance(error, Conflict | PreconditionRequired) or error.kind in _CONFLICT_KINDS:
        return EXIT_CONFLICT
    if isinstance(error, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(error, Unavailable | RateLimited):
        return EXIT_UNREACHABLE
    if isinstance(error, InvalidArgument) or error.kind in _USAGE_KINDS:
        return EXIT_USAGE
    return EXIT_ERROR


# --- output ---------------------------------------------------------------------------------


def stdout_is_tty() -> bool:
    """True when stdout is an interactive terminal (Rich tables and progress bars)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def out(text: str = "") -> None:
    """Data to stdout."""
    typer.echo(text)


def err(text: str) -> None:
    """Diagnostics to stderr."""
    typer.echo(text, err=True)


def emit_json(data: Any) -> None:
    """Data as JSON on stdout (one document, indented)."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    keep: Sequence[int] = (0,),
) -> None:
    """A Rich table on a terminal; aligned plain-text columns when piped.

    The columns in ``keep`` (ids, the values users copy) are never wrapped or truncated,
    whatever the terminal width: the other columns wrap instead.
    """
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    if stdout_is_tty():
        from rich.console import Console
        from rich.table import Table

        rich_table = Table(title=title)
        for index, header in enumerate(headers):
            if index in keep:
                widest = max([len(header), *(len(row[index]) for row in cells)])
                rich_table.add_column(header, no_wrap=True, min_width=widest)
            else:
                rich_table.add_column(header)
        for row in cells:
            rich_table.add_row(*row)
        Console().print(rich_table)
        return
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=False)]
    for row in [list(headers), *cells]:
        out("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


# --- argument and option checks (usage errors, exit 2, before any request) ------------------


def _check_id(what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        problem = segment_problem(value)
        if problem is not None:
            raise typer.BadParameter(f"invalid {what} {value!r}: {problem}")
        return value

    return check


def _check_module(value: str | None) -> str | None:
    if value is None:
        return None
    from loom.domain.ids import validate_module_id

    try:
        return validate_module_id(value)
    except ValidationError as error:
        raise typer.BadParameter(error.message) from None


def _check_url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return value
    problem = url_problem(value)
    if problem is not None:
        raise typer.BadParameter(problem)
    return value


def split_statuses(values: Sequence[str] | None) -> list[str]:
    """``--status`` values (repeated or comma-separated), each a known work status."""
    statuses = [s.strip() for value in values or [] for s in value.split(",") if s.strip()]
    for status in statuses:
        if status not in WORK_STATUSES:
            raise typer.BadParameter(
                f"unknown work status {status!r} (choose from {', '.join(WORK_STATUSES)})",
                param_hint="'--status'",
            )
    return statuses


check_change_id = _check_id("change id")
ChangeArg = Annotated[str, typer.Argument(help="Change id.", callback=check_change_id)]
TaskArg = Annotated[
    str,
    typer.Argument(
        help="Task id (e.g. 1.2; checkbox lists: 1-based index).",
        callback=_check_id("task id"),
    ),
]
ModuleOption = Annotated[
    str | None,
    typer.Option("--module", help="Only changes of module NNN.", callback=_check_module),
]


# --- context ---------------------------------------------------------------------------------


@dataclass
class Ctx:
    """What a command gets: command-line connection flags, ``--json``, lazy config/client."""

    flags: dict[str, Any]
    json: bool = False
    _config: ClientConfig | None = None
    _client: Client | None = None
    extra_cleanup: list[Callable[[], None]] = field(default_factory=list)
    _resolved: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> ClientConfig:
        """The resolved configuration (resolved on first use)."""
        if self._config is None:
            self._config = resolve_config(self.flags)
        return self._config

    @property
    def client(self) -> Client:
        """A client for the configured server and project (built on first use)."""
        if self._client is None:
            # --timeout bounds the whole request, retries included; each retry is said.
            self._client = self.config.client(
                total_timeout=self.config.timeout.value,
                on_retry=lambda line: err(f"loom: {line}"),
            )
        return self._client

    def change(self, target: str) -> str:
        """The exact id of the change ``target`` names, for a write (``_resolve``)."""
        if target not in self._resolved:
            from loom.cli._resolve import resolve_for_write

            self._resolved[target] = resolve_for_write(self.client, target)
        return self._resolved[target]

    @property
    def state(self) -> Path:
        """The client state directory."""
        return state_dir()

    def leases(self) -> LeaseStore:
        """The leases remembered for this project."""
        project = self.config.project.value or "_/_"
        return LeaseStore(self.state, project)

    def fencing_token(self, change_id: str) -> int | None:
        """The fencing token of a lease this holder took on ``change_id`` (from ``loom claim``)."""
        return self.leases().fencing_token(change_id, self.config.holder.value)

    def ito_dir(self, given: Path | None) -> Path:
        """The ``.ito`` directory: ``given``, else ``<repo root>/.ito``."""
        return given if given is not None else self.config.root / ".ito"

    def close(self) -> None:
        for cleanup in self.extra_cleanup:
            cleanup()
        if self._client is not None:
            self._client.close()


# --- the command decorator ----------------------------------------------------------------

_GLOBALS: list[inspect.Parameter] = [
    inspect.Parameter(
        "url",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--url",
                envvar="LOOM_URL",
                help="Server URL (http:// or https://).",
                callback=_check_url,
                rich_help_panel=_PANEL,
            ),
        ],
    ),
    inspect.Parameter(
        "token",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--token",
                envvar=["LOOM_TOKEN", "ITO_BACKEND_TOKEN"],
                help="Bearer token (admin or project token).",
                show_default=False,
                rich_help_panel=_PANEL,
            ),
        ],
    ),
    inspect.Parameter(
        "project",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--project",
                envvar="LOOM_PROJECT",
                help="Project ORG/REPO (default: .ito/config.json, then git origin).",
                rich_help_panel=_PANEL,
            ),
        ],
    ),
    inspect.Parameter(
        "holder",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--holder",
                envvar="LOOM_HOLDER",
                help="Lease holder identity (default user@host:worktree).",
                rich_help_panel=_PANEL,
            ),
        ],
    ),
    inspect.Parameter(
        "timeout",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            float | None,
            typer.Option(
                "--timeout",
                envvar="LOOM_TIMEOUT",
                help="Seconds to wait for the server, retries included (default 30).",
                rich_help_panel=_PANEL,
            ),
        ],
    ),
    inspect.Parameter(
        "retries",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            int | None,
            typer.Option(
                "--retries",
                envvar="LOOM_RETRIES",
                help="Retries after a connection error or 429/502/503/504, each said on stderr "
                "(default 3).",
                rich_help_panel=_PANEL,
            ),
        ],
    ),
]
_GLOBAL_NAMES = tuple(p.name for p in _GLOBALS)
_JSON_PARAM = inspect.Parameter(
    "json_output",
    inspect.Parameter.KEYWORD_ONLY,
    default=False,
    annotation=Annotated[
        bool, typer.Option("--json", help="Print the result as JSON (the API's shapes).")
    ],
)
_CTX_PARAM = inspect.Parameter(
    "typer_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context
)


def error_json(error: LoomError, code: int | None = None) -> dict[str, Any]:
    """The one ``--json`` error shape: the API's envelope plus ``exit_code``."""
    return error.to_envelope() | {"exit_code": exit_code_for(error) if code is None else code}


_HEADER_HINT = " (X-Loom-Holder)"


def _report(error: LoomError, cx: Ctx) -> int:
    code = exit_code_for(error)
    if cx.json:
        out(json.dumps(error_json(error, code), ensure_ascii=False, default=str))
        return code
    err(f"error: {error.message.replace(_HEADER_HINT, '')}")
    details = error.details
    if details.get("holder"):
        from loom.cli._format import expires_in, format_time, parse_time

        until = parse_time(details.get("expires_at"))
        when = f"{format_time(until)} (expires {expires_in(until)})"
        err(f"  held by {details['holder']} until {when}")
    elif "holder" in details:
        change = details.get("change_id") or "CHANGE"
        err(f"  the change has no active lease (take one with `loom claim {change}`)")
    if error.kind in (
        "lease_conflict",
        "stale_fencing_token",
        "lease_required",
        "not_lease_holder",
    ):
        holder = cx._config.holder.value if cx._config is not None else None
        err(f"  you are {holder or '?'} (set with --holder or LOOM_HOLDER)")
    if details.get("did_you_mean"):
        err(f"  did you mean {details['did_you_mean']}?")
    if code == EXIT_AUTH:
        err("  check --token / LOOM_TOKEN and --project / LOOM_PROJECT (`loom config show`)")
    return code


def _reflow(doc: str | None) -> str | None:
    """A docstring with each paragraph on one line (help output wraps it to the terminal)."""
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _wrap(fn: Callable[..., Any], data: bool, callback: bool) -> Callable[..., None]:
    hints = get_type_hints(fn, include_extras=True)
    own = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in list(inspect.signature(fn).parameters.values())[1:]
    ]
    extra = [*_GLOBALS, *([_JSON_PARAM] if data else []), _CTX_PARAM]
    signature = inspect.Signature([*own, *extra])

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> None:
        context: typer.Context = kwargs.pop("typer_context")
        if callback and context.invoked_subcommand is not None:
            return
        flags: dict[str, Any] = {}
        for option in _GLOBAL_NAMES:
            value = kwargs.pop(option)
            source = context.get_parameter_source(option)
            if source is not None and source.name == "COMMANDLINE":
                flags[option] = value
        cx = Ctx(flags=flags, json=bool(kwargs.pop("json_output", False)))
        code = EXIT_OK
        try:
            result = fn(cx, **kwargs)
            code = result if isinstance(result, int) else EXIT_OK
        except LoomError as error:
            if error.kind == "project_missing":
                error = ValidationError(_NO_PROJECT, kind="project_missing")
            code = _report(error, cx)
        except KeyboardInterrupt:
            code = 130
        finally:
            cx.close()
        if code:
            raise typer.Exit(code)

    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    wrapper.__doc__ = _reflow(fn.__doc__)
    wrapper.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    return wrapper


def agent_command(
    group: typer.Typer,
    name: str,
    *,
    data: bool = True,
    **command_kwargs: Any,
) -> Callable[[F], F]:
    """Register ``fn(cx: Ctx, ...)`` on ``group`` as command ``name``.

    Adds the connection options (and ``--json`` when ``data``), resolves configuration
    lazily, maps :class:`LoomError` to exit codes, and closes the client afterwards.
    ``fn`` may return an int exit code.
    """

    def decorate(fn: F) -> F:
        group.command(name, **command_kwargs)(_wrap(fn, data, callback=False))
        return fn

    return decorate


def agent_group_callback(group: typer.Typer, *, data: bool = True) -> Callable[[F], F]:
    """Like :func:`agent_command`, for a group run without a subcommand (``loom events``)."""

    def decorate(fn: F) -> F:
        group.callback(invoke_without_command=True)(_wrap(fn, data, callback=True))
        return fn

    return decorate
