"""The OpenAPI document: valid, and every operation fully described (issue 10)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from conftest import make_settings
from loom import models
from loom.api.app import create_app
from loom.api.contract import ID_GRAMMARS
from loom.domain import ids
from loom.errors import ValidationError

PROJECT = "/api/v1/projects/{org}/{repo}"
ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    app = create_app(make_settings("sqlite://", Path("unused")))
    document: dict[str, Any] = app.openapi()
    return document


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "delete", "patch")
    ]


def test_the_document_is_valid_openapi(doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["openapi"].startswith("3.1")


def test_the_document_is_served(api: Any) -> None:
    served = api.get("/api/v1/openapi.json")
    assert served.status_code == 200
    validate(served.json())


def test_every_project_operation_declares_its_path_parameters(doc: dict[str, Any]) -> None:
    for path, method, op in _operations(doc):
        names = re.findall(r"{(\w+)}", path)
        declared = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "path"}
        assert sorted(declared) == sorted(names), (method, path)
        for name in names:
            schema = declared[name]["schema"]
            assert declared[name]["required"] is True
            assert schema["type"] == "string" and schema["pattern"].startswith("^"), (path, name)


def test_every_operation_documents_a_success_body_and_only_envelope_errors(
    doc: dict[str, Any],
) -> None:
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, method, op in _operations(doc):
        if path in ("/api/v1/openapi.json",):
            continue
        content = op["responses"]["200"]["content"]
        # The event stream's 200 is Server-Sent Events, not JSON.
        ok = content[
            "text/event-stream" if path.endswith("/events/stream") else "application/json"
        ]["schema"]
        assert ok not in ({}, {"type": "object"}), (method, path)
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert schema == ENVELOPE, (method, path, status)


def test_security_bearer_with_public_health_and_ready(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An admin token, a named token (loom_...) or the project token of "
        "the project in the path.",
    }
    assert doc["security"] == [{"bearerAuth": []}]
    for path, _method, op in _operations(doc):
        if path.startswith((PROJECT, "/api/v1/admin/")):
            assert "security" not in op  # the document-wide bearer requirement applies
            assert {"400", "401", "403", "503"} <= set(op["responses"]), path
        else:
            assert op["security"] == [], path


def test_mutating_operations_take_an_idempotency_key_and_lease_headers(
    doc: dict[str, Any],
) -> None:
    for path, method, op in _operations(doc):
        if not path.startswith(PROJECT) or method == "get":
            continue
        headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
        assert "Idempotency-Key" in headers, path
        assert "Idempotent-Replayed" in op["responses"]["200"]["headers"], path
        assert {"413", "415", "422"} <= set(op["responses"]), path
        lease_route = path.endswith(("/claim", "/heartbeat", "/release"))
        if "{change_id}" in path and not lease_route:
            assert {"X-Loom-Holder", "X-Loom-Fencing-Token"} <= headers, path
    push = doc["paths"][f"{PROJECT}/changes/{{change_id}}/sync"]["post"]
    assert "If-Match" in {p["name"] for p in push["parameters"]}


def test_request_bodies_of_the_hot_routes_are_components(doc: dict[str, Any]) -> None:
    for route, model in [
        ("/changes/{change_id}/claim", "ClaimBody"),
        ("/changes/{change_id}/heartbeat", "ClaimBody"),
        ("/changes/{change_id}/release", "ReleaseBody"),
        ("/allocate", "AllocateBody"),
        ("/events", "EventsBody"),
    ]:
        body = doc["paths"][PROJECT + route]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{model}"
        }
        assert model in doc["components"]["schemas"]


def test_links_walk_push_and_allocate_sequences(doc: dict[str, Any]) -> None:
    operation_ids = {op["operationId"] for _p, _m, op in _operations(doc)}
    push = doc["paths"][f"{PROJECT}/changes/{{change_id}}/sync"]["post"]
    allocate = doc["paths"][f"{PROJECT}/allocate"]["post"]
    push_links = push["responses"]["200"]["links"]
    allocate_links = allocate["responses"]["200"]["links"]
    assert {link["operationId"] for link in push_links.values()} >= {"pull", "claim", "get_tasks"}
    assert {link["operationId"] for link in allocate_links.values()} >= {"heartbeat", "release"}
    for link in [*push_links.values(), *allocate_links.values()]:
        assert link["operationId"] in operation_ids
    assert allocate_links["Heartbeat"]["parameters"]["change_id"] == (
        "$response.body#/claim/change_id"
    )


# Each id grammar of the document accepts what the server accepts and refuses the rest.
_SAMPLES = {
    "org": (ids.validate_org, ["acme", "a.b-c_d", "A1", "-x", ".", "a/b", "x" * 101, ""]),
    "repo": (ids.validate_repo, ["widgets", "w.1", "_w", "..", "x" * 100]),
    "change_id": (
        ids.validate_change_id,
        ["001-01_alpha", "001.02-10_a-b", "legacy-slug", "1-2", "001-1_a", "A", "x" * 129],
    ),
    "spec_id": (ids.validate_spec_id, ["auth", "a.b_c-d", "-a", "A", "x" * 129]),
    "module_id": (ids.validate_module_id, ["001", "1", "1.2", "024.01", "x", "1.", ""]),
    "task_id": (ids.validate_task_id, ["1.1", "task one", "a/b", "a\\b", "x" * 65, "\n"]),
}


@pytest.mark.parametrize("name", sorted(_SAMPLES))
def test_id_grammars_match_the_validators(name: str) -> None:
    validator, samples = _SAMPLES[name]
    schema = ID_GRAMMARS[name]
    for sample in samples:
        try:
            validator(sample)
            accepted = True
        except ValidationError:
            accepted = False
        matches = re.fullmatch(schema["pattern"].strip("^$"), sample) is not None and len(
            sample
        ) <= schema.get("maxLength", 10**6)
        if name == "module_id" and matches and not accepted:
            continue  # the pattern allows any digits; the server also bounds their value
        assert matches == accepted, (name, sample)


_COSMETIC = {"title", "description", "default", "additionalProperties", "examples"}


def _shape(schema: Any) -> Any:
    """Field names, types and required-ness of a schema (what a generated client relies
    on), without titles, descriptions and defaults."""
    if isinstance(schema, dict):
        out = {k: _shape(v) for k, v in schema.items() if k not in _COSMETIC}
        if isinstance(schema.get("properties"), dict):  # field names are never cosmetic
            out["properties"] = {k: _shape(v) for k, v in schema["properties"].items()}
        return out
    if isinstance(schema, list):
        return [_shape(v) for v in schema]
    return schema


def _success_model(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
    assert ref is not None, schema
    return str(ref.rsplit("/", 1)[1])


def test_success_bodies_are_the_client_models(doc: dict[str, Any]) -> None:
    """One set of models (loom.models) serves the client and the document: every success
    body of the document is one of them, with exactly the schema the model generates."""
    components = doc["components"]["schemas"]
    used = set()
    for path, method, op in _operations(doc):
        content = op["responses"]["200"]["content"]
        if "text/event-stream" in content:  # each event's data is one of the models
            schema = content["text/event-stream"]["schema"]["properties"]["data"]["contentSchema"]
        else:
            schema = content["application/json"]["schema"]
        name = _success_model(schema)
        model = getattr(models, name, None)
        assert model is not None and name in models.__all__, (method, path, name)
        used.add(name)
        generated = model.model_json_schema(
            mode="serialization", ref_template="#/components/schemas/{model}"
        )
        for sub, schema in generated.pop("$defs", {}).items():
            assert _shape(components[sub]) == _shape(schema), sub
        assert _shape(components[name]) == _shape(generated), name
    # Every response the client parses is a documented success body (ErrorEnvelope: errors).
    parsed = {n for n in models.__all__ if isinstance(getattr(models, n), type)}
    nested = {"LeaseInfo", "Progress", "SpecContent", "TaskItem", "WaveInfo", "Diagnostic"}
    nested |= {"SubModuleSummary", "ImportConflict", "ImportModule", "ImportSpec"}
    nested |= {"ImportChange", "Page", "ErrorEnvelope"}
    nested |= {
        "SharedRequirement",
        "ChangeOverlap",
        "OverlapPair",
        "OverlapWarning",
        "SpecRevision",
    }
    assert parsed - nested == used
