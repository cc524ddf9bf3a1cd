"""Lease commands: ``claim``, ``heartbeat``, ``release``, ``allocate``, ``keepalive``,
``leases``."""

from __future__ import annotations

import signal
import subprocess
import threading
from typing import Annotated

import typer

from loom.cli._app import app
from loom.cli._common import (
    EXIT_CONFLICT,
    EXIT_USAGE,
    ChangeArg,
    Ctx,
    ModuleOption,
    agent_command,
    emit_json,
    err,
    out,
    table,
)
from loom.cli._format import expires_in, format_time
from loom.client import ClaimResult, LeaseKeeper, renew_interval
from loom.errors import LoomError

__all__: list[str] = []

TtlOption = Annotated[
    int | None,
    typer.Option(
        "--ttl",
        help="Lease time-to-live in seconds, 10-86400 (a new lease: server default 900; a"
        " renewal by its holder: the TTL it already has).",
        min=10,
        max=86400,
    ),
]


def _print_claim(cx: Ctx, claim: ClaimResult, verb: str) -> None:
    if cx.json:
        emit_json(claim.to_json())
        return
    out(
        f"{verb} {claim.change_id}: holder {claim.holder}, expires {expires_in(claim.expires_at)}"
        f" ({format_time(claim.expires_at)}), fencing token {claim.fencing_token}"
    )


@agent_command(app, "claim")
def claim(cx: Ctx, change: ChangeArg, ttl: TtlOption = None) -> None:
    """Acquire (or renew) the lease on a change; prints holder, expiry and fencing token.

    The holder is --holder / LOOM_HOLDER (default user@host:worktree).
    """
    result = cx.client.claim(cx.change(change), ttl_seconds=ttl)
    cx.leases().save(result)
    _print_claim(cx, result, "claimed")


@agent_command(app, "heartbeat")
def heartbeat(cx: Ctx, change: ChangeArg, ttl: TtlOption = None) -> None:
    """Renew a lease this holder has (same fencing token)."""
    result = cx.client.heartbeat(cx.change(change), ttl_seconds=ttl)
    cx.leases().save(result)
    _print_claim(cx, result, "renewed")


@agent_command(app, "release")
def release(
    cx: Ctx,
    change: ChangeArg,
    force: Annotated[
        bool, typer.Option("--force", help="Release another holder's lease (admin token).")
    ] = False,
) -> None:
    """Release a lease (idempotent: releasing a free change succeeds)."""
    change = cx.change(change)
    result = cx.client.release(change, force=force)
    cx.leases().forget(change)
    if cx.json:
        emit_json(result.to_json())
        return
    out(f"released {result.change_id}" if result.released else f"{result.change_id}: no lease held")


@agent_command(app, "allocate")
def allocate(
    cx: Ctx,
    module: ModuleOption = None,
    change: Annotated[
        list[str] | None,
        typer.Option("--change", help="Only these changes (repeatable)."),
    ] = None,
    ttl: TtlOption = None,
    avoid_overlap: Annotated[
        str | None,
        typer.Option(
            "--avoid-overlap",
            envvar="LOOM_AVOID_OVERLAP",
            help="prefer (server default): changes sharing no requirement with a leased or "
            "in-progress one first; strict: never such a change; off: ignore overlaps.",
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Block until a change becomes available (woken by the event stream).",
        ),
    ] = False,
    wait_timeout: Annotated[
        float,
        typer.Option(
            "--wait-timeout",
            help="With --wait: give up after this many seconds (then: no work, exit 0).",
            min=0.1,
        ),
    ] = 3600.0,
) -> None:
    """Lease the next available change and print its id ("no work" and exit 0 when none).

    With --wait, wait for one (a change created or made ready, a lease released or expired)
    instead of answering "no work" at once; --timeout stays the per-request HTTP timeout.
    """
    if avoid_overlap is not None and avoid_overlap not in ("prefer", "strict", "off"):
        raise typer.BadParameter("--avoid-overlap must be prefer, strict or off")
    result = cx.client.allocate(
        ttl_seconds=ttl,
        module=module,
        changes=change or None,
        wait=wait_timeout if wait else None,
        avoid_overlap=avoid_overlap,
    )
    if result.claim is not None:
        cx.leases().save(result.claim)
    if cx.json:
        emit_json(result.to_json())
        return
    if result.claim is None:
        err("no work: no change is available for allocation")
        return
    out(result.claim.change_id)
    err(
        f"leased to {result.claim.holder}, expires {expires_in(result.claim.expires_at)} "
        f"({format_time(result.claim.expires_at)}), fencing token {result.claim.fencing_token}"
    )
    if result.claim.overlaps:
        err(
            "warning: no other work was available; this change shares requirements with "
            f"{', '.join(result.claim.overlaps)} (see `loom overlaps {result.claim.change_id}`)"
        )


@agent_command(app, "leases")
def leases(cx: Ctx) -> None:
    """List the project's active leases: change, holder, expiry and fencing token."""
    items = cx.client.list_leases()
    if cx.json:
        emit_json([item.to_json() for item in items])
        return
    if not items:
        err("no active leases")
        return
    rows = [
        (
            item.change_id,
            item.holder,
            f"{expires_in(item.expires_at)} ({format_time(item.expires_at)})",
            item.fencing_token,
        )
        for item in items
    ]
    table(["CHANGE", "HOLDER", "EXPIRES", "TOKEN"], rows, keep=(0, 1))


def _terminate(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@agent_command(app, "keepalive", data=False)
def keepalive(
    cx: Ctx,
    change: ChangeArg,
    command: Annotated[list[str], typer.Argument(help="The command to run (after --).")],
    ttl: TtlOption = None,
) -> int:
    """Hold the lease while COMMAND runs: heartbeat at TTL/3, release at the end.

    Exits with COMMAND's exit code. If the lease is lost (refused by the server, or past its
    expiry while heartbeats failed, e.g. the server is down), COMMAND is terminated and the
    exit code is 3. Usage: loom keepalive CHANGE -- CMD ARGS...
    """
    if not command:
        err("error: no command given (loom keepalive CHANGE -- CMD ...)")
        return EXIT_USAGE
    client = cx.client
    change = cx.change(change)
    first = client.claim(change, ttl_seconds=ttl)
    store = cx.leases()
    store.save(first)
    err(f"holding {change} as {first.holder} (fencing token {first.fencing_token})")
    lost = threading.Event()
    process_box: list[subprocess.Popen[bytes]] = []

    def on_lost(error: LoomError) -> None:
        lost.set()
        err(f"error: lease on {change} lost: {error.message}; stopping the command")
        if process_box:
            _terminate(process_box[0])

    keeper = LeaseKeeper(
        client,
        change,
        interval=renew_interval(first),
        ttl_seconds=ttl,
        on_lost=on_lost,
        on_renew=store.save,
        expires_at=first.expires_at,
        watch=True,
    )
    try:
        process = subprocess.Popen(command)
    except OSError as exc:
        client.release(change)
        store.forget(change)
        err(f"error: cannot run {command[0]!r}: {exc}")
        return 127
    process_box.append(process)
    keeper.start()
    try:
        returncode = process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        returncode = process.wait()
    finally:
        keeper.stop()
    if lost.is_set():
        store.forget(change)
        return EXIT_CONFLICT
    try:
        client.release(change)
    finally:
        store.forget(change)
    if returncode < 0:
        return 128 - returncode
    return returncode
