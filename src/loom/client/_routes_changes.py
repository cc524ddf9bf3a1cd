"""Routes about changes: service, auth, listing, detail, bundle sync, archive and tasks.

Each method imports the model it returns in its body, not at module level: a ``loom``
command whose routes parse no model never imports pydantic (tests/cli/test_startup.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from loom.client._base import BaseClient

if TYPE_CHECKING:
    from loom.models import (
        ArchiveResult,
        ArtifactBundle,
        AuthInfo,
        ChangeDetail,
        ChangeSummary,
        Health,
        Page,
        PushResult,
        RawTasks,
        Ready,
        TaskMutationResult,
        TasksInitResult,
        TasksView,
    )

__all__ = ["ChangesAPI"]

_TASK_ACTIONS = ("start", "complete", "shelve", "unshelve")


def _status_param(status: str | Sequence[str] | None) -> str | None:
    if status is None:
        return None
    if isinstance(status, str):
        return status
    return ",".join(status)


class ChangesAPI(BaseClient):
    """Service, auth, change, bundle, archive and task routes (API.md §1 to §2.5)."""

    # --- service and auth ------------------------------------------------------------

    def health(self) -> Health:
        """``GET /health``: the server process is up (no database access, no auth)."""
        from loom.models import Health

        return Health.model_validate(self._json(self._request("GET", "/health")))

    def ready(self) -> Ready:
        """``GET /ready``: the database answers. A 503 is returned as ``status="not_ready"``."""
        from loom.models import Ready

        response = self._request("GET", "/ready", retry=False, accept=frozenset({503}))
        return Ready.model_validate(self._json(response))

    def verify(self) -> AuthInfo:
        """``GET /auth/verify``: what the token is allowed to do for this project."""
        from loom.models import AuthInfo

        return AuthInfo.model_validate(
            self._json(self._request("GET", self._project_path("auth", "verify")))
        )

    # --- changes ------------------------------------------------------------------------

    def list_changes_page(
        self,
        *,
        lifecycle: str = "active",
        module: str | None = None,
        status: str | Sequence[str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[ChangeSummary]:
        """``GET /changes``: one page of change summaries, in canonical id order.

        ``lifecycle`` is ``active``, ``archived`` or ``all``; ``status`` filters by work
        status (one value or several). Without ``limit`` the server returns every change.
        """
        from loom.models import ChangeSummary, Page

        response = self._request(
            "GET",
            self._project_path("changes"),
            params={
                "lifecycle": lifecycle,
                "module": module,
                "status": _status_param(status),
                "limit": limit,
                "cursor": cursor,
            },
        )
        items = [ChangeSummary.model_validate(item) for item in self._json(response)]
        return Page(items=items, next_cursor=response.headers.get("X-Next-Cursor") or None)

    def list_changes(
        self,
        *,
        lifecycle: str = "active",
        module: str | None = None,
        status: str | Sequence[str] | None = None,
    ) -> list[ChangeSummary]:
        """Every change matching the filters (one unpaginated request)."""
        return self.list_changes_page(lifecycle=lifecycle, module=module, status=status).items

    def iter_changes(
        self,
        *,
        lifecycle: str = "active",
        module: str | None = None,
        status: str | Sequence[str] | None = None,
        page_size: int = 500,
    ) -> Iterator[ChangeSummary]:
        """Every change matching the filters, fetched ``page_size`` at a time."""
        cursor: str | None = None
        while True:
            page = self.list_changes_page(
                lifecycle=lifecycle, module=module, status=status, limit=page_size, cursor=cursor
            )
            yield from page.items
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    def get_change(self, change_id: str, *, lifecycle: str | None = None) -> ChangeDetail:
        """``GET /changes/{id}``: artifacts, progress, revision, work status and lease."""
        from loom.models import ChangeDetail

        return ChangeDetail.model_validate(self._change_json(change_id, lifecycle))

    def change_id_of(self, target: str, *, lifecycle: str | None = "all") -> str:
        """The exact id of the change ``target`` names (an id, or a short form the server
        resolves: ``1-2``, a prefix, slug words), from ``GET /changes/{target}``, without
        building the :class:`ChangeDetail` model (the ``loom`` command then never imports
        pydantic). Active and archived changes by default."""
        return str(self._change_json(target, lifecycle)["id"])

    def _change_json(self, change_id: str, lifecycle: str | None) -> Any:
        response = self._request(
            "GET", self._project_path("changes", change_id), params={"lifecycle": lifecycle}
        )
        return self._json(response)

    # --- bundle sync --------------------------------------------------------------------

    def pull(self, change_id: str) -> ArtifactBundle:
        """``GET /changes/{id}/sync``: every artifact and the current revision."""
        from loom.models import ArtifactBundle

        response = self._request("GET", self._project_path("changes", change_id, "sync"))
        return ArtifactBundle.model_validate(self._json(response))

    def push(
        self,
        change_id: str,
        *,
        revision: str,
        proposal: str | None = None,
        design: str | None = None,
        tasks: str | None = None,
        specs: Iterable[tuple[str, str]] = (),
        spec_bases: Mapping[str, int] | None = None,
        fencing_token: int | None = None,
        idempotency_key: str | None = None,
    ) -> PushResult:
        """``POST /changes/{id}/sync``: replace the whole bundle, based on ``revision``.

        ``revision`` is the revision the local copy was pulled at (sent as the body field
        and as ``If-Match``); ``""`` only creates a change that does not exist yet.
        Raises :class:`RevisionConflict` when the server has moved on. ``spec_bases``: per
        capability, the spec revision the delta was written against (a pull's
        ``spec_bases``, or its ``spec_revisions`` after a rebase); omitted, the server keeps
        the recorded bases and records the current revision for new capabilities.
        """
        from loom.models import PushResult

        headers = self._write_headers(change_id, fencing_token)
        if revision:
            headers["If-Match"] = f'"{revision}"'
        body: dict[str, Any] = {
            "proposal": proposal,
            "design": design,
            "tasks": tasks,
            "specs": [[cap, md] for cap, md in specs],
            "revision": revision,
        }
        if spec_bases is not None:
            body["spec_bases"] = dict(spec_bases)
        response = self._request(
            "POST",
            self._project_path("changes", change_id, "sync"),
            json=body,
            headers=headers,
            idempotency_key=idempotency_key,
        )
        return PushResult.model_validate(self._json(response))

    def push_bundle(
        self,
        bundle: ArtifactBundle,
        *,
        fencing_token: int | None = None,
        idempotency_key: str | None = None,
    ) -> PushResult:
        """Push an :class:`ArtifactBundle` (its ``revision`` is the base revision)."""
        return self.push(
            bundle.change_id,
            revision=bundle.revision,
            proposal=bundle.proposal,
            design=bundle.design,
            tasks=bundle.tasks,
            specs=bundle.specs,
            spec_bases=bundle.spec_bases or None,
            fencing_token=fencing_token,
            idempotency_key=idempotency_key,
        )

    def archive(
        self,
        change_id: str,
        *,
        force: bool = False,
        fencing_token: int | None = None,
        idempotency_key: str | None = None,
    ) -> ArchiveResult:
        """``POST /changes/{id}/archive``: merge deltas into specs and archive (idempotent).

        A change with pending or in-progress tasks is refused (:class:`Conflict`,
        ``change_unfinished``), and so is one a requirement of which changed since its spec
        base (:class:`StaleSpecBase`), unless ``force`` (lease holder or admin; recorded).
        """
        from loom.models import ArchiveResult

        response = self._request(
            "POST",
            self._project_path("changes", change_id, "archive"),
            params={"force": "true"} if force else None,
            json={},
            headers=self._write_headers(change_id, fencing_token),
            idempotency_key=idempotency_key,
        )
        self.remember_fencing_token(change_id, None)
        return ArchiveResult.model_validate(self._json(response))

    # --- tasks --------------------------------------------------------------------------

    def get_tasks(self, change_id: str) -> TasksView:
        """``GET /changes/{id}/tasks``: parsed tasks, waves, progress, ready and blocked."""
        from loom.models import TasksView

        response = self._request("GET", self._project_path("changes", change_id, "tasks"))
        return TasksView.model_validate(self._json(response))

    def get_tasks_raw(self, change_id: str) -> RawTasks:
        """``GET /changes/{id}/tasks/raw``: the ``tasks.md`` text (None when missing)."""
        from loom.models import RawTasks

        response = self._request("GET", self._project_path("changes", change_id, "tasks", "raw"))
        return RawTasks.model_validate(self._json(response))

    def init_tasks(
        self,
        change_id: str,
        *,
        fencing_token: int | None = None,
        idempotency_key: str | None = None,
    ) -> TasksInitResult:
        """``POST /changes/{id}/tasks/init``: write the enhanced template if no tasks exist."""
        from loom.models import TasksInitResult

        return TasksInitResult.model_validate(
            self._task_post(change_id, ("init",), {}, fencing_token, idempotency_key)
        )

    def start_task(
        self,
        change_id: str,
        task_id: str,
        *,
        fencing_token: int | None = None,
        idempotency_key: str | None = None,
    ) -> TaskMutationResult:
        """``POST /changes/{id}/tasks/{task}/start``."""
        return self._mutate(change_id, task_id, "start", {}, fencing_token, idempotency_key)

    def complete_task(
        self,
        change_id: str,
        task_id: str,
        *,
        note: str | None = None,
        fencing_token: int | None = None,
        idempotency_key: str | None = None,
    ) -> TaskMutationResult:
        """``POST /changes/{id}/tasks/{task}/complete``, with an optional ``note``."""
        body = {} if note is None else {"note": note}
        return self._mutate(change_id, task_id, "complete", body, fencing_token, idempotency_key)

    def shelve_task(
        self,
        change_id: str,
        task_id: str,
        *,
        reason: str | None = None,
        fencing_token: int | None = None,
        idempotency_key: str | None = None,
    ) -> TaskMutationResult:
        """``POST /changes/{id}/tasks/{task}/shelve``, with an optional ``reason``."""
        body = {} if reason is None else {"reason": reason}
        return self._mutate(change_id, task_id, "shelve", body, fencing_token, idempotency_key)

    def unshelve_task(
        self,
        change_id: str,
        task_id: str,
        *,
        fencing_token: int | None = None,
        idempotency_key: str | None = None,
    ) -> TaskMutationResult:
        """``POST /changes/{id}/tasks/{task}/unshelve``."""
        return self._mutate(change_id, task_id, "unshelve", {}, fencing_token, idempotency_key)

    def add_task(
        self,
        change_id: str,
        title: str,
        *,
        wave: int | None = None,
        fencing_token: int | None = None,
        idempotency_key: str | None = None,
    ) -> TaskMutationResult:
        """``POST /changes/{id}/tasks/add``: append a task (to ``wave``, default wave 1)."""
        from loom.models import TaskMutationResult

        body = {"title": title, "wave": wave}
        return TaskMutationResult.model_validate(
            self._task_post(change_id, ("add",), body, fencing_token, idempotency_key)
        )

    def task_action_json(
        self,
        change_id: str,
        task_id: str,
        action: str,
        body: Mapping[str, Any] | None = None,
        *,
        fencing_token: int | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """``POST /changes/{id}/tasks/{task}/{action}`` (``start``, ``complete``, ``shelve``,
        ``unshelve``): the response body as JSON data, not parsed into
        :class:`TaskMutationResult`, for a caller that only prints it (the ``loom`` command
        then never imports pydantic). ``body`` is the optional ``note`` or ``reason``."""
        if action not in _TASK_ACTIONS:
            raise ValueError(f"unknown task action {action!r} (one of {', '.join(_TASK_ACTIONS)})")
        result: dict[str, Any] = self._task_post(
            change_id, (task_id, action), dict(body or {}), fencing_token, idempotency_key
        )
        return result

    def _mutate(
        self,
        change_id: str,
        task_id: str,
        action: str,
        body: dict[str, Any],
        fencing_token: int | None,
        idempotency_key: str | None,
    ) -> TaskMutationResult:
        from loom.models import TaskMutationResult

        return TaskMutationResult.model_validate(
            self.task_action_json(
                change_id,
                task_id,
                action,
                body,
                fencing_token=fencing_token,
                idempotency_key=idempotency_key,
            )
        )

    def _task_post(
        self,
        change_id: str,
        tail: tuple[str, ...],
        body: dict[str, Any],
        fencing_token: int | None,
        idempotency_key: str | None,
    ) -> Any:
        response = self._request(
            "POST",
            self._project_path("changes", change_id, "tasks", *tail),
            json=body,
            headers=self._write_headers(change_id, fencing_token),
            idempotency_key=idempotency_key,
        )
        return self._json(response)
