"""The campaign benchmark (issue 6, `kith campaign-bench`): exactly once at 100,000 recipients.

On a database created fresh for the run (the CLI does that, with Tortoise on it):
1. a workspace on the Enterprise plan with `recipients` consenting contacts loaded by COPY (one
   address each, about a third with Chinese names), a segment of them and a campaign whose
   template uses merge fields, two tracked links and the unsubscribe link;
2. an SMTP sink (aiosmtpd) in its own process, so that taking the mail does not compete for
   the measuring process's GIL, writing one line per message it accepts: when, Message-ID,
   X-Kith-Recipient and the envelope recipient;
3. `workers` real `kith worker` processes pointed at it (SMTP_HOST/SMTP_PORT, no STARTTLS) and
   the campaign started as a member starts it (`start_campaign`: recipients frozen, sending
   jobs queued);
4. when the sink has `kill_at` of the recipients' messages, the worker holding SMTP connections
   to it (the one sending) is killed with SIGKILL and a new worker started in its place;
5. once the campaign is 'sent', the sink's record is checked against the recipient rows:
   duplicates (a Message-ID received twice), missing (a recipient the sink never saw), strays
   (a message that is no recipient's), and every row's status.

Emails per second are counted at the sink, from its first message to its last, the pause after
the kill included; the rate while messages flowed and the longest silence are shown beside it.
The machine (cores, RAM, PostgreSQL), the load average and the CPU each part used per email
(workers, sink, PostgreSQL backends) are printed with the figures, so a slow run says where the
time went.

The sink is also what tests/test_campaign_exactly_once.py runs in a thread: `SinkHandler`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import asyncpg
import uvloop

from kith.platform.access.actor import Actor
from kith.platform.bench import machine
from kith.platform.config import get_settings
from kith.platform.db import connect_raw, tenant_schema
from kith.tenants.bench import vocabulary as v
from kith.tenants.bench.http import process_cpu
from kith.tenants.bench.workspace import BenchWorkspace, create_bench_workspace

# Targets of issue 6.
RATE_TARGET = 500.0  # emails per second, first to last message at the sink
SLUG = "campaign-bench"
SILENCE_S = 2.0  # a gap between two messages longer than this is a pause (the kill), not sending
SINK_FLUSH_S = 0.5  # how often the sink process writes its record out
RECORD_SEPARATOR = "\t"

Say = Callable[[str], None]


def say(message: str) -> None:
    print(message, flush=True)


# --- the SMTP sink ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Received:
    """One message the sink accepted."""

    at: float  # time.time() when its DATA was accepted
    message_id: str
    recipient: str  # the X-Kith-Recipient header: "<tenant id>.<recipient id>"
    to: str  # the envelope recipient(s), comma-separated

    def line(self) -> str:
        return RECORD_SEPARATOR.join((f"{self.at:.6f}", self.message_id, self.recipient, self.to)) + "\n"

    @classmethod
    def parse(cls, line: str) -> Received:
        at, message_id, recipient, to = line.rstrip("\n").split(RECORD_SEPARATOR)
        return cls(float(at), message_id, recipient, to)


_HEADERS = re.compile(rb"^(message-id|x-kith-recipient):[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


class SinkHandler:
    """An aiosmtpd handler that accepts every message and hands a `Received` to `on_message`;
    RCPT of an address in `refuse` is answered 550 (a mailbox that does not exist).

    Only the header block is read (two headers by a regular expression), so the sink costs far
    less per message than the sender it measures."""

    def __init__(self, on_message: Callable[[Received], None], refuse: Iterable[str] = ()) -> None:
        self.on_message = on_message
        self.refuse = {a.lower() for a in refuse}
        self.refused: list[str] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802 - aiosmtpd's name
                          rcpt_options: list[str]) -> str:
        if address.lower() in self.refuse:
            self.refused.append(address)
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        content: bytes = envelope.original_content or b""
        head = content.split(b"\r\n\r\n", 1)[0]
        found = {m.group(1).lower(): m.group(2).strip().decode("ascii", "replace") for m in _HEADERS.finditer(head)}
        self.on_message(Received(time.time(), found.get(b"message-id", ""), found.get(b"x-kith-recipient", ""),
                                 ",".join(envelope.rcpt_tos)))
        return "250 2.0.0 OK: queued"


def free_port() -> int:
    """A TCP port nothing listens on now (for a sink started later, or never)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve_sink(host: str, port: int, out: IO[str], refuse: list[str]) -> None:
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    handler = SinkHandler(lambda r: out.write(r.line()), refuse)
    server = await loop.create_server(lambda: SMTP(handler, hostname="sink.kith.test"), host, port)
    print(f"sink listening on {host}:{port}", flush=True)

    async def flush() -> None:  # the file is read while the sink runs (progress) and after it stops
        while True:
            await asyncio.sleep(SINK_FLUSH_S)
            out.flush()

    flusher = asyncio.create_task(flush())
    await stop.wait()
    flusher.cancel()
    server.close()
    out.flush()


