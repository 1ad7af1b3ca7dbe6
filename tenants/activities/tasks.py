"""Tasks: something a member has to do, by a time, perhaps about some records.

A task belongs to its assignee: the 'tasks' scope of a role reaches the tasks assigned to the
people it covers (own: oneself; team: one's teams; all). Whoever creates a task may assign it
only within that reach, to an active member. Completing a task stamps completed_at and marks
its records as followed up (last_activity_at). A change of due time or assignee clears
reminded_at, so the reminder job reminds again.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.tenants.activities.events import touch_followed_up
from kith.tenants.activities.links import LINK_FIELDS, InvalidInput, require_record, resolve_links
from kith.tenants.activities.schemas import TaskIn, TaskPatch

OBJECT = "tasks"
MAX_PAGE = 100
_COLUMNS = ("title", "notes", "due_at", "status", "assignee_id", *LINK_FIELDS)
_SELECT = ("SELECT t.*, i.email AS assignee_email FROM tasks t"
           " LEFT JOIN public.identities i ON i.id = t.assignee_id")
_CURSOR = re.compile(r"^(n|-?\d{1,19})_(\d{1,19})$")


class TaskNotFound(LookupError):
    """No such task in this workspace, or not one the actor may see (the same answer)."""


def _audit_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def task_row(session: TenantSession, row: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """A stored task as the actor may see it, with `overdue` worked out."""
    now = now or datetime.now(UTC)
    keep = ("id", "title", "notes", "due_at", "status", "assignee_id", "assignee_email", "reminded_at",
            "completed_at", "created_by_id", "created_at", "updated_at", *LINK_FIELDS)
    values = session.visible(OBJECT, {k: row.get(k) for k in keep})
    values["overdue"] = row["status"] == "open" and row["due_at"] is not None and row["due_at"] < now
    values["links"] = {f: row.get(f) for f in LINK_FIELDS if row.get(f) is not None}
    return values


def _scope(session: TenantSession, params: list[Any]) -> str | None:
    owners = session.policy.owner_ids(OBJECT)
    if owners is None:
        return None
    params.append(sorted(owners))
    return f"t.assignee_id = ANY(${len(params)}::bigint[])"


async def load_task(session: TenantSession, task_id: int, *, lock: bool = False) -> dict[str, Any]:
    """A task in the actor's scope, or TaskNotFound."""
    params: list[Any] = [task_id]
    scope = _scope(session, params)
    rows = await session.tx.execute_query_dict(
        f"{_SELECT} WHERE t.id = $1" + (f" AND {scope}" if scope else "") + (" FOR UPDATE OF t" if lock else ""),
        params)
    if not rows:
        raise TaskNotFound(f"task {task_id} not found")
    return rows[0]


def _cursor_of(row: dict[str, Any]) -> str:
    due = row["due_at"]
    if due is None:
        return f"n_{row['id']}"
    delta = due.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return f"{(delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds}_{row['id']}"


def _after(cursor: str, params: list[Any]) -> str:
    match = _CURSOR.match(cursor)
    if not match:
        raise ValueError("cursor must be the next_cursor value of a previous page")
    params.append(int(match.group(2)))
    last_id = f"${len(params)}"
    if match.group(1) == "n":
        return f"(t.due_at IS NULL AND t.id > {last_id})"
    micros = int(match.group(1))
    try:
        due = datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)
    except (OverflowError, OSError, ValueError):
        raise ValueError("cursor must be the next_cursor value of a previous page") from None
    params.append(due)
    return f"(t.due_at > ${len(params)} OR (t.due_at = ${len(params)} AND t.id > {last_id}) OR t.due_at IS NULL)"


