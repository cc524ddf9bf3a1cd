"""Screenshot of the dashboard with real data: docs/board.png (the README's first picture).

Starts ``loom serve`` on a throwaway SQLite database, imports the real ``.ito/`` corpus,
lets three agents work (allocate, start and complete tasks, heartbeat), signs in with
Debian's Chromium (Playwright, ``executable_path``) and photographs the board.

    .venv/bin/python bench/board_screenshot.py [--out docs/board.png] [--dark] [--width 1440]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import ADMIN, start_server

from loom.client import Client

CORPUS = Path(os.environ.get("LOOM_CORPUS", "/work/shared/corpus/ito-dotdir"))
PROJECT = "withakay/ito"
AGENTS = ("claude-7", "codex-2", "gemini-4")
CHROMIUM = os.environ.get("LOOM_CHROMIUM", "/usr/bin/chromium")


def seed(url: str, work: Path) -> None:
    """Import the corpus, then three agents take work and make progress."""
    tree = work / ".ito"
    shutil.copytree(CORPUS, tree)
    env = {**os.environ, "LOOM_URL": url, "LOOM_TOKEN": ADMIN, "LOOM_PROJECT": PROJECT}
    subprocess.run(
        [sys.executable, "-m", "loom", "import", str(tree)],
        check=True,
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
    )
    for n, holder in enumerate(AGENTS):
        with Client(url, ADMIN, PROJECT, holder=holder) as agent:
            claim = agent.allocate(ttl_seconds=600 + 300 * n).claim
            if claim is None:
                continue
            view = agent.get_tasks(claim.change_id)
            for task in view.tasks[: n + 1]:
                if task.status == "pending":
                    agent.start_task(claim.change_id, task.id)
                    if n:
                        agent.complete_task(claim.change_id, task.id)


def shoot(url: str, out: Path, *, width: int, dark: bool) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(
            viewport={"width": width, "height": 900},
            color_scheme="dark" if dark else "light",
            device_scale_factor=1,
        )
        page.goto(f"{url}/ui/login")
        page.fill("input[name=token]", ADMIN)
        page.click("button[type=submit]")
        page.goto(f"{url}/ui/{PROJECT}")
        page.wait_for_selector(".live.on", timeout=10_000)
        page.wait_for_timeout(1200)  # let the countdowns tick once
        page.screenshot(path=str(out), full_page=False)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/board.png"))
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--dark", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loom-shot-") as tmp:
        work = Path(tmp)
        server = start_server(work / "data", f"sqlite:///{work / 'loom.db'}")
        try:
            seed(server.url, work)
            shoot(server.url, args.out, width=args.width, dark=args.dark)
        finally:
            server.stop()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
