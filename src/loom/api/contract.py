"""The OpenAPI contract: what each operation declares, and the document built from it.

Handlers render their JSON directly (no response-model validation on the way out: it would
cost time on every request and could change the bytes); each route instead declares its
success model (from :mod:`loom.models`, the models the client parses with), its own error
statuses, headers and links with :func:`operation`. :func:`openapi` completes the document
with what every project route shares: the path parameters with the id grammars of API.md §0,
the access headers, the errors of the path/token checks, the body guard and the database, all
with the error envelope; bearer security with the public routes marked as such.

The contract tests (tests/api/test_openapi*.py) validate the document and fuzz every operation
against it, so a route that answers something it does not declare fails the suite.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from loom.domain.statuses import WORK_STATUSES
from loom.models import ErrorEnvelope

__all__ = [
    "HOLDER",
    "ID_GRAMMARS",
    "LIFECYCLE",
    "MODULE_FILTER",
    "SPEC_PAIR_IN",
    "STATUS_LIST",
    "allocate_links",
    "any_case_enum",
    "openapi",
    "operation",
    "operation_id",
    "push_links",
]

_PROJECT = "/api/v1/projects/{org}/{repo}"
_ADMIN = "/api/v1/admin/"
_PUBLIC: Final = frozenset({"/api/v1/health", "/api/v1/ready"})

_CANONICAL = r"[0-9]{3}(\.[0-9]{2})?-[0-9]{2,}_[a-z0-9]+(-[a-z0-9]+)*"
_LEGACY = r"[a-z0-9]+(-[a-z0-9]+)*"
# Read routes also resolve Ito's short forms (``1-2``, ``12.2-5_x``): loom.api.access.
_SHORT = r"[A-Za-z0-9][A-Za-z0-9._: -]{0,127}"
_NO_CONTROL = r"\x00-\x1f\x7f-\x9f"

# API.md §0: every id is validated before use (violation: 400 invalid_id).
ID_GRAMMARS: Final[dict[str, dict[str, Any]]] = {
    "org": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", "maxLength": 100},
    "repo": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", "maxLength": 100},
    "change_id": {"type": "string", "pattern": f"^({_CANONICAL}|{_LEGACY})$", "maxLength": 128},
    "task_id": {"type": "string", "pattern": rf"^[^/\\{_NO_CONTROL}]{{1,64}}$", "maxLength": 64},
    # Short forms are normalised: ``1`` is ``001``, ``1.2`` is ``001.02``.
    "module_id": {"type": "string", "pattern": r"^[0-9]{1,10}(\.[0-9]{1,10})?$"},
    "spec_id": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9._-]{0,127}$", "maxLength": 128},
}
# Ids in bodies and headers.
HOLDER: Final = {"type": "string", "pattern": rf"^[^\s{_NO_CONTROL}]{{1,200}}$"}
# A spec delta in a request body: ``["capability", "markdown"]``.
SPEC_PAIR_IN: Final = {
    "type": "array",
    "prefixItems": [ID_GRAMMARS["spec_id"], {"type": "string"}],
    "minItems": 2,
    "maxItems": 2,
}
_READ_CHANGE_ID: Final = {
    "type": "string",
    "pattern": f"^({_CANONICAL}|{_LEGACY}|{_SHORT})$",
    "maxLength": 128,
}


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in word)


def any_case_enum(words: Iterable[str], *, blank: bool = False) -> dict[str, Any]:
    """A string schema for one of ``words``, in any letter case, surrounding blanks allowed."""
    alternatives = "|".join(_any_case(w) for w in words)
    optional = "?" if blank else ""
    return {"type": "string", "pattern": rf"^\s*({alternatives}){optional}\s*$"}


LIFECYCLE: Final = any_case_enum(("active", "archived", "all"), blank=True)
_STATUS_WORD = "|".join(WORK_STATUSES)
STATUS_LIST: Final = {
    "type": "string",
    "pattern": rf"^\s*({_STATUS_WORD})?\s*(,\s*({_STATUS_WORD})?\s*)*$",
    "description": "comma-separated work statuses: " + ", ".join(WORK_STATUSES),
}
MODULE_FILTER: Final = {"type": "string", "pattern": r"^([0-9]{1,10}(\.[0-9]{1,10})?)?$"}

_HEADERS: Final[dict[str, dict[str, Any]]] = {
    "Idempotency-Key": {
        "description": "Retry-safe key (API.md §0): the same request with the same key is "
        "applied once and its response replayed.",
        "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$", "maxLength": 255},
    },
    "X-Loom-Holder": {
        "description": "The lease holder making this write (1-200 visible characters).",
        "schema": HOLDER,
    },
    "X-Loom-Fencing-Token": {
        "description": "The fencing token of the writer's lease; an older one is refused.",
        "schema": {"type": "string", "pattern": r"^[0-9]{1,18}$"},
    },
    "If-Match": {
        "description": 'The revision the push is based on (``"3"``), instead of the body\'s '
        "``revision``.",
        "schema": {"type": "string", "maxLength": 200},
    },
}

_RESPONSE_HEADERS: Final[dict[str, dict[str, Any]]] = {
    "ETag": {"description": 'The revision, quoted ("3").', "required": True},
    "X-Next-Cursor": {"description": "Cursor of the next page (absent on the last page)."},
    "X-Next-Since": {"description": "`since` of the next page (only with `limit`)."},
}
_REPLAYED: Final = {
    "Idempotent-Replayed": {
        "description": "`true` on a response replayed for a repeated Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}

_ERROR_TEXT: Final = {
    400: "Bad request: an invalid id, parameter, header or rule violation",
    401: "Missing or unknown token",
    403: "The token does not cover this project, or an admin token is needed",
    404: "Not found",
    409: "Conflict (lease, revision, archived, idempotency key in flight)",
    412: "If-Match carries a weak ETag (W/...), which never matches for a write",
    413: "Request body, or one artifact, too large",
    415: "Request body is not JSON",
    422: "Body schema violation, or an Idempotency-Key reused for another request",
    428: "A revision is required",
    503: "The database is unavailable (retry)",
}


# Request bodies parsed by their handlers (not by FastAPI): added to the components.
_BODY_MODELS: dict[str, type[BaseModel]] = {}


def _envelope_ref() -> dict[str, Any]:
    return {"$ref": "#/components/schemas/ErrorEnvelope"}


def _error(status: int) -> dict[str, Any]:
    return {
        "description": _ERROR_TEXT.get(status, "Error"),
        "content": {"application/json": {"schema": _envelope_ref()}},
    }


def operation(
    ok: Any,
    *,
    errors: Iterable[int] = (),
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    query: Mapping[str, dict[str, Any]] | None = None,
    headers: Iterable[str] = (),
    response_headers: Iterable[str] = (),
    links: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Route decorator arguments documenting an operation (nothing here runs per request).

    ``ok``: the 200 body's model (or ``list[Model]``); ``errors``: the statuses the use case
    itself can answer (the shared ones are added by :func:`openapi`); ``body``: the request
    body (every handler parses its own, after the access check: ``loom.api.bodies``),
    optional when ``body_required`` is False; ``query``: schemas of query parameters the
    handler reads itself; ``headers``: request headers beyond the shared ones;
    ``links``: OpenAPI links of the 200 response, for stateful testing.
    """
    success: dict[str, Any] = {"model": ok, "description": "OK"}
    out_headers = {
        name: {"schema": {"type": "string"}, **_RESPONSE_HEADERS[name]} for name in response_headers
    }
    if out_headers:
        success["headers"] = out_headers
    if links:
        success["links"] = dict(links)
    responses: dict[int | str, dict[str, Any]] = {200: success}
    for status in errors:
        responses[status] = {"model": ErrorEnvelope, "description": _ERROR_TEXT[status]}
    extra: dict[str, Any] = {}
    parameters = [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in (query or {}).items()
    ]
    parameters += [
        {"name": name, "in": "header", "required": False, **_HEADERS[name]} for name in headers
    ]
    if parameters:
        extra["parameters"] = parameters
    if body is not None:
        extra["requestBody"] = {
            "required": body_required,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{body.__name__}"}}
            },
        }
        _BODY_MODELS[body.__name__] = body
    return {"responses": responses, "openapi_extra": extra}


