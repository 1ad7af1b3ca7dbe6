"""What a lead's page shows, read in one transaction: the lead as the actor may see it, its timeline,
who owns it, what a conversion made of it, and what the actor may do with it (edit, convert, claim
from the pool, return to the pool)."""

from __future__ import annotations

from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.activities.links import RecordNotFound
from kith.tenants.activities.queries import timeline
from kith.tenants.companies.queries import companies_for_select
from kith.tenants.leads.queries import OBJECT, member_names, read_lead
from kith.tenants.pool.claims import POOL_TYPES, holding
from kith.tenants.records.custom import load_custom_fields


async def _converted(session: TenantSession, lead: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """The records the lead became, by kind, as {"id", "name"} where the actor may see them."""
    found: dict[str, dict[str, Any] | None] = {}
    for kind, column in (("contacts", "converted_contact_id"), ("companies", "converted_company_id"),
                         ("deals", "converted_deal_id")):
        record_id = lead.get(column)
        found[kind] = None
        if record_id is None or not session.policy.can(kind, "view"):
            continue
        params: list[Any] = [record_id]
        owners = session.policy.owner_ids(kind)
        scope = ""
        if owners is not None:
            params.append(sorted(owners))
            scope = " AND owner_id = ANY($2::bigint[])"
        rows = await session.tx.execute_query_dict(f"SELECT id, name FROM {kind} WHERE id = $1{scope}", params)
        found[kind] = dict(rows[0]) if rows else None
    return found


async def lead_page(actor: Actor, lead_id: int) -> dict[str, Any]:
    """The context of a lead's page (LeadNotFound when the actor may not see it)."""
    async with acting_as(actor) as session:
        lead = await read_lead(session, lead_id)
        try:
            entries = await timeline(session, lead_id=lead_id)
        except RecordNotFound:
            entries = []  # a pool lead outside the actor's scope: the timeline shows to its reach only
        policy = session.policy
        owners = policy.owner_ids(OBJECT)
        mine = lead["owner_id"] is not None and (owners is None or lead["owner_id"] in owners)
        converted = lead["converted_at"] is not None
        in_pool = lead["owner_id"] is None
        can_edit = policy.can(OBJECT, "edit") and (mine or owners is None)
        held, limit = await holding(session, POOL_TYPES[OBJECT])
        return {
            "lead": lead,
            "timeline": entries,
            "people": await member_names(session, [lead["owner_id"]]),
            "converted": await _converted(session, lead) if converted else {},
            "companies": await companies_for_select(session) if can_edit and not converted else [],
            "can": {
                "edit": can_edit,
                "delete": policy.can(OBJECT, "delete") and (mine or owners is None),
                "convert": can_edit and not converted and policy.can("contacts", "create"),
                "create_company": policy.can("companies", "create"),
                "create_deal": policy.can("deals", "create"),
                "claim": in_pool and not converted and policy.can(OBJECT, "edit"),
                "release": not in_pool and not converted and policy.can(OBJECT, "edit")
                and (lead["owner_id"] == actor.identity_id or owners is None),
            },
            "pool": {"held": held, "limit": limit},
            "custom_fields": await load_custom_fields(session.tx, OBJECT),
            "role_name": policy.role.name,
            "role_edits": policy.can(OBJECT, "edit"),
        }
