"""Converting a lead: it becomes a contact, linked to a company (an existing one, or a new one named
after the lead's company), with an optional deal in the default pipeline's first open stage.

Everything happens in ONE transaction: if any part fails (the plan's contact limit, a company the
actor cannot see, a deal the database refuses), nothing is written and the lead stays as it was.
The lead keeps its history: it is marked converted (with the ids of what it became) rather than
deleted, and every activity and task logged against it is linked to the new contact and company
too, so the lead's timeline reappears on theirs. A "lead.converted" event tells the story on all of
them. Each record made is audited like one made by hand.
"""

from __future__ import annotations

from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.platform.billing.limits import check_contact_capacity
from kith.tenants.activities.events import record_event
from kith.tenants.companies.errors import InvalidFields
from kith.tenants.companies.queries import visible_company
from kith.tenants.leads.errors import LeadAlreadyConverted, LeadInvalid
from kith.tenants.leads.queries import OBJECT, audit_disclosed, load_owned, stored_key, visible_row
from kith.tenants.leads.schemas import ConvertIn

# the person fields a contact takes over from its lead
_PERSON = ("name", "email", "phone", "title", "source", "notes", "tags")


async def _company(session: TenantSession, lead: dict[str, Any], data: ConvertIn, owner: int | None
                   ) -> tuple[int | None, str, bool]:
    """(company id, its name, whether it was made now) for the conversion; (None, "", False) for none."""
    if data.company_id is not None:
        session.require("companies", "view")
        try:
            company = await visible_company(session, data.company_id)
        except InvalidFields as exc:
            raise LeadInvalid.of(exc.fields) from None
        return int(company["id"]), str(company["name"]), False
    if not data.create_company or not lead["company_name"]:
        return None, "", False
    session.require("companies", "create")
    rows = await session.tx.execute_query_dict(
        "INSERT INTO companies (name, owner_id, tags, created_by_id) VALUES ($1, $2, $3::text[], $4) RETURNING id",
        [lead["company_name"], owner, lead["tags"], session.actor.identity_id])
    company_id = int(rows[0]["id"])
    diff: dict[str, Any] = {"name": [None, lead["company_name"]], "owner_id": [None, owner]}
    if lead["tags"]:
        diff["tags"] = [None, lead["tags"]]
    await session.audit("company.create", "companies", company_id, {**diff, "from_lead": [None, lead["id"]]})
    return company_id, str(lead["company_name"]), True


async def _contact(session: TenantSession, lead: dict[str, Any], company: tuple[int | None, str, bool],
                   owner: int | None, *, with_deal: bool) -> int:
    await check_contact_capacity(session.actor.tenant_id, 1, session.tx)  # the plan's contact limit
    company_id, company_name, _ = company
    values: dict[str, Any] = {c: lead[c] for c in _PERSON}
    values.update(company_name=company_name or lead["company_name"], company_id=company_id, owner_id=owner,
                  lifecycle_stage="opportunity" if with_deal else "qualified")
    rows = await session.tx.execute_query_dict(
        "INSERT INTO contacts (name, email, phone, title, source, notes, tags, company_name, company_id, owner_id,"
        " lifecycle_stage, created_by_id) VALUES ($1, $2, $3, $4, $5, $6, $7::text[], $8, $9, $10, $11, $12)"
        " RETURNING id", [*values.values(), session.actor.identity_id])
    contact_id = int(rows[0]["id"])
    diff = {c: [None, v] for c, v in values.items() if v not in (None, "", [])}
    await session.audit("contact.create", "contacts", contact_id, {**diff, "from_lead": [None, lead["id"]]},
                        subject=("contacts", contact_id))
    return contact_id