def sink_main(argv: list[str] | None = None) -> int:
    """`python -m kith.tenants.bench.campaigns --port P --out FILE`: the sink as a process of its
    own; SIGTERM flushes the record and stops it."""
    parser = argparse.ArgumentParser(prog="campaign-bench-sink", description=sink_main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="file of one tab-separated line per message")
    parser.add_argument("--refuse", action="append", default=[], help="answer 550 to RCPT of this address")
    args = parser.parse_args(argv)
    with args.out.open("w", encoding="utf-8", buffering=1 << 20) as out:
        uvloop.run(_serve_sink(args.host, args.port, out, args.refuse))  # less CPU per message than asyncio's loop
    return 0


def read_record(path: Path) -> list[Received]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        return [Received.parse(line) for line in f if line.endswith("\n")]


@dataclass
class SinkProcess:
    proc: subprocess.Popen[bytes]
    port: int
    record: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def sink_process(record: Path, log: Path, *, refuse: Iterable[str] = ()) -> Iterator[SinkProcess]:
    """The sink in a child process on a free port, stopped (record flushed) on exit."""
    port = free_port()
    cmd = [sys.executable, "-m", "kith.tenants.bench.campaigns", "--port", str(port), "--out", str(record)]
    for address in refuse:
        cmd += ["--refuse", address]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603 - our own module
    sink = SinkProcess(proc, port, record)
    try:
        deadline = time.monotonic() + 30
        while "listening" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the SMTP sink did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        yield sink
    finally:
        sink.stop()


# --- worker processes -------------------------------------------------------------------------

def worker_env(*, database_url: str, redis_url: str, queue_name: str, smtp_port: int, senders: int,
               rate_per_minute: int | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a `kith worker` that sends campaign email to the sink on `smtp_port`:
    this process's settings (secret key, data folder) with the database, queue and SMTP server."""
    settings = get_settings()
    env = {**os.environ, "DATABASE_URL": database_url, "DATABASE_DIRECT_URL": database_url, "REDIS_URL": redis_url,
           "KITH_QUEUE_NAME": queue_name, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port),
           "SMTP_STARTTLS": "false", "KITH_CAMPAIGN_SENDERS": str(senders),
           "KITH_SECRET_KEY": settings.secret_key.reveal(), "KITH_LOG_FORMAT": "json", "KITH_LOG_LEVEL": "info",
           "PYTHONUNBUFFERED": "1"}
    for name in ("SMTP_USERNAME", "SMTP_PASSWORD", "KITH_SES_REGION", "KITH_SES_ENDPOINT_URL"):
        env.pop(name, None)
    if rate_per_minute is not None:
        env["KITH_CAMPAIGN_RATE_PER_MINUTE"] = str(rate_per_minute)
    env.update(extra or {})
    return env


