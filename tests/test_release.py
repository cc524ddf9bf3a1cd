"""The release: ``python -m build`` makes a wheel and an sdist holding every package file, and
the wheel installed into a fresh virtualenv runs ``loom serve`` and ``loom status``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from conftest import ADMIN, SEED

# One worker runs both tests, so the module's wheel and sdist (`dist`) are built once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("release")]

ROOT = Path(__file__).resolve().parents[1]
_LISTEN = re.compile(r"loom: listening on (http://\S+)")


def _package_files() -> list[str]:
    """Every file of the package as the wheel names it (``loom/...``), caches excluded."""
    base = ROOT / "src"
    return sorted(
        str(p.relative_to(base))
        for p in (base / "loom").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "ITO_"))}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


def test_wheel_and_sdist_hold_every_package_file(dist: Path) -> None:
    files = _package_files()
    assert "loom/store/migrations/script.py.mako" in files
    assert any(f.startswith("loom/store/migrations/versions/0001") for f in files)
    (wheel,) = dist.glob("ito_loom-*.whl")
    (sdist,) = dist.glob("ito_loom-*.tar.gz")
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = set(zf.namelist())
    assert not [f for f in files if f not in in_wheel]
    with tarfile.open(sdist) as tf:
        in_sdist = {name.split("/", 1)[1] for name in tf.getnames() if "/" in name}
    assert not [f for f in files if f"src/{f}" not in in_sdist]
    assert {"pyproject.toml", "README.md", "CHANGELOG.md"} <= in_sdist


def test_the_wheel_installs_into_a_fresh_venv_and_serves(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("ito_loom-*.whl")
    venv = tmp_path / "venv"
    # Without its own pip (ensurepip costs ~3 s of CPU): this pip installs into it.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    env = _clean_env()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--no-compile",  # byte-compiling every dependency is most of the install's CPU
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=600,
        env=env,
    )
    loom = str(venv / "bin" / "loom")
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import loom; print(loom.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    ).stdout
    assert where.startswith(str(venv)), where
    from loom.cli import version

    shown = subprocess.run([loom, "--version"], capture_output=True, text=True, env=env, check=True)
    assert shown.stdout.strip() == f"loom {version()}"

    data = tmp_path / "data"
    proc = subprocess.Popen(
        [
            loom,
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data),
            "--admin-token",
            ADMIN,
            "--token-seed",
            SEED,
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert proc.stderr is not None
    found: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            m = _LISTEN.search(line)
            if m and not found:
                found.append(m.group(1))
                ready.set()
        ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        ready.wait(timeout=120)
        assert found, "the installed server did not start"
        status = subprocess.run(
            [loom, "status"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
            env=env | {"LOOM_URL": found[0], "LOOM_TOKEN": ADMIN, "LOOM_PROJECT": "acme/widgets"},
        )
        assert status.returncode == 0, status.stdout + status.stderr
        checked = subprocess.run(
            [loom, "db", "check", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=10)
        proc.stderr.close()
