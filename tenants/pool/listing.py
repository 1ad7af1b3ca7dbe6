"""Reading the pool: every member whose role may view companies (or leads) sees the records nobody
owns, whatever the scope of their role (own, team or all): the pool is common ground."""

from __future__ import annotations

from dataclasses import dataclass

from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.tenants.companies.spec import SPEC as COMPANIES
from kith.tenants.leads.spec import SPEC as LEADS
from kith.tenants.pool.claims import holding, pool_type
from kith.tenants.pool.rules import load_rules
from kith.tenants.records.listing import ListQuery, RecordPage, query_records
from kith.tenants.records.spec import RecordSpec

SPECS: dict[str, RecordSpec] = {"companies": COMPANIES, "leads": LEADS}


@dataclass
class PoolListing:
    page: RecordPage
    held: int  # records of the type the actor holds from the pool
    limit: int | None  # the actor's claim limit (None: none)
    reclaim_days: int | None
    can_claim: bool


async def pool_page(actor: Actor, object_type: str, query: ListQuery) -> PoolListing:
    """One page of the pool of `object_type` (companies or leads), through the list engine: filters,
    sort, search and keyset pagination as on the lists, with the actor's hidden fields left out."""
    kind = pool_type(object_type)
    async with acting_as(actor) as session:
        session.require(kind.object_type, "view")
        page = await query_records(session, SPECS[kind.object_type], query, where=[kind.pool_condition],
                                   scoped=False)
        held, limit = await holding(session, kind)
        rules = await load_rules(session.tx)
        return PoolListing(page=page, held=held, limit=limit, reclaim_days=rules.reclaim_days,
                           can_claim=session.policy.can(kind.object_type, "edit"))
