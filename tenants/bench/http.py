"""Measuring the CRM over HTTP: the real web server (`kith serve`), an API token, httpx.

For each endpoint a fixed number of requests is sent by `concurrency` concurrent clients after
a short warm-up; the figures are latency percentiles, requests per second and the CPU time
each part spent per request (the web server's processes, the database backends serving them,
and this client), read from /proc, so a missed target shows whether Python or PostgreSQL is
where the time goes. An endpoint answering 404 or 405 to its first request is reported as
"missing" and the others are still measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from kith.platform.bench import percentile

API = "/api/v1"
# global search: 2-character Chinese names (no trigram fits in them), longer Chinese company words,
# email and phone fragments, Western names and company words
SEARCH_QUERIES: tuple[str, ...] = (
    "张伟", "王芳", "李娜", "星辰", "北京星辰", "华信咨询", "上海云图", "zhang.wei", "wang.fang@", "qinghe-ec",
    "Northwind", "Carter", "emily.carter", "Contoso Analytics", "138 0013", "415-555",
)
LIST_FILTERED = f"{API}/contacts?f=lifecycle_stage:eq:customer&sort=name&limit=25"


@dataclass(frozen=True)
class Target:
    """One endpoint to measure: `paths` are requested in turn (cycled)."""

    key: str
    label: str
    paths: tuple[str, ...]
    requests: int
    p95_target_ms: float | None = None
    rps_target: float | None = None


@dataclass
class Figures:
    key: str
    label: str
    missing: bool = False
    note: str = ""
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    server_cpu_s: float | None = None
    db_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    machine_busy: float | None = None  # share of all the machine's CPU time in use during the run
    p95_target_ms: float | None = None
    rps_target: float | None = None

    def pct(self, p: float) -> float:
        return percentile(self.latencies_ms, p) if self.latencies_ms else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    def per_request_ms(self, seconds: float | None) -> str:
        return f"{seconds * 1000 / self.requests:.2f}" if seconds is not None and self.requests else "?"

    def missed(self) -> list[str]:
        """The targets this endpoint missed, in words (an endpoint that is missing misses them all)."""
        if self.missing:
            return [f"{self.label}: missing"] if self.p95_target_ms or self.rps_target else []
        out = []
        if self.p95_target_ms is not None and self.pct(95) >= self.p95_target_ms:
            out.append(f"{self.label}: p95 {self.pct(95):.1f} ms >= {self.p95_target_ms:.0f} ms")
        if self.rps_target is not None and self.rps < self.rps_target:
            out.append(f"{self.label}: {self.rps:.0f} requests/s < {self.rps_target:.0f}")
        if self.ok < self.requests:
            out.append(f"{self.label}: {self.requests - self.ok} of {self.requests} requests failed "
                       f"({dict(self.statuses)})")
        return out


def default_targets(contact_ids: tuple[int, int], *, requests: int = 2000, seed: int = 1) -> list[Target]:
    """The issue's endpoints: list with a filter and a sort (and the plain list with `q`, which works
    before the list engine does), global search, a contact's 360 and the pipeline board, plus
    GET /me as the floor: an authenticated request that reads no CRM data."""
    rnd = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
    low, high = contact_ids
    overview = tuple(f"{API}/contacts/{rnd.randint(low, high)}/overview" for _ in range(max(1, requests // 2)))
    return [
        Target("me", "GET /me (auth floor)", (f"{API}/me",), requests),
        Target("list", "contact list, filter + sort", (LIST_FILTERED,), requests, 50.0, 500.0),
        Target("list_q", "contact list, q=", tuple(f"{API}/contacts?q={quote(q)}&limit=25" for q in
                                                   ("张伟", "Carter", "星辰", "zhang.wei")), requests // 2),
        Target("search", "global search", tuple(f"{API}/search?q={quote(q)}" for q in SEARCH_QUERIES),
               requests // 2, 100.0),
        Target("overview", "contact 360", overview, requests // 2, 100.0),
        Target("board", "pipeline board", (f"{API}/deals/board",), max(50, requests // 10)),
    ]


# --- CPU accounting from /proc -------------------------------------------------------------------


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of one process, or None when it is gone or unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (the uvicorn master and its worker processes)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    return tree


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def _cpu_of(pids: list[int]) -> dict[int, float]:
    return {pid: cpu for pid in pids if (cpu := process_cpu(pid)) is not None}


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    # a process that appeared during the run (a new pool connection) counts from zero
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


class CpuProbe:
    """CPU used by the web server's processes and by the database backends of its connections."""

    def __init__(self, server_pid: int | None, db_pids: Any) -> None:
        self.server_pid = server_pid
        self.db_pids = db_pids  # async () -> list[int]: backends of the benchmark database, ours left out

    async def snapshot(self) -> tuple[dict[int, float] | None, dict[int, float], tuple[int, int], float]:
        server = _cpu_of(process_tree(self.server_pid)) if self.server_pid else None
        db = _cpu_of(await self.db_pids())
        return server, db, _machine_ticks(), time.process_time()


# --- running requests ----------------------------------------------------------------------------


