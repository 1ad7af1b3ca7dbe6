"""Run the web server and the worker as child processes; stop them together.

Children get their own session, so a terminal's Ctrl-C reaches only `kith dev`, which
forwards it exactly once (a second SIGINT makes uvicorn and arq skip their graceful drain).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

STOP_TIMEOUT_SECONDS = 15.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if `kith dev` itself is killed (-9), the
    # kernel sends SIGTERM to the child, so no web server or worker outlives it.
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port (checked before starting anything)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_accepts(host: str, port: int) -> bool:
    connect_host = "127.0.0.1" if host in {"0.0.0.0", ""} else ("::1" if host == "::" else host)  # noqa: S104
    try:
        with socket.create_connection((connect_host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Supervisor:
    """Starts children, waits for a signal or for one of them to die, then stops them all."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[Child] = []
        self._stop_signal: int | None = None
        self._wake = threading.Event()

    def spawn(self, name: str, argv: Sequence[str]) -> Child:
        process = subprocess.Popen(  # noqa: S603 - argv is built by us from sys.executable
            list(argv), env=self.env, start_new_session=True, preexec_fn=_die_with_parent
        )
        child = Child(name, process)
        self.children.append(child)
        return child

    @property
    def stop_requested(self) -> bool:
        return self._stop_signal is not None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum
        self._wake.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def dead_child(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait for `ready()`; False if a signal came, a child died, or time ran out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._stop_signal is not None or self.dead_child() is not None:
                return False
            if ready():
                return True
            self._wake.wait(0.1)
        return False

    def run(self) -> tuple[int | None, Child | None]:
        """Block until a stop signal (returned first) or a child's exit (returned second)."""
        while True:
            if self._stop_signal is not None:
                return self._stop_signal, None
            dead = self.dead_child()
            if dead is not None:
                return None, dead
            self._wake.wait(0.2)

    def stop_all(self, signum: int = signal.SIGTERM) -> None:
        """Forward one signal to every live child, wait, then kill what is left."""
        for child in self.children:
            if child.process.poll() is None:
                child.process.send_signal(signum)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"kith: {child.name} did not stop in {STOP_TIMEOUT_SECONDS:.0f} s; killing it",
                      file=sys.stderr, flush=True)
                child.process.kill()
                child.process.wait()


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # log lines appear as they happen, interleaved in order
    env.update(extra or {})
    return env
