"""The customer 360 view: a company (or a contact) with its contacts, deals, orders, open tasks,
service tickets and timeline, read in one transaction.

Each section is there only when the actor's role may view that kind of record, holds only the
records its scope of that kind reaches (a sales member sees their own deals, not a colleague's),
drops the fields the role hides, and lists at most `limit` records with the count of all it
reaches. Contacts' emails and phones shown here are audited as sensitive reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.activities.queries import timeline
from kith.tenants.companies import queries as companies
from kith.tenants.contacts import queries as contacts
from kith.tenants.records.custom import load_custom_fields

SECTION_LIMIT = 20
TIMELINE_LIMIT = 50
_COMPANY_BRIEF = ("id", "name", "domain", "industry", "city", "country", "owner_id")
_OWNER_KEYS = ("owner_id", "assignee_id")


@dataclass(frozen=True)
class _Part:
    """One section of the combined read: `columns` ((key, SQL expression), in output order) of
    `source` (FROM ... WHERE ..., with {id} standing for the record's parameter), limited to the
    actor's scope of `object_type` through `owner_column`, at most `limit` in `order`. `many`
    False is a single record (no count, no order)."""

    name: str
    object_type: str
    owner_column: str
    columns: tuple[tuple[str, str], ...]
    source: str
    order: str = ""
    many: bool = True


def _contacts_part(link: str) -> _Part:
    return _Part("contacts", "contacts", "owner_id",
                 tuple((c, c) for c in ("id", "name", "email", "phone", "title", "lifecycle_stage", "owner_id")),
                 f"FROM contacts WHERE {link} = {{id}}", "lower(name), id")


def _deals_part(link: str) -> _Part:
    return _Part("deals", "deals", "d.owner_id",
                 (("id", "d.id"), ("name", "d.name"), ("amount", "d.amount"), ("currency", "d.currency"),
                  ("expected_close", "d.expected_close"), ("stage_id", "d.stage_id"), ("stage", "s.name"),
                  ("stage_kind", "s.kind"), ("owner_id", "d.owner_id"), ("company_id", "d.company_id"),
                  ("contact_id", "d.contact_id")),
                 f"FROM deals d JOIN stages s ON s.id = d.stage_id WHERE d.{link} = {{id}}", "d.id DESC")


def _orders_part(link: str) -> _Part:
    return _Part("orders", "orders", "owner_id",
                 tuple((c, c) for c in ("id", "number", "order_date", "status", "total", "currency", "contact_id",
                                        "owner_id")),
                 f"FROM orders WHERE {link} = {{id}}", "order_date DESC, id DESC")


def _tasks_part(link: str) -> _Part:
    return _Part("tasks", "tasks", "assignee_id",
                 tuple((c, c) for c in ("id", "title", "due_at", "status", "assignee_id")),
                 f"FROM tasks WHERE status = 'open' AND {link} = {{id}}", "due_at NULLS LAST, id")


def _tickets_part(link: str) -> _Part:
    return _Part("tickets", "tickets", "owner_id",
                 tuple((c, c) for c in ("id", "subject", "status", "priority", "resolution_due_at", "owner_id")),
                 f"FROM tickets WHERE {link} = {{id}}", "id DESC")


_COMPANY_PART = _Part("company", "companies", "owner_id", tuple((c, c) for c in _COMPANY_BRIEF),
                      "FROM companies WHERE id = {id}", many=False)


async def _read_parts(session: TenantSession, parts: list[tuple[_Part, int]], limit: int,
                      known_owners: set[int]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int], dict[int, str]]:
    """Every part (with the id of the record it reads) and the labels of the members they name,
    in ONE statement: each part is a CTE, and `FULL JOIN ... ON false` puts their rows one after
    the other, each with its own columns (typed as stored) and the others' NULL. Returns the rows
    of each part (in its order, without the fields the role hides), the total each part reaches,
    and {identity id: label} of the owners named by the rows or `known_owners` (a superset: the
    caller keeps those its visible rows name). Parts the role may not view must not be given."""
    if not parts and not known_owners:
        return {}, {}, {}
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    ctes: list[str] = []
    owner_refs: list[str] = []
    limit_ref = param(limit) if any(part.many for part, _ in parts) else ""
    for part, record_id in parts:
        cols = [f'{expr} AS "{part.name}.{key}"' for key, expr in part.columns]
        where = part.source.format(id=param(record_id))
        scope = companies.scope_clause(session, part.object_type, part.owner_column, params)
        if scope:
            where += f" AND {scope}"
        if part.many:
            cols += [f'count(*) OVER () AS "{part.name}._total"',
                     f'row_number() OVER (ORDER BY {part.order}) AS "{part.name}._n"']
            where += f" ORDER BY {part.order} LIMIT {limit_ref}"
        ctes.append(f"{part.name} AS (SELECT {', '.join(cols)} {where})")
        owner_refs += [f'SELECT "{part.name}.{key}" FROM {part.name}' for key, _ in part.columns if key in _OWNER_KEYS]
    owner_refs.append(f"SELECT unnest({param(sorted(known_owners))}::bigint[])")
    ctes.append("people AS (SELECT id AS \"people.id\", coalesce(nullif(display_name, ''), email) AS \"people.label\""
                f" FROM public.identities WHERE id IN ({' UNION '.join(owner_refs)}))")
    names = [part.name for part, _ in parts] + ["people"]
    sql = (f"WITH {', '.join(ctes)} SELECT * FROM {names[0]}"  # noqa: S608 - fixed names
           + "".join(f" FULL JOIN {name} ON false" for name in names[1:]))
    rows = await session.tx.execute_query_dict(sql, params)
    found: dict[str, list[dict[str, Any]]] = {part.name: [] for part, _ in parts}
    totals: dict[str, int] = {part.name: 0 for part, _ in parts}
    labels: dict[int, str] = {}
    for row in rows:
        if row["people.id"] is not None:
            labels[int(row["people.id"])] = str(row["people.label"])
            continue
        for part, _ in parts:
            if row[f"{part.name}.id"] is not None:
                values = {key: row[f"{part.name}.{key}"] for key, _ in part.columns}
                if part.many:
                    values["_n"] = row[f"{part.name}._n"]
                    totals[part.name] = int(row[f"{part.name}._total"])
                found[part.name].append(values)
                break
    for part, _ in parts:
        items = sorted(found[part.name], key=lambda v: v.pop("_n", 0))
        found[part.name] = [session.visible(part.object_type, item) for item in items]
    return found, totals, labels


def _section(session: TenantSession, part: _Part | None, found: dict[str, list[dict[str, Any]]],
             totals: dict[str, int]) -> dict[str, Any] | None:
    """A section as the pages and the API show it: None when the role may not view its type."""
    if part is None:
        return None
    section = {"items": found[part.name], "total": totals[part.name]}
    if part.name == "deals" and "stage" in session.policy.hidden_fields("deals"):
        for item in section["items"]:
            item.pop("stage_id", None)
            item.pop("stage_kind", None)
    return section


def _viewable(session: TenantSession, *parts: _Part) -> list[_Part | None]:
    return [part if session.policy.can(part.object_type, "view") else None for part in parts]


def _people(labels: dict[int, str], *sections: Any) -> dict[int, str]:
    """Display names of the members the sections name (owners, assignees), for the pages."""
    ids: set[int] = set()
    for section in sections:
        items = section.get("items", []) if isinstance(section, dict) and "items" in section else [section]
        for item in items:
            if isinstance(item, dict):
                ids.update(v for k, v in item.items() if k in _OWNER_KEYS and v is not None)
    return {i: labels[i] for i in sorted(ids) if i in labels}


def _owner(row: dict[str, Any]) -> set[int]:
    return {int(row["owner_id"])} if row.get("owner_id") is not None else set()


async def company_overview(actor: Actor, company_id: int, *, limit: int = SECTION_LIMIT,
                           custom_fields: bool = False) -> dict[str, Any]:
    """A company's 360 view: {"company", "contacts", "deals", "orders", "tasks", "tickets", "timeline", "people"}
    (and the companies' "custom_fields" definitions when asked for, for the page);
    a section the role may not view is None. CompanyNotFound outside the actor's reach."""
    async with acting_as(actor) as session:
        session.require(companies.OBJECT, "view")
        company = companies.visible_row(session, await companies.load_for_change(session, company_id))
        contacts_part, deals_part, orders_part, tasks_part, tickets_part = _viewable(
            session, _contacts_part("company_id"), _deals_part("company_id"), _orders_part("company_id"),
            _tasks_part("company_id"), _tickets_part("company_id"))
        given = [(p, company_id) for p in (contacts_part, deals_part, orders_part, tasks_part, tickets_part)
                 if p is not None]
        found, totals, labels = await _read_parts(session, given, limit, _owner(company))
        people_section = _section(session, contacts_part, found, totals)
        result: dict[str, Any] = {
            "company": company,
            "contacts": people_section,
            "deals": _section(session, deals_part, found, totals),
            "orders": _section(session, orders_part, found, totals),
            "tasks": _section(session, tasks_part, found, totals),
            "tickets": _section(session, tickets_part, found, totals),
            # the company was just read through the actor's scope: the timeline need not read it again
            "timeline": await timeline(session, company_id=company_id, limit=TIMELINE_LIMIT, record_checked=True),
        }
        result["people"] = _people(labels, company, people_section, result["deals"], result["orders"],
                                   result["tasks"], result["tickets"])
        if custom_fields:
            result["custom_fields"] = await load_custom_fields(session.tx, companies.OBJECT)
        if people_section is not None:  # last: the read entry takes the tenant's audit lock
            await contacts.audit_disclosed(session, people_section["items"], listing=True)
        return result


async def contact_overview(actor: Actor, contact_id: int, *, limit: int = SECTION_LIMIT,
                           custom_fields: bool = False) -> dict[str, Any]:
    """A contact's 360 view: {"contact", "company", "deals", "orders", "tasks", "tickets", "timeline", "people"}
    (and the contacts' "custom_fields" definitions when asked for, for the page);
    "company" is None without a company or when the actor may not see it. ContactNotFound outside
    the actor's reach."""
    async with acting_as(actor) as session:
        session.require(contacts.OBJECT, "view")
        contact = contacts.visible_row(session, await contacts.load_for_change(session, contact_id))
        company_id = contact.get("company_id")
        company_part, deals_part, orders_part, tasks_part, tickets_part = _viewable(
            session, _COMPANY_PART, _deals_part("contact_id"), _orders_part("contact_id"), _tasks_part("contact_id"),
            _tickets_part("contact_id"))
        given = [(p, contact_id) for p in (deals_part, orders_part, tasks_part, tickets_part) if p is not None]
        if company_part is not None and company_id is not None:
            given.insert(0, (company_part, int(company_id)))
        found, totals, labels = await _read_parts(session, given, limit, _owner(contact))
        # the company in the actor's scope of companies, or None (also when it is out of reach)
        company = found["company"][0] if found.get("company") else None
        result: dict[str, Any] = {
            "contact": contact,
            "company": company,
            "deals": _section(session, deals_part, found, totals),
            "orders": _section(session, orders_part, found, totals),
            "tasks": _section(session, tasks_part, found, totals),
            "tickets": _section(session, tickets_part, found, totals),
            # the contact was just read through the actor's scope: the timeline need not read it again
            "timeline": await timeline(session, contact_id=contact_id, limit=TIMELINE_LIMIT, record_checked=True),
        }
        result["people"] = _people(labels, contact, company, result["deals"], result["orders"], result["tasks"],
                                   result["tickets"])
        if custom_fields:
            result["custom_fields"] = await load_custom_fields(session.tx, contacts.OBJECT)
        await contacts.audit_disclosed(session, [contact], listing=False)
        return result
