"""The CRM benchmark's machinery at a small size: the generator's counts and data, and the HTTP
harness answering with figures for each endpoint (behaviour, not timing)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from kith.platform.db import connect_raw, tenant_schema
from kith.tenants.bench.generate import LoadError, Sizes, load_crm_data
from kith.tenants.bench.http import CpuProbe, Target, default_targets, measure_all, summary_table, web_server
from kith.tenants.bench.rows import DataMaker, Stage
from kith.tenants.bench.workspace import BenchWorkspace, create_bench_workspace, find_bench_workspace, issue_token

from .conftest import Services, Workspace, unique_slug

SIZES = Sizes(contacts=2_000, companies=200, deals=400, batch=700)
HAN = re.compile(r"[\u4e00-\u9fff]")
PHONE = re.compile(r"^\+\d{1,3} [0-9 -]+$")


@pytest.fixture(scope="module")
async def loaded(db: Services) -> tuple[BenchWorkspace, list[str]]:
    workspace, _ = await create_bench_workspace(unique_slug("crmb"), members=3)
    messages: list[str] = []
    await load_crm_data(db.database_url, workspace, SIZES, seed=3, progress=messages.append)
    return workspace, messages


async def _fetch(db: Services, workspace: BenchWorkspace, sql: str) -> list[dict]:
    conn = await connect_raw(db.database_url)
    try:
        await conn.execute(f"SET search_path TO {tenant_schema(workspace.tenant_id)}, public")
        return [dict(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_generator_loads_the_sizes_asked_for(db: Services, loaded: tuple[BenchWorkspace, list[str]]) -> None:
    workspace, messages = loaded
    counts = (await _fetch(db, workspace, "SELECT (SELECT count(*) FROM companies) AS companies,"
                                          " (SELECT count(*) FROM contacts) AS contacts,"
                                          " (SELECT count(*) FROM deals) AS deals,"
                                          " (SELECT count(*) FROM activities) AS activities,"
                                          " (SELECT count(*) FROM tasks) AS tasks"))[0]
    assert counts == {"companies": 200, "contacts": 2_000, "deals": 400, "activities": 200, "tasks": 100}
    # progress on the command line: per batch, with percent and rows/s
    assert any("contacts" in m and "100%" in m and "rows/s" in m for m in messages)
    assert any(m.startswith("  contacts") and " 35%" in m for m in messages)  # 700 of 2,000
    # the sequences moved past the explicit ids, so the API's next contact does not collide
    seq = await _fetch(db, workspace, "SELECT last_value FROM contacts_id_seq")
    assert seq[0]["last_value"] >= 2_000
    # the workspace is found again by slug, with its owner and sales team
    again = await find_bench_workspace(workspace.slug)
    assert again.tenant_id == workspace.tenant_id and set(again.member_ids) == set(workspace.member_ids)
    with pytest.raises(LoadError):
        await load_crm_data(db.database_url, workspace, SIZES, seed=3, progress=lambda _: None)


async def test_generated_data_is_partly_chinese_and_consistent(db: Services,
                                                                loaded: tuple[BenchWorkspace, list[str]]) -> None:
    workspace, _ = loaded
    contacts = await _fetch(db, workspace, "SELECT c.*, co.name AS real_company FROM contacts c"
                                           " LEFT JOIN companies co ON co.id = c.company_id")
    chinese = sum(1 for c in contacts if HAN.search(c["name"]))
    assert 0.2 < chinese / len(contacts) < 0.4
    assert all(c["company_name"] == (c["real_company"] or "") for c in contacts)
    assert sum(1 for c in contacts if c["company_id"]) > 0.75 * len(contacts)
    assert all(PHONE.match(c["phone"]) for c in contacts if c["phone"]), [c["phone"] for c in contacts][:5]
    assert any(c["phone"].startswith("+86 1") for c in contacts) and any(c["phone"].startswith("+1 ") for c in contacts)
    assert all("@" in c["email"] and c["email"].endswith(".example") for c in contacts if c["email"])
    assert {c["owner_id"] for c in contacts} <= set(workspace.member_ids)
    assert {c["lifecycle_stage"] for c in contacts} >= {"lead", "customer", "qualified"}
    assert any("重点客户" in c["tags"] or "渠道" in c["tags"] for c in contacts)
    companies = await _fetch(db, workspace, "SELECT name, country FROM companies")
    assert any(c["name"].endswith("有限公司") and c["country"] == "CN" for c in companies)
    deals = await _fetch(db, workspace, "SELECT d.amount, d.currency, d.expected_close, s.kind, p.is_default"
                                        " FROM deals d JOIN stages s ON s.id = d.stage_id"
                                        " JOIN pipelines p ON p.id = d.pipeline_id")
    assert all(isinstance(d["amount"], Decimal) and d["amount"] > 0 and d["is_default"] for d in deals)
    assert {d["kind"] for d in deals} == {"open", "won", "lost"}
    assert {"CNY", "USD"} <= {d["currency"] for d in deals}


async def test_generated_data_stays_in_its_tenant(db: Services, loaded: tuple[BenchWorkspace, list[str]],
                                                  other_workspace: Workspace) -> None:
    workspace, _ = loaded
    other = BenchWorkspace(other_workspace.tenant_id, other_workspace.slug, other_workspace.identity_id, "", ())
    counts = await _fetch(db, other, "SELECT (SELECT count(*) FROM contacts) + (SELECT count(*) FROM companies)"
                                     " + (SELECT count(*) FROM deals) AS n")
    assert counts[0]["n"] == 0
    assert tenant_schema(other.tenant_id) != tenant_schema(workspace.tenant_id)


def test_rows_are_reproducible_from_the_seed() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def make() -> list[tuple]:
        maker = DataMaker(seed=11, member_ids=[5, 6], stages=[Stage(1, "Won", "won")], pipeline_id=1, now=now)
        return maker.companies(1, 30) + maker.contacts(1, 60) + maker.deals(1, 20)

    assert make() == make()


async def test_http_harness_reports_each_endpoint(db: Services, loaded: tuple[BenchWorkspace, list[str]],
                                                  tmp_path: Path) -> None:
    workspace, _ = loaded
    token = await issue_token(workspace, workspace.owner_id)
    targets = default_targets((1, 2_000), requests=12) + [Target("nowhere", "no such endpoint",
                                                                 ("/api/v1/no-such-endpoint",), 5)]
    conn = await connect_raw(db.database_url)
    try:
        own = conn.get_server_pid()

        async def db_pids() -> list[int]:
            rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                                    " AND backend_type = 'client backend' AND pid <> $1", own)
            return [int(r["pid"]) for r in rows]

        with web_server(workers=1, log_path=tmp_path / "server.log", env={}) as server:
            results = await measure_all(server.base_url, token, targets, CpuProbe(server.pid, db_pids),
                                        concurrency=3, warmup=2, progress=lambda _: None)
    finally:
        await conn.close()
    by_key = {f.key: f for f in results}
    assert set(by_key) == {"me", "list", "list_q", "search", "overview", "board", "nowhere"}
    assert by_key["nowhere"].missing and by_key["nowhere"].missed() == []
    me = by_key["me"]
    assert not me.missing and me.requests == 12 and me.ok == 12
    assert me.pct(50) > 0 and me.rps > 0 and me.server_cpu_s is not None
    # /proc counts CPU in clock ticks (10 ms): a dozen /me requests may cost less than one, the
    # whole run (searches, the board, 360 pages) never does
    assert sum(f.server_cpu_s or 0.0 for f in results) > 0
    for figures in results:
        target = next(t for t in targets if t.key == figures.key)
        if not figures.missing:  # endpoints still being written may be missing; the others are measured
            assert figures.requests == target.requests == len(figures.latencies_ms)
            assert sum(figures.statuses.values()) == figures.requests
    table = summary_table(results)
    assert all(f.label in table for f in results)
    assert "missing" in table
