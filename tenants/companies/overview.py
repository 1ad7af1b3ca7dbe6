"""The customer 360 view: a company (or a contact) with its contacts, deals, orders, open tasks
and timeline, read in one transaction.

Each section is there only when the actor's role may view that kind of record, holds only the
records its scope of that kind reaches (a sales member sees their own deals, not a colleague's),
drops the fields the role hides, and lists at most `limit` records with the count of all it
reaches. Contacts' emails and phones shown here are audited as sensitive reads.
"""

from __future__ import annotations

from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.activities.queries import timeline
from kith.tenants.companies import queries as companies
from kith.tenants.contacts import queries as contacts

SECTION_LIMIT = 20
TIMELINE_LIMIT = 50
_COMPANY_BRIEF = ("id", "name", "domain", "industry", "city", "country", "owner_id")


async def _section(session: TenantSession, object_type: str, owner_column: str, sql: str, record_id: int,
                   order: str, limit: int) -> dict[str, Any] | None:
    """Rows of `sql` (a SELECT ... FROM ... WHERE with $1 = the record's id) in the actor's scope of
    `object_type`, at most `limit` in `order`, with the total they reach; None without 'view'."""
    if not session.policy.can(object_type, "view"):
        return None
    params: list[Any] = [record_id]
    scope = companies.scope_clause(session, object_type, owner_column, params)
    params.append(limit)
    rows = await session.tx.execute_query_dict(
        f"{sql}{f' AND {scope}' if scope else ''} ORDER BY {order} LIMIT ${len(params)}", params)
    total = int(rows[0]["_total"]) if rows else 0
    items = [session.visible(object_type, {k: v for k, v in r.items() if k != "_total"}) for r in rows]
    return {"items": items, "total": total}


async def _deals(session: TenantSession, link: str, record_id: int, limit: int) -> dict[str, Any] | None:
    section = await _section(
        session, "deals", "d.owner_id",
        "SELECT d.id, d.name, d.amount, d.currency, d.expected_close, d.stage_id, s.name AS stage,"
        " s.kind AS stage_kind, d.owner_id, d.company_id, d.contact_id, count(*) OVER () AS _total"
        f" FROM deals d JOIN stages s ON s.id = d.stage_id WHERE d.{link} = $1",  # noqa: S608 - fixed names
        record_id, "d.id DESC", limit)
    if section is not None and "stage" in session.policy.hidden_fields("deals"):
        for item in section["items"]:
            item.pop("stage_id", None)
            item.pop("stage_kind", None)
    return section


async def _orders(session: TenantSession, link: str, record_id: int, limit: int) -> dict[str, Any] | None:
    return await _section(
        session, "orders", "owner_id",
        "SELECT id, number, order_date, status, total, currency, contact_id, owner_id, count(*) OVER () AS _total"
        f" FROM orders WHERE {link} = $1",  # noqa: S608 - fixed names
        record_id, "order_date DESC, id DESC", limit)


async def _tasks(session: TenantSession, link: str, record_id: int, limit: int) -> dict[str, Any] | None:
    return await _section(
        session, "tasks", "assignee_id",
        "SELECT id, title, due_at, status, assignee_id, count(*) OVER () AS _total"
        f" FROM tasks WHERE status = 'open' AND {link} = $1",  # noqa: S608 - fixed names
        record_id, "due_at NULLS LAST, id", limit)


async def _people(session: TenantSession, *sections: Any) -> dict[int, str]:
    """Display names of the members the sections name (owners, assignees), for the pages."""
    ids: set[int] = set()
    for section in sections:
        items = section.get("items", []) if isinstance(section, dict) and "items" in section else [section]
        for item in items:
            if isinstance(item, dict):
                ids.update(v for k, v in item.items() if k in ("owner_id", "assignee_id") and v is not None)
    if not ids:
        return {}
    rows = await session.tx.execute_query_dict(
        "SELECT id, coalesce(nullif(display_name, ''), email) AS label FROM public.identities"
        " WHERE id = ANY($1::bigint[])", [sorted(ids)])
    return {int(r["id"]): str(r["label"]) for r in rows}


async def company_overview(actor: Actor, company_id: int, *, limit: int = SECTION_LIMIT) -> dict[str, Any]:
    """A company's 360 view: {"company", "contacts", "deals", "orders", "tasks", "timeline", "people"};
    a section the role may not view is None. CompanyNotFound outside the actor's reach."""
    async with acting_as(actor) as session:
        session.require(companies.OBJECT, "view")
        company = companies.visible_row(session, await companies.load_for_change(session, company_id))
        people_section = await _section(
            session, "contacts", "owner_id",
            "SELECT id, name, email, phone, title, lifecycle_stage, owner_id, count(*) OVER () AS _total"
            " FROM contacts WHERE company_id = $1", company_id, "lower(name), id", limit)
        result: dict[str, Any] = {
            "company": company,
            "contacts": people_section,
            "deals": await _deals(session, "company_id", company_id, limit),
            "orders": await _orders(session, "company_id", company_id, limit),
            "tasks": await _tasks(session, "company_id", company_id, limit),
            "timeline": await timeline(session, company_id=company_id, limit=TIMELINE_LIMIT),
        }
        result["people"] = await _people(session, company, people_section, result["deals"], result["orders"],
                                         result["tasks"])
        if people_section is not None:  # last: the read entry takes the tenant's audit lock
            await contacts.audit_disclosed(session, people_section["items"], listing=True)
        return result


async def contact_overview(actor: Actor, contact_id: int, *, limit: int = SECTION_LIMIT) -> dict[str, Any]:
    """A contact's 360 view: {"contact", "company", "deals", "orders", "tasks", "timeline", "people"};
    "company" is None without a company or when the actor may not see it. ContactNotFound outside
    the actor's reach."""
    async with acting_as(actor) as session:
        session.require(contacts.OBJECT, "view")
        contact = contacts.visible_row(session, await contacts.load_for_change(session, contact_id))
        company = None
        company_id = contact.get("company_id")
        if company_id is not None and session.policy.can(companies.OBJECT, "view"):
            try:
                row = await companies.load_for_change(session, int(company_id))
            except companies.CompanyNotFound:
                row = None
            if row is not None:
                company = session.visible(companies.OBJECT, {k: row[k] for k in _COMPANY_BRIEF})
        result: dict[str, Any] = {
            "contact": contact,
            "company": company,
            "deals": await _deals(session, "contact_id", contact_id, limit),
            "orders": await _orders(session, "contact_id", contact_id, limit),
            "tasks": await _tasks(session, "contact_id", contact_id, limit),
            "timeline": await timeline(session, contact_id=contact_id, limit=TIMELINE_LIMIT),
        }
        result["people"] = await _people(session, contact, company, result["deals"], result["orders"],
                                         result["tasks"])
        await contacts.audit_disclosed(session, [contact], listing=False)
        return result
