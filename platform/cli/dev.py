"""`kith dev` and `kith serve`: the whole product on one machine, embedded servers included."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING

from kith.platform.cli.common import EXIT_FAILED, CliError, with_orm
from kith.platform.cli.services import data_dir_lock, embedded_services
from kith.platform.cli.supervisor import Supervisor, child_env, describe_exit, port_accepts, port_in_use
from kith.platform.config import get_settings

if TYPE_CHECKING:
    from kith.tenants.demo import DemoWorkspace

APP_FACTORY = "kith.web.app:create_app"
READY_TIMEOUT_SECONDS = 60.0


def _say(message: str) -> None:
    print(message, flush=True)


# The edge middleware already logs every request as one structured line (with its request id,
# tenant and duration), so uvicorn's own access log would only print each request a second
# time, at a cost per request. uvloop and httptools (uvicorn[standard]) are picked by uvicorn's
# "auto" loop and HTTP settings whenever they are installed.
ACCESS_LOG = False


def _uvicorn_argv(host: str, port: int, workers: int) -> list[str]:
    argv = [sys.executable, "-m", "uvicorn", APP_FACTORY, "--factory", "--host", host, "--port", str(port)]
    if not ACCESS_LOG:
        argv.append("--no-access-log")
    if workers > 1:
        argv += ["--workers", str(workers)]
    return argv


def _worker_argv() -> list[str]:
    return [sys.executable, "-m", "kith.platform.cli.main", "worker"]


def _browser_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"


async def _prepare(*, seed: bool) -> DemoWorkspace | None:
    """Migrate (waiting for another runner if one is busy), then seed the demo workspace."""
    from kith.platform.cli.admin import failure_message
    from kith.platform.migrations import runner

    settings = get_settings()
    report = await runner.migrate(
        concurrency=settings.migrate_concurrency,
        canary_slugs=settings.canary_tenants,
        progress=_say,
        wait_for_lock=True,
    )
    if not report.ok:
        raise CliError(failure_message(report), EXIT_FAILED)
    if not seed:
        return None
    from kith.tenants.demo import seed_demo

    return await with_orm(seed_demo)


def _banner(url: str, demo: DemoWorkspace | None, seconds: float, ready: bool) -> str:
    from kith.tenants.demo import DEMO_EMAIL, DEMO_PASSWORD

    settings = get_settings()
    state = f"ready in {seconds:.1f} s" if ready else f"still starting after {seconds:.0f} s"
    lines = ["", "=" * 72, f"  Kith is running ({state})", f"    Open:       {url}/"]
    if demo is not None:
        lines += [
            f"    Log in:     {url}/login",
            f"      email:    {DEMO_EMAIL}",
            f"      password: {DEMO_PASSWORD}",
            f"    Demo:       {url}/t/{demo.slug}/  ({demo.contacts_total} contacts)",
        ]
    if not settings.smtp_host:
        lines.append(f"    Emails:     {url}/dev/outbox  (SMTP_HOST unset: nothing is sent)")
    lines += [
        f"    Data:       {settings.data_dir} (kept across restarts; delete it to start over)",
        "    Stop:       Ctrl-C",
        "=" * 72,
        "",
    ]
    return "\n".join(lines)


def run_stack(*, host: str, port: int, workers: int, seed: bool, always_migrate: bool,
              always_worker: bool, what: str) -> int:
    """Start what is missing, migrate, seed, run web + worker until Ctrl-C or a child dies."""
    started = time.monotonic()
    settings = get_settings()
    if port_in_use(host, port):
        raise CliError(f"port {port} on {host} is already in use; stop what uses it or pass --port")
    if not os.environ.get("KITH_BASE_URL"):
        # links in emails and the Secure-cookie decision follow the port actually served
        os.environ["KITH_BASE_URL"] = _browser_url(host, port)
    # SIGTERM during start-up unwinds like Ctrl-C, so the embedded servers are stopped
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    embedded_needed = not settings.database_url or not settings.redis_url
    with ExitStack() as stack:
        if embedded_needed:
            stack.enter_context(data_dir_lock(settings, what))
        running = stack.enter_context(embedded_services())
        demo = None
        if always_migrate or running.started_postgres:
            demo = asyncio.run(_prepare(seed=seed))
            if demo is not None:
                _say(f"Demo workspace '{demo.slug}': "
                     + (f"created with {demo.contacts_total} contacts" if demo.created
                        else f"already there ({demo.contacts_total} contacts)"))
        supervisor = Supervisor(child_env())
        # unwinds before the embedded servers stop: children never outlive their database
        stack.callback(supervisor.stop_all)
        supervisor.install_signal_handlers()
        supervisor.spawn("web server", _uvicorn_argv(host, port, workers))
        if always_worker or running.started_valkey:
            # nothing outside this process can reach an embedded Valkey, so its worker runs here
            supervisor.spawn("worker", _worker_argv())
        ready = supervisor.wait_until(lambda: port_accepts(host, port), READY_TIMEOUT_SECONDS)
        if not supervisor.stop_requested and supervisor.dead_child() is None:
            _say(_banner(_browser_url(host, port), demo, time.monotonic() - started, ready))
        stop_signal, dead = supervisor.run()
        if dead is not None:
            print(f"kith: the {dead.name} {describe_exit(dead.process.returncode)}; stopping everything.",
                  file=sys.stderr, flush=True)
            supervisor.stop_all(signal.SIGTERM)
            return EXIT_FAILED
        assert stop_signal is not None
        _say(f"Stopping ({signal.Signals(stop_signal).name}) ...")
        supervisor.stop_all(stop_signal)
    return 0


def run_dev(args: argparse.Namespace) -> int:
    """`kith dev`: embedded servers when URLs are unset, migrate, seed the demo, web + worker."""
    # a developer reads these logs in a terminal; deployments keep the JSON default
    os.environ.setdefault("KITH_LOG_FORMAT", "console")
    return run_stack(host=args.host, port=args.port, workers=1, seed=True, always_migrate=True,
                     always_worker=True, what="kith dev")


def run_serve(args: argparse.Namespace) -> int:
    """`kith serve`: uvicorn on the app factory; the embedded default when URLs are unset."""
    settings = get_settings()
    if settings.database_url and settings.redis_url:
        import uvicorn

        # Production shape: uvicorn in this process (PID 1 in a container gets the signals).
        uvicorn.run(APP_FACTORY, factory=True, host=args.host, port=args.port, workers=args.workers,
                    access_log=ACCESS_LOG)
        return 0
    return run_stack(host=args.host, port=args.port, workers=args.workers, seed=False,
                     always_migrate=False, always_worker=False, what="kith serve")
