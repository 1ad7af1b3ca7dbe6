"""Real processes for end-to-end tests: the web server (uvicorn) and the arq worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(
    args: list[str], env: dict[str, str] | None = None, log_name: str = "proc"
) -> Iterator[subprocess.Popen[bytes]]:
    out_dir = REPO / "test-artifacts"
    out_dir.mkdir(exist_ok=True)
    suffix = f"-{os.environ['PYTEST_XDIST_WORKER']}" if os.environ.get("PYTEST_XDIST_WORKER") else ""
    log = open(out_dir / f"{log_name}{suffix}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(args, cwd=REPO, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextmanager
def web_server(extra_env: dict[str, str] | None = None) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"KITH_BASE_URL": base, **(extra_env or {})}
    cmd = [sys.executable, "-m", "uvicorn", "kith.web.app:create_app", "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with running(cmd, env, "web") as proc:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"web server exited with {proc.returncode}; see test-artifacts/web*.log")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("web server did not become ready in 30 s")
            time.sleep(0.2)
        yield base


@contextmanager
def worker(extra_env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "-c", "from kith.jobs.worker import run_worker; run_worker()"]
    with running(cmd, extra_env, "worker") as proc:
        yield proc
