"""Reading a tenant's audit log: filters and keyset pagination, newest first.

Used by the viewer, the API and exports, always inside the tenant's scope; the caller
checks the permission ("manage_settings") before calling. Diff values encrypted per person
(kith.platform.audit.subjects) come back in clear, or as "[erased]" once the person's key
was destroyed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kith.platform.access.policy import Policy
from kith.platform.audit.log import raw_connection
from kith.platform.audit.subjects import open_diffs

if TYPE_CHECKING:
    from kith.platform.access.session import TenantSession

MAX_PAGE = 200
_SELECT = (
    "SELECT seq, at, actor_kind, actor_id, token_id, actor_label, ip, user_agent, request_id,"
    " object_type, object_id, action, diff::text AS diff, prev_hash, hash, key_id FROM audit_log"
)


@dataclass(frozen=True)
class AuditFilter:
    """What the viewer narrows entries by; empty fields match everything.

    actor: an email (or part of one, any case) or an identity id; action: an action or the
    start of one ("contact" finds "contact.update"); since/until: aware datetimes, until excluded.
    """

    actor: str = ""
    object_type: str = ""
    object_id: str = ""
    action: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def described(self) -> dict[str, str]:
        """The filters in use, as text (what an export's own audit entry records)."""
        out = {k: (v.isoformat() if isinstance(v, datetime) else str(v)) for k, v in asdict(self).items() if v}
        return dict(sorted(out.items()))


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor_kind: str
    actor_id: str
    token_id: int | None
    actor_label: str
    ip: str
    user_agent: str
    request_id: str
    object_type: str
    object_id: str
    action: str
    diff: Any
    prev_hash: str
    hash: str
    key_id: str

    def as_json(self) -> dict[str, Any]:
        """The entry as a JSON-ready dict (time in ISO 8601, UTC)."""
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data


@dataclass(frozen=True)
class AuditPage:
    items: list[AuditEntry]
    next_before: int | None  # pass as `before_seq` for the next (older) page


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(f: AuditFilter, before_seq: int | None, through_seq: int | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if f.actor:
        actor = f.actor.strip()
        if actor.isdigit():
            clauses.append(f"actor_id = {param(actor)}")
        else:
            clauses.append(f"actor_label ILIKE {param('%' + _like_escape(actor) + '%')}")
    if f.object_type:
        clauses.append(f"object_type = {param(f.object_type.strip())}")
    if f.object_id:
        clauses.append(f"object_id = {param(f.object_id.strip())}")
    if f.action:
        action = f.action.strip()
        clauses.append(f"(action = {param(action)} OR action LIKE {param(_like_escape(action) + '.%')})")
    if f.since is not None:
        clauses.append(f"at >= {param(f.since)}")
    if f.until is not None:
        clauses.append(f"at < {param(f.until)}")
    if before_seq is not None:
        clauses.append(f"seq < {param(before_seq)}")
    if through_seq is not None:
        clauses.append(f"seq <= {param(through_seq)}")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _entry(row: Any) -> AuditEntry:
    values = dict(row)
    values["diff"] = None if values["diff"] is None else json.loads(values["diff"])
    return AuditEntry(**values)


async def _entries(tx: Any, rows: list[Any]) -> list[AuditEntry]:
    entries = [_entry(r) for r in rows]
    diffs = await open_diffs(raw_connection(tx), [e.diff for e in entries])
    return [replace(e, diff=d) if d is not e.diff else e for e, d in zip(entries, diffs, strict=True)]


async def list_entries(
    tx: Any, f: AuditFilter, *, before_seq: int | None = None, limit: int = 50, through_seq: int | None = None
) -> AuditPage:
    """One page of entries matching `f`, newest first, older than `before_seq` (keyset)."""
    limit = max(1, min(limit, MAX_PAGE))
    where, params = _where(f, before_seq, through_seq)
    params.append(limit + 1)
    rows = await raw_connection(tx).fetch(f"{_SELECT}{where} ORDER BY seq DESC LIMIT ${len(params)}", *params)
    items = await _entries(tx, list(rows[:limit]))
    return AuditPage(items=items, next_before=items[-1].seq if len(rows) > limit else None)


def redact_for(policy: Policy, entries: list[AuditEntry]) -> list[AuditEntry]:
    """The entries without the diff values of fields hidden from the reader's role: a role
    that may not see contacts.phone must not read it in the log either."""
    out: list[AuditEntry] = []
    for entry in entries:
        hidden = policy.hidden_fields(entry.object_type)
        if hidden and isinstance(entry.diff, dict) and hidden & entry.diff.keys():
            entry = replace(entry, diff={k: v for k, v in entry.diff.items() if k not in hidden})
        out.append(entry)
    return out


async def read_entries(
    session: TenantSession, f: AuditFilter, *, before_seq: int | None = None, limit: int = 50,
    through_seq: int | None = None,
) -> AuditPage:
    """One page of the log for the session's actor: the viewer, the API and exports read here.

    Needs the workspace permission "manage_settings"; diffs lose the fields hidden from the
    reader's role.
    """
    session.policy.require_manage("manage_settings")
    page = await list_entries(session.tx, f, before_seq=before_seq, limit=limit, through_seq=through_seq)
    return replace(page, items=redact_for(session.policy, page.items))


async def head_seq(tx: Any) -> int:
    """The newest entry's seq (0 when the log is empty)."""
    return int(await raw_connection(tx).fetchval("SELECT coalesce(max(seq), 0) FROM audit_log"))


async def entries_about(tx: Any, object_type: str, object_id: str | int) -> list[AuditEntry]:
    """Every entry about one object, archived ones included, oldest first, values decrypted
    (what a data-subject export holds)."""
    columns = _SELECT.split(" FROM ", 1)[0]
    rows = await raw_connection(tx).fetch(
        f"{columns} FROM audit_archive WHERE object_type = $1 AND object_id = $2"
        f" UNION ALL {columns} FROM audit_log WHERE object_type = $1 AND object_id = $2 ORDER BY seq",
        object_type, str(object_id))
    return await _entries(tx, list(rows))
