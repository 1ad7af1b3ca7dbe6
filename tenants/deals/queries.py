"""Reading deals through the actor's permissions: one deal, its stage history.

Lists go through the list engine (kith.tenants.records.listing with deals' SPEC); the board and
the forecast live in board.py. A deal outside the actor's scope is "not found", like a missing one.
"""

from __future__ import annotations

import json
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.deals.errors import DealNotFound
from kith.tenants.deals.pipelines import read_pipelines

OBJECT = "deals"
# Stage columns are guarded by the object type's field "stage"
STAGE_COLUMNS = ("stage_id", "stage_name", "stage_kind")
OUT_COLUMNS = ("id", "name", "amount", "currency", "expected_close", "probability", "pipeline_id", "stage_id",
               "stage_name", "stage_kind", "company_id", "company_name", "contact_id", "owner_id", "loss_reason",
               "notes", "tags", "custom", "closed_at", "last_activity_at", "created_at", "updated_at")
DEAL_SELECT = (
    "SELECT deals.*, stages.name AS stage_name, stages.kind AS stage_kind, stages.probability AS stage_probability,"
    " companies.name AS company_name FROM deals JOIN stages ON stages.id = deals.stage_id"
    " LEFT JOIN companies ON companies.id = deals.company_id"
)


def scope_clause(session: TenantSession, params: list[Any], column: str = "deals.owner_id",
                 object_type: str = OBJECT) -> str | None:
    """The WHERE condition limiting `column` to the owners the actor may reach (None: all records)."""
    owners = session.policy.owner_ids(object_type)
    if owners is None:
        return None
    params.append(sorted(owners))
    return f"{column} = ANY(${len(params)}::bigint[])"


def decoded(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with its custom values as a dict (asyncpg hands jsonb over as text)."""
    if isinstance(row.get("custom"), str):
        row["custom"] = json.loads(row["custom"])
    return row


def visible_row(session: TenantSession, row: dict[str, Any]) -> dict[str, Any]:
    """A deal row as the actor may see it: the API's columns, without the hidden fields."""
    decoded(row)
    hidden = session.policy.hidden_fields(OBJECT)
    out = {k: row[k] for k in OUT_COLUMNS if k in row}
    if "stage" in hidden:
        for k in STAGE_COLUMNS:
            out.pop(k, None)
    if "company_id" in hidden:
        out.pop("company_name", None)
    return session.visible(OBJECT, out)


async def load_for_change(session: TenantSession, deal_id: int, *, lock: bool = False) -> dict[str, Any]:
    """The full row of a deal in the actor's scope (with its stage's name, kind and probability and its
    company's name), or DealNotFound."""
    params: list[Any] = [deal_id]
    scope = scope_clause(session, params)
    sql = DEAL_SELECT + " WHERE deals.id = $1" + (f" AND {scope}" if scope else "") + (
        " FOR UPDATE OF deals" if lock else "")
    rows = await session.tx.execute_query_dict(sql, params)
    if not rows:
        raise DealNotFound()
    return decoded(rows[0])


async def get_deal(actor: Actor, deal_id: int) -> dict[str, Any]:
    """One deal as the actor may see it."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        return visible_row(session, await load_for_change(session, deal_id))


async def deal_for_page(actor: Actor, deal_id: int) -> dict[str, Any]:
    """One deal for its page: the visible row plus its pipeline's name, owner's and contact's names
    (contact only when the actor may see it), the stage history and what the actor may do."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        row = await load_for_change(session, deal_id)
        deal = visible_row(session, row)
        extra = await session.tx.execute_query_dict(
            "SELECT p.name AS pipeline_name, coalesce(nullif(i.display_name, ''), i.email) AS owner_name"
            " FROM pipelines p LEFT JOIN public.identities i ON i.id = $2 WHERE p.id = $1",
            [row["pipeline_id"], row["owner_id"]])
        deal.update(extra[0] if extra else {})
        deal["stage_probability"] = row["stage_probability"]
        deal["contact_name"] = None
        if row["contact_id"] is not None and session.policy.can("contacts", "view"):
            params: list[Any] = [row["contact_id"]]
            scope = scope_clause(session, params, "owner_id", "contacts")
            found = await session.tx.execute_query_dict(
                "SELECT name FROM contacts WHERE id = $1" + (f" AND {scope}" if scope else ""), params)
            deal["contact_name"] = found[0]["name"] if found else None
        history = await _history(session, deal_id) if "stage" not in session.policy.hidden_fields(OBJECT) else []
        return {"deal": deal, "history": history, "can_edit": session.policy.can(OBJECT, "edit"),
                "can_delete": session.policy.can(OBJECT, "delete"),
                "hidden": session.policy.hidden_fields(OBJECT)}


async def _history(session: TenantSession, deal_id: int) -> list[dict[str, Any]]:
    return await session.tx.execute_query_dict(
        "SELECT c.id, c.from_stage_id, f.name AS from_stage_name, c.to_stage_id, t.name AS to_stage_name,"
        " c.changed_by_id, coalesce(nullif(i.display_name, ''), i.email) AS changed_by, c.changed_at"
        " FROM deal_stage_changes c LEFT JOIN stages f ON f.id = c.from_stage_id"
        " LEFT JOIN stages t ON t.id = c.to_stage_id LEFT JOIN public.identities i ON i.id = c.changed_by_id"
        " WHERE c.deal_id = $1 ORDER BY c.changed_at DESC, c.id DESC", [deal_id])


async def stage_history(actor: Actor, deal_id: int) -> list[dict[str, Any]]:
    """Every stage change of a deal, newest first: from, to, who and when."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        session.require_fields(OBJECT, ["stage"])
        await load_for_change(session, deal_id)
        return await _history(session, deal_id)


async def form_choices(actor: Actor) -> dict[str, Any]:
    """What the deal form offers: pipelines with their stages, the members a deal may be assigned to
    (the actor's scope: a 'sales' member assigns to themselves only) and the hidden fields."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        params: list[Any] = [actor.tenant_id]
        scope = scope_clause(session, params, "m.identity_id")
        members = await session.tx.execute_query_dict(
            "SELECT i.id, coalesce(nullif(i.display_name, ''), i.email) AS name FROM public.memberships m"
            " JOIN public.identities i ON i.id = m.identity_id WHERE m.tenant_id = $1 AND m.is_active"
            + (f" AND {scope}" if scope else "") + " ORDER BY lower(i.email)", params)
        return {"pipelines": await read_pipelines(session), "members": members,
                "hidden": session.policy.hidden_fields(OBJECT)}
