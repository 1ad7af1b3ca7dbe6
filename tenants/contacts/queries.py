"""Reading contacts: search and keyset pagination, always inside the tenant scope."""

from __future__ import annotations

from dataclasses import dataclass

from kith.platform.db import tenant_scope
from kith.tenants.contacts.models import Contact

MAX_PAGE = 100


class ContactNotFound(LookupError):
    """No such contact in this workspace (the same answer for 'missing' and 'not yours')."""


@dataclass
class Page:
    items: list[Contact]
    next_cursor: str | None


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def parse_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    if not cursor.isdigit():
        raise ValueError("cursor must be the next_cursor value of a previous page")
    return int(cursor)


async def list_contacts(tenant_id: int, *, q: str = "", limit: int = 25, cursor: str | None = None) -> Page:
    """Newest first; `q` matches any part of name, email, phone or company (Chinese too)."""
    limit = max(1, min(limit, MAX_PAGE))
    before = parse_cursor(cursor)
    where, params = [], []
    if q.strip():
        params.append(_like_pattern(q.strip()))
        # the same expression as contacts_search_idx, so the trigram index serves it
        where.append(f"(name || ' ' || email || ' ' || phone || ' ' || company_name) ILIKE ${len(params)}")
    if before is not None:
        params.append(before)
        where.append(f"id < ${len(params)}")
    params.append(limit + 1)
    sql = (
        "SELECT * FROM contacts"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY id DESC LIMIT ${len(params)}"
    )
    async with tenant_scope(tenant_id) as tx:
        rows = await tx.execute_query_dict(sql, params)
    items = [Contact(**row) for row in rows[:limit]]
    for item in items:
        item._saved_in_db = True
    next_cursor = str(items[-1].id) if len(rows) > limit else None
    return Page(items=items, next_cursor=next_cursor)


async def get_contact(tenant_id: int, contact_id: int) -> Contact:
    async with tenant_scope(tenant_id):
        contact = await Contact.filter(id=contact_id).first()
    if contact is None:
        raise ContactNotFound(f"contact {contact_id} not found")
    return contact


async def count_contacts(tenant_id: int) -> int:
    async with tenant_scope(tenant_id):
        return await Contact.all().count()