# --------------------------------------------------------------------------- the document


def operation_id(route: APIRoute) -> str:
    """operationId = the handler's name (push, allocate, ...): stable, and what OpenAPI links
    and generated clients refer to."""
    return route.name


def _link(operation_id: str, parameters: dict[str, str], body: Any = None) -> dict[str, Any]:
    link: dict[str, Any] = {"operationId": operation_id, "parameters": parameters}
    if body is not None:
        link["requestBody"] = body
    return link


def _same_project(**more: str) -> dict[str, str]:
    return {"org": "$request.path.org", "repo": "$request.path.repo", **more}


def push_links() -> dict[str, dict[str, Any]]:
    """From a push to reading the same change back, and to claiming it."""
    change = "$response.body#/change_id"
    return {
        "PullChange": _link("pull", _same_project(change_id=change)),
        "GetChange": _link("get_change", _same_project(change_id=change)),
        "GetTasks": _link("get_tasks", _same_project(change_id=change)),
        "ClaimChange": _link("claim", _same_project(change_id=change)),
    }


def allocate_links() -> dict[str, dict[str, Any]]:
    """From an allocation to renewing and releasing the lease it took."""
    change = "$response.body#/claim/change_id"
    holder = {"holder": "$response.body#/claim/holder"}
    return {
        "Heartbeat": _link("heartbeat", _same_project(change_id=change), holder),
        "Release": _link("release", _same_project(change_id=change), holder),
        "GetLease": _link("get_lease", _same_project(change_id=change)),
    }


