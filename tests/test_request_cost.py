"""The fixed database cost of a request: round trips of the API's hot paths, and what makes the
cheap path safe (a pooled connection carries no session state from one transaction to the next,
so the pool needs no reset query; a token is checked afresh on every request).

Round trips are counted on the connections of this process's pool (every statement asyncpg
sends: BEGIN and COMMIT too), which is what the CRM benchmark showed to limit throughput.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.db import KithConnection, platform_tx
from kith.platform.identity.tokens import revoke_api_token

from .conftest import Workspace
from .factories import add_member, owner_token
from .web_helpers import assert_error, client

ME_ROUND_TRIPS = 1  # the token, its workspace, person and membership, and the use: one statement
LIST_ROUND_TRIPS = 6  # token; BEGIN, the tenant's door, the page, the read entry, COMMIT
OVERVIEW_ROUND_TRIPS = 8  # token; BEGIN, door, contact, its sections, timeline, read entry, COMMIT


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement the pool's connections send while the test runs."""
    sent: list[str] = []

    def counting(name: str) -> Any:
        real = getattr(asyncpg.Connection, name)

        async def method(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
            sent.append(" ".join(str(query).split())[:120])
            return await real(self, query, *args, **kwargs)

        return method

    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
        monkeypatch.setattr(KithConnection, name, counting(name), raising=False)
    yield sent


async def _contact(headers: dict[str, str], **extra: Any) -> int:
    async with client(headers=headers) as c:
        made = await c.post("/api/v1/contacts", json={"name": "Li Na", "email": "li.na@example.com",
                                                      "phone": "+86 138 0013 8000", **extra})
        assert made.status_code == 201, made.text
        return int(made.json()["id"])


async def test_me_is_one_round_trip(workspace: Workspace, statements: list[str]) -> None:
    headers = await owner_token(workspace)
    async with client(headers=headers) as c:
        assert (await c.get("/api/v1/me")).status_code == 200  # the minute's first use: audited
        statements.clear()
        me = await c.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["role"] == "owner"
    assert len(statements) <= ME_ROUND_TRIPS, statements
    assert not any(s.split()[0] in ("BEGIN;", "COMMIT;", "BEGIN", "COMMIT") for s in statements), statements


async def test_contact_list_round_trips(workspace: Workspace, statements: list[str]) -> None:
    headers = await owner_token(workspace)
    await _contact(headers)
    async with client(headers=headers) as c:
        assert (await c.get("/api/v1/me")).status_code == 200
        statements.clear()
        page = await c.get("/api/v1/contacts", params={"limit": 25})
    assert page.status_code == 200 and page.json()["items"]
    assert len(statements) <= LIST_ROUND_TRIPS, statements
    # the read entry turns synchronous commit off in its own statement, not in one of its own
    assert not any("synchronous_commit" in s and "audit_append" not in s for s in statements), statements


async def test_contact_overview_round_trips(workspace: Workspace, statements: list[str]) -> None:
    headers = await owner_token(workspace)
    async with client(headers=headers) as c:
        company = await c.post("/api/v1/companies", json={"name": "云图科技"})
        assert company.status_code == 201, company.text
    contact_id = await _contact(headers, company_id=company.json()["id"])
    async with client(headers=headers) as c:
        assert (await c.get("/api/v1/me")).status_code == 200
        statements.clear()
        found = await c.get(f"/api/v1/contacts/{contact_id}/overview")
    assert found.status_code == 200, found.text
    assert found.json()["company"]["name"] == "云图科技"
    assert len(statements) <= OVERVIEW_ROUND_TRIPS, statements


async def test_a_revoked_token_or_a_deactivated_member_is_refused_at_the_next_request(workspace: Workspace) -> None:
    member = await add_member(workspace, "sales")
    async with client(headers=member.headers) as c:
        assert (await c.get("/api/v1/me")).status_code == 200
        async with platform_tx() as tx:
            await tx.execute_query("UPDATE public.memberships SET is_active = false WHERE tenant_id = $1"
                                   " AND identity_id = $2", [workspace.tenant_id, member.identity_id])
        assert_error(await c.get("/api/v1/me"), 401, "invalid_token")
        async with platform_tx() as tx:
            await tx.execute_query("UPDATE public.memberships SET is_active = true WHERE tenant_id = $1"
                                   " AND identity_id = $2", [workspace.tenant_id, member.identity_id])
        assert (await c.get("/api/v1/me")).status_code == 200
        async with platform_tx() as tx:
            rows = await tx.execute_query_dict("SELECT id FROM public.api_tokens WHERE identity_id = $1",
                                               [member.identity_id])
        assert await revoke_api_token(tenant_id=workspace.tenant_id, identity_id=member.identity_id,
                                      token_id=int(rows[0]["id"]))
        assert_error(await c.get("/api/v1/me"), 401, "invalid_token")


_SETTINGS = ("search_path", "synchronous_commit", "plan_cache_mode", "lock_timeout")


async def _state_of_next_transaction(pid: int) -> dict[str, Any]:
    """The session state the pool's next transaction on backend `pid` starts with (the pool hands
    back the connection released last, so it is found at once): each setting as it is and as
    RESET would make it, the advisory locks held, and whether tenant tables are reachable."""
    for _ in range(50):
        async with platform_tx() as tx:
            conn = tx._connection  # type: ignore[attr-defined]
            if await conn.fetchval("SELECT pg_backend_pid()") != pid:
                continue
            settings = await conn.fetch("SELECT name, setting, reset_val FROM pg_settings WHERE name = ANY($1)",
                                        list(_SETTINGS))
            return {
                "settings": {r["name"]: r["setting"] for r in settings},
                "reset": {r["name"]: r["reset_val"] for r in settings},
                "locks": await conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'"),
                "contacts_reachable": await conn.fetchval("SELECT to_regclass('contacts') IS NOT NULL"),
            }
    raise AssertionError(f"the pool never handed backend {pid} out again")


def _assert_clean(state: dict[str, Any], when: str) -> None:
    assert state["settings"] == state["reset"], when
    assert state["settings"]["search_path"] == "public", when
    assert state["locks"] == 0 and state["contacts_reachable"] is False, (when, state)


class _Stop(Exception):
    pass


async def test_a_pooled_connection_carries_no_tenant_or_setting_into_the_next_transaction(
    workspace: Workspace,
) -> None:
    actor = Actor(kind="user", tenant_id=workspace.tenant_id, role="owner", identity_id=workspace.identity_id,
                  label=workspace.email)
    for failing in (False, True):
        try:
            async with acting_as(actor) as session:
                conn = session.tx._connection  # type: ignore[attr-defined]
                pid = await conn.fetchval("SELECT pg_backend_pid()")
                assert await conn.fetchval("SELECT current_setting('search_path')") == f"t_{workspace.tenant_id}"
                await conn.execute("SET LOCAL synchronous_commit = off; SET LOCAL plan_cache_mode = force_custom_plan;"
                                   " SET LOCAL lock_timeout = '5s'")
                await conn.execute("SELECT pg_advisory_xact_lock(42, 7)")
                # a read entry of sensitive fields (it sets synchronous_commit itself)
                await session.audit_read("contacts", [1], ["email"], listing=True)
                if failing:
                    raise _Stop
        except _Stop:
            pass
        _assert_clean(await _state_of_next_transaction(pid), f"after a {'failed' if failing else 'committed'} one")