@dataclass
class Worker:
    """A `kith worker` process and its log."""

    proc: subprocess.Popen[bytes]
    log: Path
    name: str
    cpu_seconds: float = 0.0  # last seen (a killed worker's CPU is what was seen before the kill)
    cpu_baseline: float | None = None  # CPU when it was ready to work (its start-up is not the campaign's)
    killed_at: float | None = None  # time.time() of its SIGKILL

    @property
    def pid(self) -> int:
        return self.proc.pid

    def started(self) -> bool:
        return '"worker_started"' in self.log.read_text(errors="replace")

    def describe(self) -> str:
        tail = self.log.read_text(errors="replace")[-3000:]
        return f"{self.name} (pid {self.pid}, exit {self.proc.poll()}); log:\n{tail}"

    def sample_cpu(self) -> None:
        cpu = process_cpu(self.pid)
        if cpu is not None:
            self.cpu_seconds = cpu
            if self.cpu_baseline is None and self.started():
                self.cpu_baseline = cpu

    @property
    def campaign_cpu(self) -> float:
        """CPU seconds since it was ready to work."""
        return self.cpu_seconds - (self.cpu_baseline if self.cpu_baseline is not None else self.cpu_seconds)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, as an orchestrator stops it (running jobs get a few seconds)."""
        if self.proc.poll() is None:
            self.sample_cpu()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as when the machine or the OOM killer takes it."""
        self.sample_cpu()
        self.killed_at = time.time()
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait()


def start_worker(env: dict[str, str], log: Path, name: str) -> Worker:
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "-m", "kith.platform.cli.main", "worker"], env=env, stdout=out,
            stderr=subprocess.STDOUT)
    return Worker(proc, log, name)


