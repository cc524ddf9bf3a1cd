"""Project-wide routes: modules, specs, import/export, leases, allocation and events.

Each method imports the model it returns in its body, not at module level: a ``loom``
command whose routes parse no model never imports pydantic (tests/cli/test_startup.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from loom.client._base import BaseClient, new_idempotency_key
from loom.errors import ValidationError

if TYPE_CHECKING:
    from loom.models import (
        AllocateResult,
        AuditEvent,
        ClaimResult,
        ImportResult,
        IngestResult,
        ModuleDetail,
        ModuleSummary,
        Page,
        ProjectSnapshot,
        ReleaseResult,
        SpecDocument,
        SpecSummary,
    )

__all__ = ["ProjectAPI"]


class ProjectAPI(BaseClient):
    """Modules, specs, bulk import/export, leases and events (API.md §2.6 to §2.8)."""

    # --- modules ------------------------------------------------------------------------

    def list_modules(self) -> list[ModuleSummary]:
        """``GET /modules``: modules with their sub-modules and change counts."""
        from loom.models import ModuleSummary

        data = self._json(self._request("GET", self._project_path("modules")))
        return [ModuleSummary.model_validate(item) for item in data]

    def get_module(self, module_id: str) -> ModuleDetail:
        """``GET /modules/{id}`` (``NNN`` or a sub-module ``NNN.SS``)."""
        from loom.models import ModuleDetail

        data = self._json(self._request("GET", self._project_path("modules", module_id)))
        return ModuleDetail.model_validate(data)

    def put_module(
        self,
        module_id: str,
        *,
        name: str,
        description: str | None = None,
        markdown: str | None = None,
        idempotency_key: str | None = None,
    ) -> ModuleDetail:
        """``PUT /modules/{id}``: create or replace a module or sub-module."""
        from loom.models import ModuleDetail

        body: dict[str, Any] = {"name": name}
        if description is not None:
            body["description"] = description
        if markdown is not None:
            body["markdown"] = markdown
        response = self._request(
            "PUT",
            self._project_path("modules", module_id),
            json=body,
            idempotency_key=idempotency_key,
        )
        return ModuleDetail.model_validate(self._json(response))

    # --- specs --------------------------------------------------------------------------

    def list_specs(self) -> list[SpecSummary]:
        """``GET /specs``: capability specs sorted by id."""
        from loom.models import SpecSummary

        data = self._json(self._request("GET", self._project_path("specs")))
        return [SpecSummary.model_validate(item) for item in data]

    def get_spec(self, spec_id: str, *, revision: int | None = None) -> SpecDocument:
        """``GET /specs/{id}``: one capability spec's markdown (at ``revision``, if given)."""
        from loom.models import SpecDocument

        params = None if revision is None else {"revision": revision}
        data = self._json(self._request("GET", self._project_path("specs", spec_id), params=params))
        return SpecDocument.model_validate(data)

    def put_spec(
        self, spec_id: str, markdown: str, *, idempotency_key: str | None = None
    ) -> SpecDocument:
        """``PUT /specs/{id}``: create or replace a capability spec."""
        from loom.models import SpecDocument

        response = self._request(
            "PUT",
            self._project_path("specs", spec_id),
            json={"markdown": markdown},
            idempotency_key=idempotency_key,
        )
        return SpecDocument.model_validate(self._json(response))

    # --- import / export ----------------------------------------------------------------

    def import_snapshot(
        self,
        snapshot: ProjectSnapshot,
        *,
        overwrite: bool = False,
        idempotency_key: str | None = None,
    ) -> ImportResult:
        """``POST /import``: load modules, specs and changes in one transaction.

        One request: callers with large trees split them (see :func:`loom.client.import_tree`).
        """
        from loom.models import ImportResult

        body = snapshot.model_dump(mode="json", by_alias=True)
        body["mode"] = "overwrite" if overwrite else "create-only"
        response = self._request(
            "POST", self._project_path("import"), json=body, idempotency_key=idempotency_key
        )
        return ImportResult.model_validate(self._json(response))

    def export_snapshot(self) -> ProjectSnapshot:
        """``GET /export``: the whole project in the shape of an import body."""
        from loom.models import ProjectSnapshot

        data = self._json(self._request("GET", self._project_path("export")))
        return ProjectSnapshot.model_validate(data)

    # --- leases -------------------------------------------------------------------------

    def _holder_body(self, holder: str | None, ttl_seconds: int | None) -> dict[str, Any]:
        name = holder or self.holder
        if not name:
            raise ValidationError("no holder identity configured", kind="holder_missing")
        body: dict[str, Any] = {"holder": name}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        return body

    def claim(
        self,
        change_id: str,
        *,
        ttl_seconds: int | None = None,
        holder: str | None = None,
        idempotency_key: str | None = None,
    ) -> ClaimResult:
        """``POST /changes/{id}/claim``: acquire or renew the lease on a change.

        Raises :class:`LeaseConflict` when another holder has it. The fencing token is
        remembered and sent on later writes to the change.
        """
        from loom.models import ClaimResult

        response = self._request(
            "POST",
            self._project_path("changes", change_id, "claim"),
            json=self._holder_body(holder, ttl_seconds),
            headers=self._write_headers(change_id, None),
            idempotency_key=idempotency_key,
        )
        result = ClaimResult.model_validate(self._json(response))
        self.remember_fencing_token(change_id, result.fencing_token)
        return result

    def heartbeat(
        self,
        change_id: str,
        *,
        ttl_seconds: int | None = None,
        holder: str | None = None,
        idempotency_key: str | None = None,
    ) -> ClaimResult:
        """``POST /changes/{id}/heartbeat``: extend the lease (same fencing token)."""
        from loom.models import ClaimResult

        response = self._request(
            "POST",
            self._project_path("changes", change_id, "heartbeat"),
            json=self._holder_body(holder, ttl_seconds),
            headers=self._write_headers(change_id, None),
            idempotency_key=idempotency_key,
        )
        result = ClaimResult.model_validate(self._json(response))
        self.remember_fencing_token(change_id, result.fencing_token)
        return result

    def release(
        self,
        change_id: str,
        *,
        force: bool = False,
        holder: str | None = None,
        idempotency_key: str | None = None,
    ) -> ReleaseResult:
        """``POST /changes/{id}/release`` (idempotent); ``force`` needs an admin token."""
        from loom.models import ReleaseResult

        response = self._request(
            "POST",
            self._project_path("changes", change_id, "release"),
            params={"force": "true"} if force else None,
            json=self._holder_body(holder, None),
            headers=self._write_headers(change_id, None),
            idempotency_key=idempotency_key,
        )
        self.remember_fencing_token(change_id, None)
        return ReleaseResult.model_validate(self._json(response))

    def get_lease(self, change_id: str) -> ClaimResult:
        """``GET /changes/{id}/lease``: the active lease (:class:`NotFound` when none)."""
        from loom.models import ClaimResult

        data = self._json(self._request("GET", self._project_path("changes", change_id, "lease")))
        return ClaimResult.model_validate(data)

    def list_leases(self) -> list[ClaimResult]:
        """``GET /leases``: active leases, soonest expiry first."""
        from loom.models import ClaimResult

        data = self._json(self._request("GET", self._project_path("leases")))
        return [ClaimResult.model_validate(item) for item in data]

    def allocate(
        self,
        *,
        ttl_seconds: int | None = None,
        module: str | None = None,
        changes: Sequence[str] | None = None,
        holder: str | None = None,
        avoid_overlap: str | None = None,
        idempotency_key: str | None = None,
    ) -> AllocateResult:
        """``POST /allocate``: lease the next available change (``claim`` None when none).

        ``avoid_overlap``: ``prefer`` (the server's default), ``strict`` or ``off``; the
        claim's ``overlaps`` names the busy changes it shares a requirement with.

        Retries reuse the idempotency key, so a lost response never leaks a second lease.
        """
        from loom.models import AllocateResult

        body = self._holder_body(holder, ttl_seconds)
        if module is not None:
            body["module"] = module
        if changes is not None:
            body["changes"] = list(changes)
        if avoid_overlap is not None:
            body["avoid_overlap"] = avoid_overlap
        response = self._request(
            "POST",
            self._project_path("allocate"),
            json=body,
            headers=self._write_headers(None, None),
            idempotency_key=idempotency_key,
        )
        result = AllocateResult.model_validate(self._json(response))
        if result.claim is not None:
            self.remember_fencing_token(result.claim.change_id, result.claim.fencing_token)
        return result

    # --- events -------------------------------------------------------------------------

    def post_events(
        self,
        events: Sequence[AuditEvent | Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> IngestResult:
        """``POST /events``: append a batch atomically (all valid, or nothing appended).

        The key (generated when not given) goes in the body ``idempotency_key`` and in the
        ``Idempotency-Key`` header; the same key with the same batch is never appended twice.
        """
        from loom.models import AuditEvent, IngestResult

        key = idempotency_key or new_idempotency_key()
        payload = [
            e.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"seq"})
            if isinstance(e, AuditEvent)
            else dict(e)
            for e in events
        ]
        response = self._request(
            "POST",
            self._project_path("events"),
            json={"events": payload, "idempotency_key": key},
            idempotency_key=key,
        )
        return IngestResult.model_validate(self._json(response))

    def get_events_page(
        self,
        *,
        since: int | None = None,
        limit: int | None = None,
        entity: str | None = None,
        scope: str | None = None,
        op: str | None = None,
    ) -> Page[AuditEvent]:
        """``GET /events``: events after ``since`` (exclusive), in append order.

        ``next_cursor`` is the ``X-Next-Since`` header (the ``since`` of the next page).
        """
        from loom.models import AuditEvent, Page

        response = self._request(
            "GET",
            self._project_path("events"),
            params={"since": since, "limit": limit, "entity": entity, "scope": scope, "op": op},
        )
        items = [AuditEvent.model_validate(item) for item in self._json(response)]
        return Page(items=items, next_cursor=response.headers.get("X-Next-Since") or None)

    def get_events(
        self,
        *,
        since: int | None = None,
        limit: int | None = None,
        entity: str | None = None,
        scope: str | None = None,
        op: str | None = None,
    ) -> list[AuditEvent]:
        """The events of one ``GET /events`` request (all of them when ``limit`` is None)."""
        return self.get_events_page(
            since=since, limit=limit, entity=entity, scope=scope, op=op
        ).items

    def iter_events(
        self,
        *,
        since: int | None = None,
        entity: str | None = None,
        scope: str | None = None,
        op: str | None = None,
        page_size: int = 1000,
    ) -> Iterator[AuditEvent]:
        """Every event after ``since``, fetched ``page_size`` at a time."""
        cursor = since
        while True:
            page = self.get_events_page(
                since=cursor, limit=page_size, entity=entity, scope=scope, op=op
            )
            yield from page.items
            if not page.items:
                return
            if page.next_cursor is not None:
                cursor = int(page.next_cursor)
            else:
                last = page.items[-1].seq
                if last is None or len(page.items) < page_size:
                    return
                cursor = last
