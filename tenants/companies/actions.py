"""Changing companies. Each action checks the actor's permissions, changes data and writes its
audit entries in one transaction inside the tenant's scope.

`update_in` and `delete_in` do the same inside a session the caller already holds (the generic
bulk edit, bulk assign and bulk delete use them); the actions are thin wrappers around them.

Deleting a company never orphans anything silently: a company with deals or orders is refused
(CompanyInUse), and one with contacts needs a decision, unlink them or delete them with it
(CompanyHasContacts otherwise).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.companies.errors import CompanyHasContacts, CompanyInUse, InvalidFields
from kith.tenants.companies.queries import (
    OBJECT,
    check_owner,
    clean_custom,
    load_for_change,
    scope_clause,
    visible_row,
)
from kith.tenants.companies.schemas import CompanyIn, CompanyPatch
from kith.tenants.companies.spec import SPEC
from kith.tenants.contacts import actions as contact_actions
from kith.tenants.records.kinds import RecordKind, register_kind

ContactsChoice = Literal["unlink", "delete"] | None
_COLUMNS = ("name", "domain", "industry", "size", "phone", "address", "city", "country", "notes", "owner_id", "tags",
            "custom")
_CASTS = {"custom": "::jsonb", "tags": "::text[]"}
_NULLABLE = ("owner_id",)
_OWNER = _COLUMNS.index("owner_id") + 1  # its placeholder number in the INSERT


def contacts_choice(raw: str | None) -> ContactsChoice:
    """What a request said about a deleted company's contacts: "unlink", "delete" or nothing
    (None); ValueError for anything else."""
    if raw == "unlink":
        return "unlink"
    if raw == "delete":
        return "delete"
    if raw in (None, ""):
        return None
    raise ValueError("contacts must be unlink or delete")


def _sql_value(column: str, value: Any) -> Any:
    return json.dumps(value) if column == "custom" else value


async def create_company(actor: Actor, data: CompanyIn) -> dict[str, Any]:
    """Add a company, owned by the actor unless `owner_id` names another member (who must be an
    active member, and one the actor's record scope reaches)."""
    async with acting_as(actor) as session:
        return await create_in(session, data)


async def create_in(session: TenantSession, data: CompanyIn) -> dict[str, Any]:
    """create_company inside the caller's session (lead conversion, imports)."""
    session.require(OBJECT, "create")
    session.require_fields(OBJECT, data.model_fields_set)
    values = data.model_dump()
    if "owner_id" in data.model_fields_set:
        await check_owner(session, OBJECT, data.owner_id)
    else:
        values["owner_id"] = session.actor.identity_id
    values["custom"] = await clean_custom(session, OBJECT, data.custom)
    placeholders = ", ".join(f"${i}{_CASTS.get(c, '')}" for i, c in enumerate(_COLUMNS, start=1))
    rows = await session.tx.execute_query_dict(
        f"INSERT INTO companies ({', '.join(_COLUMNS)}, created_by_id, claimed_at)"  # noqa: S608 - fixed names
        f" VALUES ({placeholders}, ${len(_COLUMNS) + 1}, CASE WHEN ${_OWNER}::bigint IS NULL THEN NULL ELSE now() END)"
        " RETURNING *",
        [*(_sql_value(c, values[c]) for c in _COLUMNS), session.actor.identity_id],
    )
    row = rows[0]
    diff = {c: [None, values[c]] for c in _COLUMNS if values[c] not in (None, "", [], {})}
    await session.audit("company.create", OBJECT, row["id"], diff)
    return visible_row(session, row)


async def update_company(actor: Actor, company_id: int, changes: CompanyPatch) -> dict[str, Any]:
    """Change the fields given in `changes`; others keep their values. A new name follows to the
    company_name of its contacts (each contact's change audited), so search by company keeps working."""
    async with acting_as(actor) as session:
        return await update_in(session, company_id, changes)


async def update_in(session: TenantSession, company_id: int, changes: CompanyPatch) -> dict[str, Any]:
    """update_company inside the caller's session (bulk edit and bulk assign use it)."""
    given = {k: v for k, v in changes.model_dump(exclude_unset=True).items() if v is not None or k in _NULLABLE}
    if "name" in given and not given["name"]:
        raise InvalidFields({"name": "This field cannot be empty."})
    session.require(OBJECT, "edit")
    session.require_fields(OBJECT, given)
    before = await load_for_change(session, company_id, lock=True)
    before["tags"] = list(before["tags"] or [])
    if "owner_id" in given and given["owner_id"] != before["owner_id"]:
        await check_owner(session, OBJECT, given["owner_id"])
    if "custom" in given:
        given["custom"] = await clean_custom(session, OBJECT, given["custom"], existing=before["custom"])
    diff = {k: [before[k], v] for k, v in given.items() if before[k] != v}
    if not diff:
        return visible_row(session, before)
    assignments = [f"{col} = ${i}{_CASTS.get(col, '')}" for i, col in enumerate(diff, start=2)]
    if "owner_id" in diff:  # the pool's clock: who holds it since when
        assignments.append("pooled_at = now()" if diff["owner_id"][1] is None else "claimed_at = now()")
    rows = await session.tx.execute_query_dict(
        f"UPDATE companies SET {', '.join(assignments)}, updated_at = now() WHERE id = $1 RETURNING *",  # noqa: S608
        [company_id, *(_sql_value(col, new) for col, (_, new) in diff.items())],
    )
    await session.audit("company.update", OBJECT, company_id, diff)
    if "name" in diff:
        await _rename_contacts(session, company_id, diff["name"][1])
    return visible_row(session, rows[0])


async def _rename_contacts(session: TenantSession, company_id: int, name: str) -> None:
    """Give the company's contacts its new name as company_name, each change audited as the
    contact's own (its values encrypted with the contact's key)."""
    rows = await session.tx.execute_query_dict(
        "UPDATE contacts c SET company_name = $2, updated_at = now() FROM contacts old"
        " WHERE c.id = old.id AND c.company_id = $1 AND c.company_name <> $2"
        " RETURNING c.id, old.company_name AS old_name", [company_id, name])
    for row in rows:
        await session.audit("contact.update", "contacts", row["id"], {"company_name": [row["old_name"], name]},
                            subject=("contacts", row["id"]))


async def _blockers(session: TenantSession, company_id: int) -> tuple[dict[str, int], int, int]:
    """What stands in the way of deleting a company: ({kind: count} of deals and orders that need
    it, contacts in all, contacts outside the actor's contacts scope), counted in one query."""
    params: list[Any] = [company_id]
    scope = scope_clause(session, "contacts", "owner_id", params)
    rows = await session.tx.execute_query_dict(
        "SELECT (SELECT count(*) FROM deals WHERE company_id = $1) AS deals,"
        " (SELECT count(*) FROM orders WHERE company_id = $1) AS orders,"
        " (SELECT count(*) FROM contacts WHERE company_id = $1) AS contacts,"
        " (SELECT count(*) FROM contacts WHERE company_id = $1"
        + (f" AND NOT ({scope})" if scope else " AND false") + ") AS others", params)
    row = rows[0]
    blocking = {k: int(row[k]) for k in ("deals", "orders") if row[k]}
    return blocking, int(row["contacts"]), int(row["others"])


async def delete_company(actor: Actor, company_id: int, contacts: ContactsChoice = None) -> dict[str, int]:
    """Delete a company. Its contacts need a decision: `contacts="unlink"` keeps them without a
    company, `"delete"` deletes them too (each contact's change audited); with None a company that
    has contacts is refused (CompanyHasContacts). Deals or orders, or contacts the actor may not
    change, refuse the deletion (CompanyInUse). All or nothing. Returns {"contacts_unlinked": n,
    "contacts_deleted": n}."""
    async with acting_as(actor) as session:
        return await _delete(session, company_id, contacts)


async def deletion_facts(actor: Actor, company_id: int) -> dict[str, Any]:
    """What deleting a company would touch, for the page that asks: {"company", "contacts" (how
    many it has), "deals", "orders", "others" (its contacts outside the actor's scope)}."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        company = visible_row(session, await load_for_change(session, company_id))
        blocking, linked, others = await _blockers(session, company_id)
        return {"company": company, "contacts": linked, "deals": blocking.get("deals", 0),
                "orders": blocking.get("orders", 0), "others": others}


async def delete_in(session: TenantSession, company_id: int) -> None:
    """delete_company inside the caller's session with no decision about contacts (bulk delete):
    a company with contacts, deals or orders is refused."""
    await _delete(session, company_id, None)


async def _delete(session: TenantSession, company_id: int, contacts: ContactsChoice) -> dict[str, int]:
    session.require(OBJECT, "delete")
    before = await load_for_change(session, company_id, lock=True)
    blocking, linked, others = await _blockers(session, company_id)
    if blocking:
        raise CompanyInUse(company_id, blocking)
    if linked and contacts is None:
        raise CompanyHasContacts(company_id, linked)
    if others:
        raise CompanyInUse(company_id, {"contacts_of_others": others})
    done = {"contacts_unlinked": 0, "contacts_deleted": 0}
    if linked:
        session.require("contacts", "delete" if contacts == "delete" else "edit")
        ids = [r["id"] for r in await session.tx.execute_query_dict(
            "SELECT id FROM contacts WHERE company_id = $1 ORDER BY id FOR UPDATE", [company_id])]
        for contact_id in ids:
            if contacts == "delete":
                await contact_actions.delete_in(session, contact_id)
                done["contacts_deleted"] += 1
            else:
                await session.tx.execute_query(
                    "UPDATE contacts SET company_id = NULL, updated_at = now() WHERE id = $1", [contact_id])
                await session.audit("contact.update", "contacts", contact_id, {"company_id": [company_id, None]},
                                    subject=("contacts", contact_id))
                done["contacts_unlinked"] += 1
    await session.tx.execute_query("DELETE FROM companies WHERE id = $1", [company_id])
    gone = {c: [before[c], None] for c in _COLUMNS if before[c] not in (None, "", [], {})}
    await session.audit("company.delete", OBJECT, company_id, gone)
    return done


register_kind(RecordKind(object_type=OBJECT, spec=SPEC, label="Companies", path="companies",
                         patch_model=CompanyPatch, update_in=update_in, delete_in=delete_in))