def wait_started(workers: Iterable[Worker], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for worker in workers:
        while not worker.started():
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start: {worker.describe()}")
            time.sleep(0.1)


# --- /proc: who holds SMTP connections, how much CPU -------------------------------------------

def _sockets_to(port: int) -> set[str]:
    """Inodes of established TCP sockets whose remote end is `port` on this host."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "01" and int(parts[2].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    return inodes


def smtp_connections(pid: int, port: int) -> int:
    """How many established connections process `pid` holds to the SMTP server on `port`: a
    worker holding some is the one sending the campaign."""
    inodes = _sockets_to(port)
    held = 0
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return 0
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held += 1
    return held


class BackendCpu:
    """CPU of the database backends serving the benchmark database, others' connections and
    ours left out; a backend that ends (a killed worker's) keeps what it was last seen using."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.seen: dict[int, float] = {}
        self.start: dict[int, float] = {}
        self.sampled = False

    async def sample(self) -> None:
        """Read the backends' CPU now; the first call sets the baseline, and a backend that
        appears later (a new worker's connection) counts from zero."""
        rows = await self.conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                                     " AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
        for row in rows:
            pid = int(row["pid"])
            cpu = process_cpu(pid)
            if cpu is not None:
                self.start.setdefault(pid, 0.0 if self.sampled else cpu)
                self.seen[pid] = cpu
        self.sampled = True

    @property
    def seconds(self) -> float:
        return sum(cpu - self.start.get(pid, 0.0) for pid, cpu in self.seen.items())


# --- what the sink received against the recipients ---------------------------------------------

@dataclass
class Tally:
    """The sink's record checked against the campaign's recipient rows."""

    recipients: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    received: int = 0  # messages of this campaign at the sink
    duplicates: int = 0  # messages beyond the first with the same Message-ID
    missing: int = 0  # recipients marked sent whose Message-ID the sink never saw
    strays: int = 0  # messages of this campaign that are no sent recipient's
    mismatched: int = 0  # Message-ID, X-Kith-Recipient and envelope recipient disagree
    first_at: float = 0.0
    last_at: float = 0.0
    longest_silence: float = 0.0
    silent_seconds: float = 0.0  # gaps longer than SILENCE_S, summed

    @property
    def seconds(self) -> float:
        return self.last_at - self.first_at

    @property
    def rate(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else 0.0

    @property
    def flowing_rate(self) -> float:
        flowing = self.seconds - self.silent_seconds
        return self.received / flowing if flowing > 0 else 0.0


def message_id(tenant_id: int, campaign_id: int, recipient_id: int) -> str:
    """The Message-ID the engine gives a recipient's email (sending.py)."""
    return f"<c{campaign_id}.r{recipient_id}.t{tenant_id}@kith>"


def tally(received: list[Received], rows: list[asyncpg.Record] | list[dict[str, Any]], tenant_id: int,
          campaign_id: int) -> Tally:
    """Check the sink's record against the recipient rows (id, email, status)."""
    prefix, suffix = f"<c{campaign_id}.r", f".t{tenant_id}@kith>"
    ours = [r for r in received if r.message_id.startswith(prefix) and r.message_id.endswith(suffix)]
    counts = Counter(r.message_id for r in ours)
    expected = {message_id(tenant_id, campaign_id, int(row["id"])): row for row in rows if row["status"] == "sent"}
    t = Tally(recipients=len(rows), statuses=dict(Counter(str(row["status"]) for row in rows)), received=len(ours))
    t.duplicates = sum(n - 1 for n in counts.values())
    t.missing = sum(1 for mid in expected if mid not in counts)
    t.strays = sum(1 for mid in counts if mid not in expected)
    for r in ours:
        row = expected.get(r.message_id)
        if row is not None and (r.recipient != f"{tenant_id}.{row['id']}" or r.to.lower() != str(row["email"]).lower()):
            t.mismatched += 1
    times = sorted(r.at for r in ours)
    if times:
        t.first_at, t.last_at = times[0], times[-1]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        t.longest_silence = max(gaps, default=0.0)
        t.silent_seconds = sum(g for g in gaps if g > SILENCE_S)
    return t


# --- the benchmark's data ---------------------------------------------------------------------

SUBJECT = "{{ first_name | default('朋友') }}，双十一特惠 / Our Singles' Day offer"
HTML_BODY = """<!doctype html>
<html><body style="font-family: sans-serif">
<h1>你好 {{ first_name | default('朋友') }}，</h1>
<p>Dear {{ name | default('customer') }}, thank you for being a customer of {{ workspace_name }}.
This week only, everything in our catalogue is 20% off (折扣 8 折), shipping included.</p>
<p>{% if company_name %}Your colleagues at {{ company_name }} can use the same code.{% endif %}
Your code: <strong>KITH-1111</strong>.</p>
<p><a href="https://shop.example.com/sale?utm_source=kith">看看特惠 / See the offer</a> ·
<a href="https://shop.example.com/account">Your account</a></p>
<p style="color: #666; font-size: 12px">You receive this because you agreed to hear from us.
<a href="{{ unsubscribe_url }}">Unsubscribe / 退订</a></p>
</body></html>
"""
TEXT_BODY = """你好 {{ first_name | default('朋友') }}，

Dear {{ name | default('customer') }}, thank you for being a customer of {{ workspace_name }}.
This week only, everything in our catalogue is 20% off, shipping included. Code: KITH-1111.

See the offer: https://shop.example.com/sale?utm_source=kith

Unsubscribe / 退订: {{ unsubscribe_url }}
"""
CONTACT_COLUMNS = ("name", "email", "marketing_consent", "lifecycle_stage", "title", "company_name", "source",
                   "owner_id", "created_by_id")


def contact_rows(first: int, count: int, owner_id: int) -> list[tuple[Any, ...]]:
    """`count` consenting customers numbered from `first`: one address each, a third Chinese names."""
    rows = []
    for n in range(first, first + count):
        if n % 3 == 0:
            surname, surname_py = v.CN_SURNAMES[n % len(v.CN_SURNAMES)]
            given, given_py = v.CN_GIVEN[(n // 3) % len(v.CN_GIVEN)]
            name, user, company = surname + given, f"{surname_py}.{given_py}", "星辰贸易有限公司"
        else:
            first_name = v.WEST_FIRST[n % len(v.WEST_FIRST)]
            last_name = v.WEST_LAST[(n // 7) % len(v.WEST_LAST)]
            name, company = f"{first_name} {last_name}", "Northwind Traders" if n % 2 else ""
            user = re.sub(r"[^a-z.]", "", f"{first_name}.{last_name}".lower()).strip(".") or "person"
        rows.append((name, f"{user}.{n}@mail{n % 50}.example", "granted", "customer", "", company, "campaign-bench",
                     owner_id, owner_id))
    return rows


async def load_contacts(conn: asyncpg.Connection, workspace: BenchWorkspace, count: int, *, batch: int = 50_000,
                        progress: Say = say) -> float:
    """COPY `count` consenting contacts into the workspace; seconds taken (VACUUM ANALYZE included)."""
    schema = tenant_schema(workspace.tenant_id)
    started = time.perf_counter()
    await conn.execute("SET synchronous_commit = off")
    for first in range(0, count, batch):
        rows = contact_rows(first, min(batch, count - first), workspace.owner_id)
        await conn.copy_records_to_table("contacts", records=rows, columns=list(CONTACT_COLUMNS), schema_name=schema)
        done = first + len(rows)
        progress(f"  contacts {done:>9,}/{count:,} ({done / (time.perf_counter() - started):,.0f} rows/s)")
    await conn.execute(f"VACUUM (ANALYZE) {schema}.contacts")
    await conn.execute("SET synchronous_commit = on")
    return time.perf_counter() - started


async def create_bench_campaign(workspace: BenchWorkspace) -> int:
    """A segment of every customer and a draft campaign to it, made through the product's actions."""
    from kith.tenants.campaigns.campaigns import CampaignIn, create_campaign
    from kith.tenants.campaigns.segments import SegmentDefinition, SegmentIn, create_segment

    owner = Actor(kind="user", tenant_id=workspace.tenant_id, role="owner", identity_id=workspace.owner_id,
                  label=workspace.owner_email)
    segment = await create_segment(owner, SegmentIn(
        name="Customers who agreed to email",
        definition=SegmentDefinition(filters=["lifecycle_stage:eq:customer", "marketing_consent:eq:granted"])))
    campaign = await create_campaign(owner, CampaignIn(
        name="双十一 campaign bench", segment_id=segment["id"], subject=SUBJECT, html_body=HTML_BODY,
        text_body=TEXT_BODY, from_name="星辰贸易 Newsletter", from_email=f"news@{workspace.slug}.example.com",
        reply_to=f"sales@{workspace.slug}.example.com"))
    return int(campaign["id"])


def owner_actor(workspace: BenchWorkspace) -> Actor:
    return Actor(kind="user", tenant_id=workspace.tenant_id, role="owner", identity_id=workspace.owner_id,
                 label=workspace.owner_email)


# --- the run ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CampaignBenchOptions:
    recipients: int = 100_000
    workers: int = 2
    senders: int = 8  # KITH_CAMPAIGN_SENDERS of each worker
    kill_at: float = 0.5  # share of recipients sent when a worker is killed (0: no kill)
    rate_per_minute: int = 6_000_000  # far above what 2 cores send: the measure is the engine's
    work_dir: Path = Path("test-artifacts/campaign-bench")
    keep_files: bool = False
    timeout_s: float = 1800.0


@dataclass
class Figures:
    options: CampaignBenchOptions
    machine: dict[str, str] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    contacts_seconds: float = 0.0
    start_seconds: float = 0.0  # start_campaign: checks, recipients frozen, jobs queued
    sending_seconds: float = 0.0  # start_campaign returned -> campaign 'sent'
    status: str = ""
    paused_reason: str = ""
    killed_at_received: int = 0
    killed_connections: int = 0
    killed_name: str = ""
    resumed_after_s: float = 0.0  # kill -> the next message at the sink
    tally: Tally = field(default_factory=Tally)
    worker_cpu_s: float = 0.0
    sink_cpu_s: float = 0.0
    db_cpu_s: float = 0.0
    machine_busy: float = 0.0  # share of all cores busy while sending (everything on the machine)
    worker_logs: list[str] = field(default_factory=list)

    def missed(self) -> list[str]:
        t = self.tally
        found = []
        if self.status != "sent":
            found.append(f"the campaign ended {self.status or 'unfinished'}"
                         + (f": {self.paused_reason}" if self.paused_reason else ""))
        if t.rate < RATE_TARGET:
            found.append(f"{t.rate:,.0f} emails/s (target at least {RATE_TARGET:,.0f})")
        if t.duplicates:
            found.append(f"{t.duplicates:,} duplicates (target 0)")
        if t.missing:
            found.append(f"{t.missing:,} missing (target 0)")
        if t.strays or t.mismatched:
            found.append(f"{t.strays:,} stray and {t.mismatched:,} mismatched messages")
        if t.statuses.get("sent", 0) != t.recipients:
            found.append(f"recipient rows not all sent: {t.statuses}")
        return found


def _machine_ticks() -> tuple[int, int]:
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


async def _campaign_status(conn: asyncpg.Connection, schema: str, campaign_id: int) -> tuple[str, str, int]:
    row = await conn.fetchrow(f"SELECT status, paused_reason, recipients_total FROM {schema}.campaigns"  # noqa: S608
                              " WHERE id = $1", campaign_id)
    assert row is not None  # noqa: S101 - the campaign was created by this run
    return str(row["status"]), str(row["paused_reason"]), int(row["recipients_total"])


class RecordCounter:
    """Messages in the sink's record so far, read incrementally: the run's progress costs a read
    of the new bytes, not a count over the recipient rows that would compete with the senders."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.count = 0

    def read(self) -> int:
        if self.path.exists():
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
            complete = chunk.rfind(b"\n") + 1  # a line being written is counted next time
            self.count += chunk.count(b"\n", 0, complete)
            self.offset += complete
        return self.count


async def run_campaign_bench(url: str, where: str, options: CampaignBenchOptions, progress: Say = say) -> Figures:
    """The whole benchmark on the fresh database at `url`; prints progress and the figures."""
    from kith.jobs.queue import close_queue, get_queue
    from kith.tenants.campaigns.campaigns import start_campaign

    figures = Figures(options)
    work = options.work_dir
    if work.exists():
        for old in work.iterdir():
            old.unlink()
    work.mkdir(parents=True, exist_ok=True)
    settings = get_settings()
    conn = await connect_raw(url)
    workers: list[Worker] = []
    try:
        figures.machine = await machine(conn, where)
        figures.load_before = os.getloadavg()
        progress(f"load average {figures.load_before[0]:.2f} {figures.load_before[1]:.2f} "
                 f"{figures.load_before[2]:.2f} on {figures.machine['cpus']} cores")
        progress(f"creating workspace '{SLUG}' (signup, Enterprise plan) ...")
        workspace, _ = await create_bench_workspace(SLUG, members=1)
        schema = tenant_schema(workspace.tenant_id)
        progress(f"loading {options.recipients:,} consenting contacts by COPY ...")
        figures.contacts_seconds = await load_contacts(conn, workspace, options.recipients, progress=progress)
        campaign_id = await create_bench_campaign(workspace)
        record = work / "sink.tsv"
        with sink_process(record, work / "sink.log") as sink:
            env = worker_env(database_url=url, redis_url=settings.redis_url, queue_name=settings.queue_name,
                             smtp_port=sink.port, senders=options.senders, rate_per_minute=options.rate_per_minute)
            progress(f"SMTP sink on 127.0.0.1:{sink.port} (pid {sink.proc.pid}); starting {options.workers} "
                     f"`kith worker` processes, {options.senders} senders each ...")
            workers = [start_worker(env, work / f"worker-{n + 1}.log", f"worker {n + 1}")
                       for n in range(options.workers)]
            await asyncio.to_thread(wait_started, workers)
            for w in workers:
                w.sample_cpu()  # the baseline: what starting up cost is left out
            backends = BackendCpu(conn)
            await backends.sample()
            sink_cpu_before = process_cpu(sink.proc.pid) or 0.0
            busy_before = _machine_ticks()
            started = time.perf_counter()
            await start_campaign(owner_actor(workspace), campaign_id)
            figures.start_seconds = time.perf_counter() - started
            progress(f"campaign #{campaign_id} started: {options.recipients:,} recipients frozen and sending jobs "
                     f"queued in {figures.start_seconds:.1f} s")
            await _watch(conn, schema, campaign_id, options, figures, workers, sink, env, backends, progress)
            figures.sending_seconds = time.perf_counter() - started - figures.start_seconds
            busy_after = _machine_ticks()
            figures.machine_busy = ((busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1]))
            await backends.sample()
            figures.db_cpu_s = backends.seconds
            figures.sink_cpu_s = (process_cpu(sink.proc.pid) or 0.0) - sink_cpu_before
            for w in workers:
                w.stop()
            figures.worker_cpu_s = sum(w.campaign_cpu for w in workers)
        figures.load_after = os.getloadavg()
        rows = await conn.fetch(f"SELECT id, email, status FROM {schema}.campaign_recipients"  # noqa: S608
                                " WHERE campaign_id = $1", campaign_id)
        figures.tally = tally(read_record(record), list(rows), workspace.tenant_id, campaign_id)
        if figures.killed_name:
            killed = next(w for w in workers if w.name == figures.killed_name)
            figures.resumed_after_s = _resumed_after(read_record(record), killed)
        figures.worker_logs = [str(w.log) for w in workers]
    finally:
        for w in workers:
            w.stop()
        await conn.close()
        if "campaign-bench" in settings.queue_name:
            # the killed worker's jobs stay queued for ever in the run's own queue: drop it
            await (await get_queue()).delete(settings.queue_name)
        await close_queue()
    print_figures(figures, progress)
    if not options.keep_files and not figures.missed():
        for old in work.iterdir():
            old.unlink()
        work.rmdir()
    return figures


def _resumed_after(received: list[Received], killed: Worker) -> float:
    """Seconds from the kill to the first message after it."""
    if killed.killed_at is None:
        return 0.0
    at = killed.killed_at
    later = [r.at for r in received if r.at > at]
    return min(later) - at if later else 0.0


async def _watch(conn: asyncpg.Connection, schema: str, campaign_id: int, options: CampaignBenchOptions,
                 figures: Figures, workers: list[Worker], sink: SinkProcess, env: dict[str, str],
                 backends: BackendCpu, progress: Say) -> None:
    """Follow the campaign until it is sent (or paused, or the timeout): kill a worker when the
    sink has `kill_at` of the recipients and start a new one in its place."""
    deadline = time.monotonic() + options.timeout_s
    started = last_print = time.monotonic()
    killed = options.kill_at <= 0
    received = RecordCounter(sink.record)
    last_count = 0
    while True:
        status, reason, total = await _campaign_status(conn, schema, campaign_id)
        if status != "sending":
            await asyncio.sleep(SINK_FLUSH_S * 2)  # the sink's last messages reach its record
        count = received.read()
        now = time.monotonic()
        for w in workers:
            if w.proc.poll() is None:
                w.sample_cpu()
        if now - last_print >= 5 or status != "sending":
            await backends.sample()
            rate = (count - last_count) / max(now - last_print, 1e-9)
            progress(f"  {count:>9,}/{total:,} at the sink ({rate:,.0f}/s over the last {now - last_print:.0f} s, "
                     f"{now - started:.0f} s in, load {os.getloadavg()[0]:.2f})")
            last_print, last_count = now, count
        if status != "sending":
            figures.status, figures.paused_reason = status, reason
            return
        if not killed and count >= total * options.kill_at:
            killed = True
            alive = [w for w in workers if w.proc.poll() is None]
            holding = {w.name: smtp_connections(w.pid, sink.port) for w in alive}
            victim = max(alive, key=lambda w: holding[w.name])
            victim.kill()
            figures.killed_at_received, figures.killed_name = count, victim.name
            figures.killed_connections = holding[victim.name]
            progress(f"  SIGKILL {victim.name} (pid {victim.pid}, {holding[victim.name]} SMTP connections; "
                     f"others: {', '.join(f'{k} {n}' for k, n in holding.items() if k != victim.name) or 'none'})"
                     f" at {count:,} at the sink; starting worker {len(workers) + 1} ...")
            fresh = start_worker(env, victim.log.with_name(f"worker-{len(workers) + 1}.log"),
                                 f"worker {len(workers) + 1}")
            workers.append(fresh)
        if time.monotonic() > deadline:
            figures.status, figures.paused_reason = status, f"still {status} after {options.timeout_s:.0f} s"
            return
        await asyncio.sleep(0.5)


def print_figures(f: Figures, progress: Say = say) -> None:
    """The README-ready table, each target met or missed, with the machine and its load."""
    t, o, m = f.tally, f.options, f.machine
    sent = max(1, t.received)

    def mark(ok: bool) -> str:
        return "met" if ok else "**MISSED**"

    progress("")
    progress(f"Machine: {m.get('cpus')} cores ({m.get('cpu')}), {m.get('memory')} RAM, {m.get('postgres')}, "
             f"Python {m.get('python')}; load average {f.load_before[0]:.2f} / {f.load_before[1]:.2f} / "
             f"{f.load_before[2]:.2f} before, {f.load_after[0]:.2f} / {f.load_after[1]:.2f} / "
             f"{f.load_after[2]:.2f} after (1 / 5 / 15 min)")
    progress(f"Run: {o.recipients:,} recipients, {o.workers} `kith worker` processes with {o.senders} senders "
             f"each, aiosmtpd sink in its own process, rate limit {o.rate_per_minute:,}/min; "
             + (f"{f.killed_name} killed with SIGKILL when the sink had {f.killed_at_received:,} "
                f"({f.killed_connections} SMTP connections), a new worker started" if f.killed_name
                else "no worker killed"))
    progress("")
    progress("| what | figure | target |")
    progress("| --- | --- | --- |")
    progress(f"| emails per second, first to last message at the sink | {t.rate:,.0f} ({t.received:,} in "
             f"{t.seconds:.1f} s) | at least {RATE_TARGET:,.0f}: {mark(t.rate >= RATE_TARGET)} |")
    progress(f"| emails per second while messages flowed (silences over {SILENCE_S:g} s left out) | "
             f"{t.flowing_rate:,.0f} | |")
    progress(f"| longest silence at the sink (the kill and the take-over) | {t.longest_silence:.1f} s | |")
    if f.killed_name:
        progress(f"| from the SIGKILL to the next message | {f.resumed_after_s:.1f} s | |")
    progress(f"| duplicates (a Message-ID received twice) | {t.duplicates:,} | 0: {mark(t.duplicates == 0)} |")
    progress(f"| missing (sent rows the sink never saw) | {t.missing:,} | 0: {mark(t.missing == 0)} |")
    progress(f"| stray or mismatched messages | {t.strays:,} / {t.mismatched:,} | 0: "
             f"{mark(t.strays == 0 and t.mismatched == 0)} |")
    statuses = ", ".join(f"{k} {n:,}" for k, n in sorted(t.statuses.items()))
    progress(f"| recipient rows | {t.recipients:,}: {statuses} | all sent: "
             f"{mark(t.statuses.get('sent', 0) == t.recipients)} |")
    progress(f"| campaign status | {f.status} | sent: {mark(f.status == 'sent')} |")
    progress(f"| start (checks, {o.recipients:,} recipients frozen, jobs queued) | {f.start_seconds:.1f} s | |")
    progress(f"| CPU per email: workers / sink / PostgreSQL backends | {f.worker_cpu_s * 1000 / sent:.2f} / "
             f"{f.sink_cpu_s * 1000 / sent:.2f} / {f.db_cpu_s * 1000 / sent:.2f} ms | |")
    progress(f"| machine CPU busy while sending (every process) | {f.machine_busy:.0%} of {m.get('cpus')} cores | |")
    progress(f"| set-up: {o.recipients:,} contacts by COPY | {f.contacts_seconds:.1f} s | |")
    missed = f.missed()
    progress("\nTargets missed:\n" + "\n".join(f"- {x}" for x in missed) if missed else "\nAll targets met.")
    if f.worker_logs and missed:
        progress("Worker logs: " + ", ".join(f.worker_logs))
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(sink_main())