def _path_parameter(name: str, read: bool) -> dict[str, Any]:
    schema = _READ_CHANGE_ID if read and name == "change_id" else ID_GRAMMARS[name]
    return {"name": name, "in": "path", "required": True, "schema": copy.deepcopy(schema)}


def _strip_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, null]`` of an optional parameter is X (a parameter cannot be null)."""
    options = schema.get("anyOf")
    if isinstance(options, list):
        kept = [o for o in options if o != {"type": "null"}]
        if len(kept) == 1:
            rest = {k: v for k, v in schema.items() if k != "anyOf"}
            return {**rest, **kept[0]}
    return schema


def _complete(path: str, method: str, op: dict[str, Any]) -> None:
    responses = op.setdefault("responses", {})
    for status, response in list(responses.items()):
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        if schema == {"$ref": "#/components/schemas/HTTPValidationError"}:
            del responses[status]  # FastAPI's shape, never sent: see the shared errors below
    if path in _PUBLIC or not path.startswith((_PROJECT, _ADMIN)):
        op["security"] = []
        # A malformed query string (a nameless parameter) is 400 on every route.
        responses.setdefault("400", _error(400))
        return
    if path.startswith(_ADMIN):
        # Server-wide admin routes: the bearer requirement, and the token check's errors.
        for status in (400, 401, 403, 503) + ((413, 415, 422) if method == "post" else ()):
            responses.setdefault(str(status), _error(status))
        for status, response in responses.items():
            content = response.get("content", {}).get("application/json")
            if status.startswith(("4", "5")) and content is not None:
                content["schema"] = _envelope_ref()
        return
    declared = {(p["name"], p["in"]) for p in op.get("parameters", [])}
    params = [
        _path_parameter(name, method == "get")
        for name in ID_GRAMMARS
        if "{" + name + "}" in path and (name, "path") not in declared
    ]
    for p in op.get("parameters", []):
        if p["in"] == "path" and p["name"] in ID_GRAMMARS:
            p["schema"] = copy.deepcopy(
                _READ_CHANGE_ID
                if method == "get" and p["name"] == "change_id"
                else ID_GRAMMARS[p["name"]]
            )
        elif "schema" in p:
            p["schema"] = _strip_null(p["schema"])
    mutating = method in ("post", "put")
    if mutating and ("Idempotency-Key", "header") not in declared:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                **_HEADERS["Idempotency-Key"],
            }
        )
    op["parameters"] = params + op.get("parameters", [])
    # Shared answers: the path/token checks (API.md §0, PRODUCT.md §3.5), the database.
    shared = [400, 401, 403, 503]
    if mutating:
        shared += [413, 415, 422]
        # A repeated Idempotency-Key: in flight (409) or used for another request (422).
        shared.append(409)
    for status in shared:
        responses.setdefault(str(status), _error(status))
    for status, response in responses.items():
        content = response.get("content", {}).get("application/json")
        if status.startswith(("4", "5")) and content is not None:
            content["schema"] = _envelope_ref()
    if mutating:
        ok = responses.get("200")
        if ok is not None:
            ok.setdefault("headers", {}).update(copy.deepcopy(_REPLAYED))


def openapi(app: FastAPI) -> dict[str, Any]:
    """The whole document (cached on the app, like FastAPI's own)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    models: list[type[BaseModel]] = [ErrorEnvelope, *_BODY_MODELS.values()]
    for model in models:
        defs = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in defs.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas.setdefault(model.__name__, defs)
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            _complete(path, method, op)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    components["securitySchemes"] = {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "An admin token, a named token (loom_...) or the project token of "
            "the project in the path.",
        }
    }
    doc["security"] = [{"bearerAuth": []}]
    app.openapi_schema = doc
    return doc