async def _deal(session: TenantSession, lead: dict[str, Any], data: ConvertIn, company: tuple[int | None, str, bool],
                contact_id: int, owner: int | None) -> int:
    session.require("deals", "create")
    stages = await session.tx.execute_query_dict(
        "SELECT p.id AS pipeline_id, s.id AS stage_id FROM pipelines p JOIN stages s ON s.pipeline_id = p.id"
        " WHERE p.is_default AND s.kind = 'open' ORDER BY s.position, s.id LIMIT 1")
    if not stages:
        raise LeadInvalid.of({"create_deal": "The default pipeline has no open stage to start the deal in."})
    currency = await session.tx.execute_query_dict(
        "SELECT default_currency FROM public.tenants WHERE id = $1", [session.actor.tenant_id])
    name = data.deal_name or company[1] or str(lead["name"])
    values: dict[str, Any] = {
        "name": name, "amount": data.deal_amount, "currency": str(currency[0]["default_currency"]),
        "expected_close": data.deal_expected_close, "pipeline_id": int(stages[0]["pipeline_id"]),
        "stage_id": int(stages[0]["stage_id"]), "company_id": company[0], "contact_id": contact_id, "owner_id": owner}
    rows = await session.tx.execute_query_dict(
        "INSERT INTO deals (name, amount, currency, expected_close, pipeline_id, stage_id, company_id, contact_id,"
        " owner_id, created_by_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        [*values.values(), session.actor.identity_id])
    deal_id = int(rows[0]["id"])
    # the deal's first stage is its first stage change, recorded like every later one
    await session.tx.execute_query(
        "INSERT INTO deal_stage_changes (deal_id, from_stage_id, to_stage_id, changed_by_id) VALUES ($1, NULL, $2, $3)",
        [deal_id, values["stage_id"], session.actor.identity_id])
    diff = {c: [None, str(v) if c == "amount" else v] for c, v in values.items() if v is not None}
    await session.audit("deal.create", "deals", deal_id, {**diff, "from_lead": [None, lead["id"]]})
    return deal_id


async def _move_history(session: TenantSession, lead_id: int, contact_id: int, company_id: int | None
                        ) -> tuple[int, int]:
    """Link the lead's activities and tasks to the new contact and company (links they already have stay)."""
    moved = []
    for table in ("activities", "tasks"):
        rows = await session.tx.execute_query_dict(
            f"UPDATE {table} SET contact_id = coalesce(contact_id, $2), company_id = coalesce(company_id, $3)"
            " WHERE lead_id = $1 RETURNING id", [lead_id, contact_id, company_id])
        moved.append(len(rows))
    return moved[0], moved[1]


async def convert_in(session: TenantSession, lead_id: int, data: ConvertIn) -> dict[str, Any]:
    """Convert a lead inside `session` (see the module). Needs 'contacts: create' and 'leads: edit', plus
    'companies: create' to make a company, 'companies: view' to link one, 'deals: create' for a deal.
    Raises LeadAlreadyConverted (409) the second time, LeadNotFound outside the actor's scope."""
    session.require("contacts", "create")  # what a conversion makes first and always
    session.require(OBJECT, "edit")
    lead = await load_owned(session, lead_id)
    if lead["converted_at"] is not None or lead["status"] == "converted":
        raise LeadAlreadyConverted(lead_id, lead["converted_contact_id"])
    owner = lead["owner_id"] if lead["owner_id"] is not None else session.actor.identity_id
    company = await _company(session, lead, data, owner)
    contact_id = await _contact(session, lead, company, owner, with_deal=data.create_deal)
    deal_id = await _deal(session, lead, data, company, contact_id, owner) if data.create_deal else None
    activities, tasks = await _move_history(session, lead_id, contact_id, company[0])
    rows = await session.tx.execute_query_dict(
        "UPDATE leads SET status = 'converted', converted_at = now(), converted_contact_id = $2,"
        " converted_company_id = $3, converted_deal_id = $4, updated_at = now() WHERE id = $1 RETURNING *",
        [lead_id, contact_id, company[0], deal_id])
    converted = dict(rows[0])
    diff = {"status": [lead["status"], "converted"], "converted_at": [None, converted["converted_at"]],
            "converted_contact_id": [None, contact_id]}
    if company[0] is not None:
        diff["converted_company_id"] = [None, company[0]]
    if deal_id is not None:
        diff["converted_deal_id"] = [None, deal_id]
    await session.audit("lead.convert", OBJECT, lead_id, diff, subject=(OBJECT, lead_id), stored_key=stored_key(lead))
    facts = {"contact_id": contact_id, "company_id": company[0], "company_created": company[2], "deal_id": deal_id,
             "activities_moved": activities, "tasks_moved": tasks}
    await record_event(session, "lead.converted", facts, subject=f"Lead converted: {lead['name']}"[:200],
                       lead_id=lead_id, contact_id=contact_id, company_id=company[0], deal_id=deal_id)
    converted["custom"], converted["tags"] = lead["custom"], lead["tags"]
    shown = visible_row(session, converted)
    await audit_disclosed(session, [shown], listing=False)
    return {"lead": shown, "contact_id": contact_id, "company_id": company[0], "company_created": company[2],
            "deal_id": deal_id, "activities_moved": activities, "tasks_moved": tasks}


async def convert_lead(actor: Actor, lead_id: int, data: ConvertIn) -> dict[str, Any]:
    """Convert a lead into a contact, a company (linked or new) and optionally a deal, in one transaction."""
    async with acting_as(actor) as session:
        return await convert_in(session, lead_id, data)
