"""The `kith` command, run as a real process against the test database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kith.platform.db import tenant_scope
from kith.platform.identity.models import ApiToken
from kith.platform.identity.tokens import authenticate_token
from kith.platform.migrations import runner
from kith.platform.tenancy.models import Tenant
from kith.tenants.contacts.models import Contact
from kith.tenants.demo import COMPANIES, DEMO_CONTACTS, DEMO_SLUG, seed_demo
from kith.tenants.demo_crm import DEALS

from .conftest import Services, make_workspace, unique_slug

KITH = Path(sys.executable).with_name("kith")
PASSWORD = "cli-owner-password-42"


async def kith(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `kith` script with the session's environment (DATABASE_URL etc.)."""
    return await asyncio.to_thread(
        subprocess.run, [str(KITH), *args], env=dict(os.environ), capture_output=True, text=True, timeout=120
    )


def assert_bad_input(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


async def test_tenants_create_then_list(db: Services) -> None:
    slug = unique_slug("cli")
    created = await kith("tenants", "create", "--slug", slug, "--name", "CLI 测试贸易")
    assert created.returncode == 0, created.stderr
    assert f"Created workspace '{slug}'" in created.stdout
    tenant = await Tenant.get(slug=slug)
    listed = await kith("tenants", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(slug + " "))
    assert row.split()[1:] == ["CLI", "测试贸易", "active", tenant.schema_name, str(tenant.schema_version)]


async def test_tokens_create_prints_a_token_the_api_accepts(db: Services) -> None:
    slug = unique_slug("tok")
    email = f"owner-{slug}@example.com"
    created = await kith("tenants", "create", "--slug", slug, "--name", "Token Co",
                         "--owner-email", email, "--owner-password", PASSWORD)
    assert created.returncode == 0, created.stderr
    result = await kith("tokens", "create", "--tenant", slug, "--email", email, "--name", "ci")
    assert result.returncode == 0, result.stderr
    raw = result.stdout.strip()
    assert "\n" not in raw and "shown only this once" in result.stderr
    auth = await authenticate_token(raw)
    assert auth is not None
    assert (auth.tenant.slug, auth.identity.email, auth.token.name) == (slug, email, "ci")


async def test_migrate_then_status_reports_current_and_behind(db: Services) -> None:
    migrated = await kith("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "migrate: done" in migrated.stdout
    current = await kith("migrate", "--status")
    assert current.returncode == 0, current.stdout
    assert "tenants: all at version" in current.stdout

    ws = await make_workspace("behind")
    latest = runner.latest_version(runner.tenant_migrations())
    await Tenant.filter(id=ws.tenant_id).update(schema_version=latest - 1)
    try:
        behind = await kith("migrate", "--status")
        assert behind.returncode == 1, behind.stdout
        assert f"{ws.slug} (version {latest - 1})" in behind.stdout
    finally:
        await Tenant.filter(id=ws.tenant_id).update(schema_version=latest)


@pytest.mark.parametrize(
    ("slug", "owner", "words"),
    [
        ("admin", False, ("admin", "reserved")),
        ("admin", True, ("slug", "admin", "reserved")),
        ("Bad_Slug!", False, ("lowercase letters",)),
    ],
    ids=["reserved", "reserved-with-owner", "malformed"],
)
async def test_bad_slug_exits_2_and_writes_nothing(
    db: Services, slug: str, owner: bool, words: tuple[str, ...]
) -> None:
    before = await Tenant.all().count()
    extra = []
    if owner:
        extra = ["--owner-email", f"{unique_slug('x')}@example.com", "--owner-password", PASSWORD]
    result = await kith("tenants", "create", "--slug", slug, "--name", "Nope Inc", *extra)
    assert_bad_input(result, *words)
    assert await Tenant.all().count() == before


async def test_token_for_unknown_tenant_or_person_exits_2_and_writes_nothing(db: Services) -> None:
    ws = await make_workspace("tokbad")
    before = await ApiToken.all().count()
    unknown_tenant = await kith("tokens", "create", "--tenant", "no-such-workspace", "--email", ws.email)
    assert_bad_input(unknown_tenant, "no workspace", "no-such-workspace")
    unknown_person = await kith("tokens", "create", "--tenant", ws.slug, "--email", "nobody@example.com")
    assert_bad_input(unknown_person, "nobody@example.com")
    other = await make_workspace("tokother")
    not_member = await kith("tokens", "create", "--tenant", ws.slug, "--email", other.email)
    assert_bad_input(not_member, other.email, ws.slug, "not an active member")
    assert await ApiToken.all().count() == before


async def test_seed_demo_twice_leaves_one_demo_workspace(db: Services) -> None:
    first = await seed_demo()
    second = await seed_demo()
    assert await Tenant.filter(slug=DEMO_SLUG).count() == 1
    assert second.tenant_id == first.tenant_id
    assert not second.created and second.contacts_added == 0
    assert second.contacts_total == first.contacts_total == len(DEMO_CONTACTS)
    async with tenant_scope(first.tenant_id):
        assert await Contact.all().count() == len(DEMO_CONTACTS)
        assert await Contact.filter(name="张伟", company_name="上海云图科技有限公司").exists()
        assert await Contact.filter(name="James O'Brien").exists()
    async with tenant_scope(first.tenant_id) as tx:
        # the CRM records came once, with every contact linked to its company
        counts = (await tx.execute_query_dict(
            "SELECT (SELECT count(*) FROM companies) AS companies, (SELECT count(*) FROM deals) AS deals,"
            " (SELECT count(*) FROM contacts WHERE company_id IS NULL) AS unlinked,"
            " (SELECT total::text FROM orders) AS order_total, (SELECT count(*) FROM tickets) AS tickets,"
            " (SELECT count(*) FROM ticket_messages) AS ticket_messages"))[0]
    assert counts == {"companies": len(COMPANIES) + 2, "deals": len(DEALS), "unlinked": 0, "order_total": "18990.50",
                      "tickets": 2, "ticket_messages": 2}
