"""Tenant jobs through a real arq worker process, real Redis/Valkey and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from arq.jobs import Job

from kith.jobs.queue import close_queue, enqueue_tenant_job, enqueue_welcome_email, get_queue, queued_job_id
from kith.platform.config import get_settings
from kith.platform.db import platform_tx, tenant_scope
from kith.platform.email.models import OutboxEmail
from kith.tenants.contacts.models import Contact

from .conftest import Services, Workspace, make_workspace

T = TypeVar("T")


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def describe(self) -> str:
        return f"worker exit code {self.proc.poll()}; log:\n{self.log_path.read_text()[-4000:]}"


@pytest.fixture(scope="module")
async def worker(db: Services) -> AsyncIterator[WorkerProcess]:
    """`kith worker` as production runs it: its own process, configured from the environment."""
    log_path = db.data_dir / f"worker-{os.getpid()}.log"
    env = {**os.environ, "KITH_LOG_LEVEL": "info", "KITH_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from kith.jobs.worker import run_worker; run_worker()"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    worker = WorkerProcess(proc, log_path)
    try:
        yield worker
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        await close_queue()
    assert proc.returncode == 0, worker.describe()
    assert any(line.get("event") == "worker_stopped" for line in worker.log_lines()), worker.describe()


async def eventually(
    worker: WorkerProcess, probe: Callable[[], Awaitable[T | None]], timeout: float = 20
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value is not None:
            return value
        assert worker.proc.poll() is None, worker.describe()
        assert time.monotonic() < deadline, f"timed out; {worker.describe()}"
        await asyncio.sleep(0.1)


async def job_result(worker: WorkerProcess, job: Job | None) -> Any:
    assert job is not None
    try:
        return await job.result(timeout=20, poll_delay=0.1)
    except TimeoutError:
        pytest.fail(f"job {job.job_id} did not finish; {worker.describe()}")


def contact_count(body: str) -> int:
    match = re.search(r"\bhas (\d+) contacts?\b", body)
    assert match, body
    return int(match.group(1))


async def test_welcome_email_lands_in_outbox_once(worker: WorkerProcess, workspace: Workspace) -> None:
    ws = workspace
    key = f"welcome:{ws.tenant_id}:{ws.identity_id}"
    await enqueue_welcome_email(ws.tenant_id, ws.identity_id)
    await enqueue_welcome_email(ws.tenant_id, ws.identity_id)  # dropped by arq: same job id

    async def delivered() -> OutboxEmail | None:
        return await OutboxEmail.filter(dedupe_key=key, status="outbox").first()

    row = await eventually(worker, delivered)
    assert row.tenant_id == ws.tenant_id  # type: ignore[attr-defined]
    assert (row.kind, row.to_address) == ("welcome", ws.email)
    assert ws.name in row.subject and f'"{ws.name}"' in row.body_text
    assert f"{get_settings().base_url}/t/{ws.slug}/contacts" in row.body_text
    assert contact_count(row.body_text) == 0

    # the job's own queue: arq's Job defaults to "arq:queue", where it is never found, so a result
    # not stored yet (the outbox row commits first) would read as "not queued" instead of waited for
    first = Job(queued_job_id(key), await get_queue(), _queue_name=get_settings().queue_name)
    assert await job_result(worker, first) == f"email {row.id}: outbox"

    # arq may run a job twice; a second run with another id (so arq cannot drop it) must
    # find the email delivered and send nothing.
    again = await enqueue_tenant_job("welcome_email", ws.tenant_id, ws.identity_id, job_id=f"{key}:again")
    assert await job_result(worker, again) == f"email {row.id}: already outbox"
    rows = await OutboxEmail.filter(tenant_id=ws.tenant_id)
    assert [(r.id, r.status, r.sent_at) for r in rows] == [(row.id, "outbox", row.sent_at)]


async def test_job_for_suspended_or_missing_tenant_does_nothing(
    worker: WorkerProcess, workspace: Workspace
) -> None:
    ws = workspace
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.tenants SET status = 'suspended' WHERE id = $1", [ws.tenant_id])
    job = await enqueue_tenant_job(
        "welcome_email", ws.tenant_id, ws.identity_id, job_id=f"suspended:{ws.tenant_id}"
    )
    assert await job_result(worker, job) == f"skipped: tenant {ws.tenant_id} is suspended"
    assert not await OutboxEmail.filter(tenant_id=ws.tenant_id).exists()

    missing = await enqueue_tenant_job("welcome_email", 10**9, ws.identity_id)
    assert await job_result(worker, missing) == f"skipped: tenant {10**9} does not exist"

    # The worker's one JSON line for the job says what it did not do, and why.
    assert job is not None
    lines = [ln for ln in worker.log_lines() if ln.get("event") == "job" and ln.get("job_id") == job.job_id]
    assert len(lines) == 1, worker.describe()
    line = lines[0]
    assert line["outcome"] == "skipped" and line["reason"] == f"tenant {ws.tenant_id} is suspended"
    assert (line["tenant"], line["job"], line["component"]) == (ws.slug, "welcome_email", "worker")
    assert isinstance(line["duration_ms"], int | float)


async def test_concurrent_jobs_for_20_tenants_stay_in_their_tenant(
    worker: WorkerProcess, db: Services
) -> None:
    workspaces = [await make_workspace("iso", f"Isolation {i:02d} Ltd") for i in range(20)]
    for i, ws in enumerate(workspaces):
        async with tenant_scope(ws.tenant_id) as tx:
            await Contact.bulk_create([Contact(name=f"Person {i}.{n}") for n in range(i)], using_db=tx)

    await asyncio.gather(*(enqueue_welcome_email(ws.tenant_id, ws.identity_id) for ws in workspaces))
    keys = {f"welcome:{ws.tenant_id}:{ws.identity_id}": (i, ws) for i, ws in enumerate(workspaces)}

    async def all_delivered() -> list[OutboxEmail] | None:
        rows = await OutboxEmail.filter(dedupe_key__in=list(keys), status="outbox")
        return rows if len(rows) == len(keys) else None

    rows = await eventually(worker, all_delivered, timeout=25)
    for row in rows:
        i, ws = keys[row.dedupe_key]
        assert row.tenant_id == ws.tenant_id  # type: ignore[attr-defined]
        assert row.to_address == ws.email
        assert contact_count(row.body_text) == i
        assert f'"{ws.name}"' in row.body_text and f"/t/{ws.slug}/contacts" in row.body_text
        others = [o for o in workspaces if o is not ws]
        assert not any(o.name in row.body_text or f"/t/{o.slug}/" in row.body_text for o in others)
