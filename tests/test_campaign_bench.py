"""The campaign benchmark's pieces: its check of the sink's record against the recipients counts
duplicates, missing and stray messages as it says, and `kith campaign-bench` runs end to end at a
tiny size and prints every figure (behaviour, not timing)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from kith.platform.db import connect_raw
from kith.tenants.bench.campaigns import Received, message_id, tally

from .conftest import Services


def _received(at: float, tenant: int, campaign: int, rid: int, to: str) -> Received:
    return Received(at, message_id(tenant, campaign, rid), f"{tenant}.{rid}", to)


def test_the_record_is_checked_against_the_recipients() -> None:
    rows = [{"id": n, "email": f"c{n}@example.com", "status": "sent"} for n in range(1, 6)]
    rows.append({"id": 6, "email": "c6@example.com", "status": "failed"})
    record = [
        _received(100.0, 7, 3, 1, "c1@example.com"),
        _received(100.5, 7, 3, 2, "c2@example.com"),
        _received(101.0, 7, 3, 2, "c2@example.com"),  # the same Message-ID again: a duplicate
        _received(109.0, 7, 3, 3, "someone.else@example.com"),  # the envelope says another address
        _received(109.5, 7, 3, 4, "c4@example.com"),
        _received(110.0, 7, 3, 6, "c6@example.com"),  # a row that failed: no message should exist
        _received(110.0, 7, 99, 5, "c5@example.com"),  # another campaign's: not counted
        _received(110.0, 8, 3, 5, "c5@example.com"),  # another workspace's: not counted
    ]
    t = tally(record, rows, tenant_id=7, campaign_id=3)
    assert (t.recipients, t.received, t.duplicates, t.missing, t.strays, t.mismatched) == (6, 6, 1, 1, 1, 1)
    assert t.statuses == {"sent": 5, "failed": 1}
    assert t.seconds == 10.0 and t.rate == 0.6
    # one silence over SILENCE_S (8 s between 101.0 and 109.0) left out of the flowing rate
    assert t.longest_silence == 8.0 and t.silent_seconds == 8.0 and t.flowing_rate == 3.0
    assert tally([], rows, 7, 3).rate == 0.0  # nothing received: no division by zero


def test_bad_options_are_refused_with_a_reason() -> None:
    for args, says in ((["--workers", "1"], "--kill-at needs at least 2 workers"),
                       (["--kill-at", "1.5"], "must be at least 0 and below 1"),
                       (["--recipients", "0"], "--recipients")):
        proc = subprocess.run(  # noqa: S603 - our own command
            [sys.executable, "-m", "kith.platform.cli.main", "campaign-bench", *args],
            env=os.environ.copy(), capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode != 0 and says in proc.stderr, (args, proc.stderr)


async def test_the_bench_command_prints_every_figure(db: Services, tmp_path: Path) -> None:
    database = f"kith_campaign_bench_t{os.getpid()}"
    work = tmp_path / "work"
    proc = subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "-m", "kith.platform.cli.main", "campaign-bench", "--recipients", "400", "--kill-at", "0",
         "--senders", "2", "--database", database, "--work-dir", str(work), "--timeout", "240"],
        env=os.environ.copy(), capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-3000:]
    # progress while running
    assert "loading 400 consenting contacts by COPY" in out and re.search(r"^ +[\d,]+/400 at the sink", out, re.M)
    assert re.search(r"campaign #\d+ started: 400 recipients frozen", out)
    for line in ("| emails per second, first to last message at the sink | ",
                 "| emails per second while messages flowed", "| longest silence at the sink",
                 "| duplicates (a Message-ID received twice) | 0 | 0: met |",
                 "| missing (sent rows the sink never saw) | 0 | 0: met |",
                 "| stray or mismatched messages | 0 / 0 | 0: met |",
                 "| recipient rows | 400: sent 400 | all sent: met |",
                 "| campaign status | sent | sent: met |",
                 "| start (checks, 400 recipients frozen, jobs queued) |",
                 "| CPU per email: workers / sink / PostgreSQL backends |",
                 "| machine CPU busy while sending", "| set-up: 400 contacts by COPY |",
                 "2 `kith worker` processes with 2 senders each", "no worker killed"):
        assert line in out, line
    assert re.search(r"\| emails per second, first to last message at the sink \| [\d,]+ \(400 in [\d.]+ s\)", out)
    assert re.search(r"Machine: \d+ cores .* RAM, PostgreSQL \d+.*load average [\d.]+ / [\d.]+ / [\d.]+ before", out)
    # the database is gone afterwards (no --keep); the work folder too when every target was met
    conn = await connect_raw(db.database_url)
    try:
        assert not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", database)
    finally:
        await conn.close()
