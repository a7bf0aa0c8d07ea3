"""Helpers for the web-app tests: start `app.py` in a subprocess on a free local port, find Chromium.

Shared by test_app_browser.py, test_app_api.py and benchmarks/app_load.py; not a conftest, so it
stays independent of the other test modules' fixtures.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "tests" / "artifacts"
LOCAL_PREFIXES = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(**extra: str) -> dict[str, str]:
    """Offline, no analytics, no RAG_* settings from the caller, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra)
    return env


class AppServer:
    """A running `python app.py` process; `url` ends with a slash."""

    def __init__(self, proc: subprocess.Popen, url: str, log: Path):
        self.proc, self.url, self.log = proc, url, log

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


def start_server(index_dir: Path, upload_dir: Path, workdir: Path, timeout: float = 180, **env: str) -> AppServer:
    """Start the app on a free 127.0.0.1 port (with extra environment variables) and wait until it serves."""
    port = free_port()
    log = workdir / f"server-{port}.log"
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--index-dir", str(index_dir),
           "--upload-dir", str(upload_dir)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=server_env(**env), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    server = AppServer(proc, f"http://127.0.0.1:{port}/", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}:\n{server.output()[-3000:]}")
        if "Serving on" in server.output():
            try:
                with urllib.request.urlopen(server.url, timeout=5) as r:
                    if r.status == 200:
                        return server
            except OSError:
                pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"the app did not serve within {timeout:.0f}s:\n{server.output()[-3000:]}")


def copy_index(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def chromium_missing_reason() -> str | None:
    """None when Chromium is usable; otherwise why not (tests skip locally, fail in CI)."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing: apt-get install -y chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install -e '.[dev]'"
    return None
