"""The list engine's q for queries too short for trigrams (1 and 2 characters) and for longer ones:
the same records as a plain ILIKE, through the short-query indexes, inside scope and hidden fields."""

from __future__ import annotations

from kith.platform.access.actor import Actor
from kith.platform.db import tenant_scope
from kith.tenants.contacts.spec import SPEC as CONTACTS
from kith.tenants.records.listing import ListQuery, list_records
from kith.tenants.search.text import short_search_clause

from .conftest import Workspace
from .factories import add_member
from .test_search import _insert, _people


def _actor(ws: Workspace, identity_id: int, role: str = "owner") -> Actor:
    return Actor(kind="user", tenant_id=ws.tenant_id, identity_id=identity_id, role=role, label="test")


async def _names(actor: Actor, q: str) -> list[str]:
    page = await list_records(actor, CONTACTS, ListQuery(q=q, limit=100))
    return [item["name"] for item in page.items]


def test_short_search_clause_choice() -> None:
    params: list[str] = []

    def add(value: str) -> str:
        params.append(value)
        return f"${len(params)}"

    assert short_search_clause("contacts", "zhang", ("name",), add) is None  # trigrams serve it
    assert short_search_clause("contacts", "li", ("name", "email"), add) is None  # an ASCII pair: full ILIKE
    assert "kith_bigrams" in (short_search_clause("contacts", "张伟", ("name", "company_name"), add) or "")
    assert short_search_clause("contacts", "张伟", ("email",), add) == "false"
    assert "LIKE" in (short_search_clause("contacts", "张", ("name",), add) or "")
    assert short_search_clause("activities", "张伟", ("name",), add) is None


async def test_list_q_short_chinese_phone_email(workspace: Workspace, other_workspace: Workspace) -> None:
    await _people(workspace, workspace.identity_id)
    await _people(other_workspace, other_workspace.identity_id)
    owner = _actor(workspace, workspace.identity_id)
    # 2 characters: in the name anywhere, and in the company name
    assert sorted(await _names(owner, "张伟")) == sorted(["张伟明", "王张伟", "张伟"])
    assert await _names(owner, "北京") == ["李娜"]
    # 1 character: names starting with it
    assert sorted(await _names(owner, "张")) == sorted(["张伟", "张伟明"])
    # 3+ characters: trigrams over every searched field (email, phone, company name)
    assert await _names(owner, "云图科技") == ["张伟明"]
    assert await _names(owner, "zhang.wei@") == ["张伟"]
    assert await _names(owner, "138 0013") == ["李娜"]
    # an ASCII pair is still found inside emails
    assert await _names(owner, "zw") == ["张伟明"]  # zwm@example.cn


async def test_list_q_short_scope_and_hidden(workspace: Workspace) -> None:
    await _people(workspace, workspace.identity_id)
    sales = await add_member(workspace, "sales")
    await _insert(workspace, "contacts", [{"name": "张伟 (sales)", "company_name": "北京小店",
                                           "owner_id": sales.identity_id}])
    seller = _actor(workspace, sales.identity_id, "sales")
    assert await _names(seller, "张伟") == ["张伟 (sales)"]
    assert await _names(seller, "北京") == ["张伟 (sales)"]
    assert await _names(seller, "张") == ["张伟 (sales)"]


async def test_character_pairs_are_those_of_the_lowered_text(workspace: Workspace) -> None:
    """kith_bigrams (tenant migration 0015's loop) gives every adjacent pair of the lowercased
    text, the same set as 0009's DISTINCT aggregate; a repeated pair may repeat (GIN keeps it once)."""
    async with tenant_scope(workspace.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "SELECT v, kith_bigrams(v) AS pairs FROM unnest($1::text[]) v",
            [["张伟 星辰科技", "Ada ADA", "北", "", "Ω😀x"]])
    got = {r["v"]: r["pairs"] for r in rows}
    for text, pairs in got.items():
        lowered = text.lower()
        assert set(pairs) == {lowered[i:i + 2] for i in range(len(lowered) - 1)}, text
    assert got["北"] == [] and got[""] == []
    assert got["Ada ADA"].count("ad") == 2  # repeats are left to GIN
