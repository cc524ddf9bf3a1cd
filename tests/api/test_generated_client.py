"""A client generated from the document (openapi-python-client) pushes, allocates and pulls.

The generator runs in a temporary directory on the document the server serves; the
generated package then talks to a real ``loom serve``. Nothing of ``loom.client`` is used:
this is what an integrator in another language gets from the document alone.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ADMIN, ORG, REPO, LiveServer


@pytest.fixture
def generated(tmp_path: Path, live_server: LiveServer) -> Any:
    document = httpx.get(f"{live_server.url}/api/v1/openapi.json", timeout=30).json()
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(document), encoding="utf-8")
    generator = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    assert generator is not None, "openapi-python-client is a dev dependency"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [generator, "generate", "--path", str(spec), "--meta", "none", "--output-path", "loomgen"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("loomgen")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "loomgen" or m.startswith("loomgen.")]:
            del sys.modules[name]


@pytest.mark.slow
def test_a_generated_client_pushes_allocates_and_pulls(
    generated: Any, live_server: LiveServer
) -> None:
    api = importlib.import_module("loomgen.api.default")
    models = importlib.import_module("loomgen.models")
    push = importlib.import_module("loomgen.api.default.push")
    allocate = importlib.import_module("loomgen.api.default.allocate")
    pull = importlib.import_module("loomgen.api.default.pull")
    release = importlib.import_module("loomgen.api.default.release")
    assert api is not None
    client = generated.AuthenticatedClient(base_url=live_server.url, token=ADMIN)
    with client as c:
        body = models.SyncPush(
            proposal="# Proposal\n",
            tasks="## 1. Tasks\n- [ ] 1.1 First\n",
            specs=[["auth", "## ADDED Requirements\n\n### Requirement: R\nR.\n"]],
            revision="",
        )
        pushed = push.sync_detailed(ORG, REPO, "001-01_generated", client=c, body=body)
        assert pushed.status_code == 200, pushed.content
        assert isinstance(pushed.parsed, models.PushResult)
        assert (pushed.parsed.change_id, pushed.parsed.new_revision) == ("001-01_generated", "1")

        taken = allocate.sync(
            ORG, REPO, client=c, body=models.AllocateBody(holder="gen-agent", ttl_seconds=60)
        )
        assert isinstance(taken, models.AllocateResult)
        assert taken.claim.change_id == "001-01_generated"
        assert taken.claim.holder == "gen-agent"
        assert taken.claim.fencing_token == 1

        bundle = pull.sync_detailed(ORG, REPO, "001-01_generated", client=c)
        assert bundle.status_code == 200
        assert bundle.headers["etag"] == '"1"'
        assert isinstance(bundle.parsed, models.ArtifactBundle)
        assert bundle.parsed.proposal == "# Proposal\n"
        assert bundle.parsed.specs == [["auth", body.specs[0][1]]]

        # An error answer parses as the documented envelope.
        again = allocate.sync(ORG, REPO, client=c, body=models.AllocateBody(holder="other"))
        assert isinstance(again, models.AllocateResult) and again.claim is None
        refused = release.sync(
            ORG, REPO, "001-01_generated", client=c, body=models.ReleaseBody(holder="other")
        )
        assert isinstance(refused, models.ErrorEnvelope)
        assert (refused.code, refused.kind) == ("conflict", "not_lease_holder")