class _Connection:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads whole answers.

    The load comes from this machine's own cores, so the client must cost far less than the
    server: httpx spent about 3 ms of CPU per request here, as much as the server itself, which
    made the client the bottleneck. This reads the status line, the headers and a
    Content-Length (or chunked) body, and nothing else."""

    def __init__(self, base_url: str, token: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = f"Host: {parts.netloc}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\n{self.head}".encode())
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, chunked, closing = 0, False, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                closing = True
        if chunked:
            while (size := int((await self.reader.readline()).split(b";")[0], 16)) > 0:
                await self.reader.readexactly(size + 2)
            await self.reader.readline()
        elif length:
            await self.reader.readexactly(length)
        if closing:
            await self.close()
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def _fire(connections: list[_Connection], paths: tuple[str, ...], count: int, figures: Figures | None) -> None:
    cursor = 0

    async def one_client(connection: _Connection) -> None:
        nonlocal cursor
        while cursor < count:
            path = paths[cursor % len(paths)]
            cursor += 1
            started = time.perf_counter()
            status = await connection.get(path)
            if figures is not None:
                figures.latencies_ms.append((time.perf_counter() - started) * 1000)
                figures.statuses[status] += 1

    await asyncio.gather(*(one_client(c) for c in connections))


def _probe_note(target: Target, response: httpx.Response) -> str:
    """What the first answer says about the endpoint: '' when it looks as asked for."""
    if target.key != "list" or response.status_code != 200:
        return ""
    try:
        items = response.json().get("items", [])
    except ValueError:
        return "the answer is not JSON"
    stages = {item.get("lifecycle_stage") for item in items}
    if items and stages != {"customer"}:
        return "the filter was not applied (the endpoint ignores f=/sort=): measured as the plain newest-first list"
    return ""


async def measure_target(client: httpx.AsyncClient, connections: list[_Connection], target: Target,
                         probe: CpuProbe, *, warmup: int) -> Figures:
    """Warm up, then send `target.requests` requests with `concurrency` clients and time them."""
    figures = Figures(target.key, target.label, p95_target_ms=target.p95_target_ms, rps_target=target.rps_target)
    first = await client.get(target.paths[0])
    if first.status_code in (404, 405):
        figures.missing = True
        figures.note = f"answers {first.status_code} ({first.text[:120].strip()})"
        return figures
    figures.note = _probe_note(target, first)
    if first.status_code >= 400:
        figures.note = f"first answer {first.status_code}: {first.text[:160].strip()}"
    await _fire(connections, target.paths, warmup, None)
    server0, db0, ticks0, client0 = await probe.snapshot()
    started = time.perf_counter()
    await _fire(connections, target.paths, target.requests, figures)
    figures.seconds = time.perf_counter() - started
    server1, db1, ticks1, client1 = await probe.snapshot()
    figures.requests = len(figures.latencies_ms)
    figures.client_cpu_s = client1 - client0
    if server0 is not None and server1 is not None:
        figures.server_cpu_s = _spent(server0, server1)
    figures.db_cpu_s = _spent(db0, db1) if db1 else None
    if ticks1[1] > ticks0[1]:
        figures.machine_busy = (ticks1[0] - ticks0[0]) / (ticks1[1] - ticks0[1])
    return figures


async def measure_all(base_url: str, token: str, targets: list[Target], probe: CpuProbe, *,
                      concurrency: int = 16, warmup: int = 50, progress: Any = print) -> list[Figures]:
    """Measure each target in turn against the server at `base_url` with the Bearer `token`."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    results: list[Figures] = []
    connections = [_Connection(base_url, token) for _ in range(concurrency)]
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"},
                                 limits=limits, timeout=60.0) as client:
        for target in targets:
            progress(f"measuring {target.label}: {target.requests:,} requests, {concurrency} at a time ...")
            figures = await measure_target(client, connections, target, probe, warmup=warmup)
            if figures.missing:
                progress(f"  missing: {figures.note}")
            else:
                progress(f"  p50 {figures.pct(50):.1f} ms, p95 {figures.pct(95):.1f} ms, {figures.rps:,.0f} req/s"
                         + (f"; note: {figures.note}" if figures.note else ""))
            results.append(figures)
    for connection in connections:
        await connection.close()
    return results


# --- the web server --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    base_url: str
    pid: int


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def web_server(*, workers: int, log_path: Path, env: dict[str, str], port: int | None = None,
               ready_timeout: float = 60.0) -> Iterator[Server]:
    """Run `kith serve --workers N` (uvicorn, as in production) until the block ends."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "kith.platform.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env={**os.environ, "KITH_BASE_URL": base, **env},  # noqa: S603
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"kith serve exited with {proc.returncode}; see {log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kith serve was not ready within {ready_timeout:.0f} s; see {log_path}")
                time.sleep(0.3)
            yield Server(base, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- the summary -----------------------------------------------------------------------------------


def summary_table(results: list[Figures]) -> str:
    """A markdown table of the figures, ready for README."""
    lines = [
        "| endpoint | requests | ok | p50 ms | p95 ms | p99 ms | req/s | target | met | server CPU ms/req"
        " | DB CPU ms/req | client CPU ms/req |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |",
    ]
    for f in results:
        goals = []
        if f.p95_target_ms is not None:
            goals.append(f"p95 < {f.p95_target_ms:.0f} ms")
        if f.rps_target is not None:
            goals.append(f">= {f.rps_target:.0f} req/s")
        target = ", ".join(goals) or "-"
        if f.missing:
            lines.append(f"| {f.label} | - | - | - | - | - | - | {target} | missing | - | - | - |")
            continue
        met = "-" if not goals else ("no" if f.missed() else "yes")
        lines.append(
            f"| {f.label} | {f.requests:,} | {f.ok:,} | {f.pct(50):.1f} | {f.pct(95):.1f} | {f.pct(99):.1f}"
            f" | {f.rps:,.0f} | {target} | {met} | {f.per_request_ms(f.server_cpu_s)}"
            f" | {f.per_request_ms(f.db_cpu_s)} | {f.per_request_ms(f.client_cpu_s)} |")
    return "\n".join(lines)