async def list_tasks(
    actor: Actor, *, mine: bool = True, status: str | None = "open", limit: int = 25, cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Tasks by due time (those without one last): the actor's own (`mine`) or every task the
    actor's scope reaches; `status` None for every status. Returns the page and the next cursor."""
    limit = max(1, min(limit, MAX_PAGE))
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        params: list[Any] = []
        where: list[str] = []
        if mine:
            params.append(actor.identity_id)
            where.append(f"t.assignee_id = ${len(params)}")
        scope = _scope(session, params)
        if scope:
            where.append(scope)
        if status:
            params.append(status)
            where.append(f"t.status = ${len(params)}")
        if cursor:
            where.append(_after(cursor, params))
        params.append(limit + 1)
        rows = await session.tx.execute_query_dict(
            _SELECT + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY t.due_at ASC NULLS LAST, t.id ASC LIMIT ${len(params)}", params)
        now = datetime.now(UTC)
        items = [task_row(session, row, now) for row in rows[:limit]]
    return items, (_cursor_of(rows[limit - 1]) if len(rows) > limit else None)


async def get_task(actor: Actor, task_id: int) -> dict[str, Any]:
    """One task as the actor may see it."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        return task_row(session, await load_task(session, task_id))


async def assignable_members(actor: Actor) -> list[dict[str, Any]]:
    """The active members the actor may assign a task to (id, email, display_name), by email."""
    async with acting_as(actor) as session:
        params: list[Any] = [actor.tenant_id]
        owners = session.policy.owner_ids(OBJECT)
        extra = ""
        if owners is not None:
            params.append(sorted(owners))
            extra = " AND i.id = ANY($2::bigint[])"
        return await session.tx.execute_query_dict(
            "SELECT i.id, i.email, i.display_name FROM public.memberships m"
            " JOIN public.identities i ON i.id = m.identity_id"
            f" WHERE m.tenant_id = $1 AND m.is_active{extra} ORDER BY lower(i.email)", params)


async def _check_assignee(session: TenantSession, assignee_id: int) -> None:
    rows = await session.tx.execute_query_dict(
        "SELECT 1 FROM public.memberships WHERE tenant_id = $1 AND identity_id = $2 AND is_active",
        [session.actor.tenant_id, assignee_id])
    if not rows:
        raise InvalidInput({"assignee_id": "Choose an active member of this workspace."})
    owners = session.policy.owner_ids(OBJECT)
    if owners is not None and assignee_id not in owners:
        scope = session.policy.scope(OBJECT)
        raise InvalidInput({"assignee_id": "You may assign tasks only to yourself." if scope == "own"
                            else "You may assign tasks only to members of your teams."})


async def create_task_in(session: TenantSession, data: TaskIn) -> dict[str, Any]:
    """Create a task inside an existing session (see create_task)."""
    session.require(OBJECT, "create")
    session.require_fields(OBJECT, [f for f in ("title", "notes") if getattr(data, f)])
    assignee = data.assignee_id or session.actor.identity_id
    if assignee is None:
        raise InvalidInput({"assignee_id": "Name the member who should do this task."})
    await _check_assignee(session, assignee)
    given = {f: getattr(data, f) for f in LINK_FIELDS}
    links = await resolve_links(session, given) if any(given.values()) else given
    done = data.status == "done"
    rows = await session.tx.execute_query_dict(
        "WITH t AS (INSERT INTO tasks (title, notes, due_at, status, assignee_id, company_id, contact_id, lead_id,"
        " deal_id, created_by_id, completed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
        " CASE WHEN $11 THEN now() END) RETURNING *)"
        " SELECT t.*, i.email AS assignee_email FROM t LEFT JOIN public.identities i ON i.id = t.assignee_id",
        [data.title, data.notes, data.due_at.astimezone(UTC) if data.due_at else None, data.status, assignee,
         *links.values(), session.actor.identity_id, done])
    row = rows[0]
    if done:
        await touch_followed_up(session, **links)
    diff = {k: [None, _audit_value(row[k])] for k in _COLUMNS if row[k] not in (None, "")}
    await session.audit("task.create", OBJECT, row["id"], diff)
    return task_row(session, row)


async def create_task(actor: Actor, data: TaskIn) -> dict[str, Any]:
    """Create a task, assigned to the actor unless another member (within the actor's reach) is
    named; its links, if any, must be records the actor may view."""
    async with acting_as(actor) as session:
        return await create_task_in(session, data)


async def _apply(session: TenantSession, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Write the changed columns of a task, with the bookkeeping they imply, audited."""
    diff = {k: [before[k], after[k]] for k in _COLUMNS if before[k] != after[k]}
    if not diff:
        return before
    extra: list[str] = []
    if "due_at" in diff or "assignee_id" in diff:
        extra.append("reminded_at = NULL")  # remind again about the new time or person
    if "status" in diff:
        status_param = list(diff).index("status") + 2  # SET expressions see the old row: use the new value
        extra.append(f"completed_at = CASE WHEN ${status_param}::text = 'done' THEN now() END")
    assignments = ", ".join([*(f"{col} = ${i}" for i, col in enumerate(diff, start=2)), *extra])
    rows = await session.tx.execute_query_dict(
        f"WITH t AS (UPDATE tasks SET {assignments}, updated_at = now() WHERE id = $1 RETURNING *)"  # noqa: S608
        " SELECT t.*, i.email AS assignee_email FROM t LEFT JOIN public.identities i ON i.id = t.assignee_id",
        [before["id"], *(new for _, new in diff.values())])
    if diff.get("status", [None, None])[1] == "done":
        await touch_followed_up(session, **{f: rows[0][f] for f in LINK_FIELDS})
    await session.audit("task.update", OBJECT, before["id"],
                        {k: [_audit_value(o), _audit_value(n)] for k, (o, n) in diff.items()})
    return rows[0]


async def update_task(actor: Actor, task_id: int, changes: TaskPatch) -> dict[str, Any]:
    """Change the fields given in `changes` of a task in the actor's scope. Setting status 'done'
    completes it (as complete_task); a new due time or assignee makes the reminder due again."""
    given = changes.model_dump(exclude_unset=True)
    for name in ("title", "notes", "status", "assignee_id"):
        if name in given and given[name] is None:
            raise InvalidInput({name: "This field cannot be empty."})
    async with acting_as(actor) as session:
        session.require(OBJECT, "edit")
        session.require_fields(OBJECT, [f for f in ("title", "notes") if f in given])
        before = await load_task(session, task_id, lock=True)
        if "assignee_id" in given and given["assignee_id"] != before["assignee_id"]:
            await _check_assignee(session, given["assignee_id"])
        for field in LINK_FIELDS:
            if given.get(field) is not None and given[field] != before[field]:
                await require_record(session, field, given[field])
        if isinstance(given.get("due_at"), datetime):
            given["due_at"] = given["due_at"].astimezone(UTC)
        after = {k: given.get(k, before[k]) for k in _COLUMNS}
        return task_row(session, await _apply(session, before, after))


async def complete_task(actor: Actor, task_id: int) -> dict[str, Any]:
    """Mark a task in the actor's scope done: completed_at is stamped and its records are marked
    followed up. A task already done stays as it is."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "edit")
        before = await load_task(session, task_id, lock=True)
        return task_row(session, await _apply(session, before, {**before, "status": "done"}))


async def delete_task(actor: Actor, task_id: int) -> None:
    """Delete a task in the actor's scope."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "delete")
        before = await load_task(session, task_id, lock=True)
        await session.tx.execute_query("DELETE FROM tasks WHERE id = $1", [task_id])
        await session.audit("task.delete", OBJECT, task_id,
                            {k: [_audit_value(before[k]), None] for k in _COLUMNS if before[k] not in (None, "")})
