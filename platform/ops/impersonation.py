"""Impersonation: an operator acting as one member of a workspace, for a limited time.

The only way an operator reaches a workspace's pages. Starting one needs a reason and is
recorded in the platform's log and the workspace's own ("ops.impersonate.start"); so is
ending it ("ops.impersonate.end"). It is named by a random cookie token (SHA-256 stored)
scoped to the workspace's path, `/t/<slug>`, so it reaches nothing else: not /account, not
another workspace. The edge (kith.web.edge) resolves it into the request's caller; the
actor it builds has kind "operator", the member's role and identity (so record scopes and
ownership behave as for the member) and a label naming the operator, so every change made
meanwhile is attributed to the operator in the workspace's audit log.

It stops working at its expiry (KITH_IMPERSONATION_MINUTES after the start; the start entry
records the expiry, so the workspace sees the window), when ended, when the operator signs
out of the console or their console session expires, when the operator is disabled, and
when the member's membership ends.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.backends.base.client import TransactionalDBClient

from kith.platform.config import get_settings
from kith.platform.db import platform_tx, tenant_scope
from kith.platform.identity.events import ClientInfo
from kith.platform.identity.models import Identity, Membership
from kith.platform.ops.audit import clean_reason, record_ops_action
from kith.platform.ops.operators import Operator, token_hash

COOKIE_NAME = "kith_impersonation"


class ImpersonationError(ValueError):
    """An impersonation that cannot start, with a message the operator can act on."""


@dataclass(frozen=True)
class Impersonation:
    """One impersonation, as the console lists it."""

    id: int
    operator_id: int
    operator_email: str
    operator_session_id: int | None
    tenant_id: int
    identity_id: int
    identity_email: str
    reason: str
    started_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    end_reason: str | None

    @property
    def live(self) -> bool:
        return self.ended_at is None and self.expires_at > datetime.now(UTC)

    @property
    def state(self) -> str:
        """active, ended, signed out or expired."""
        if self.ended_at is not None:
            return "signed out" if self.end_reason == "signed_out" else "ended"
        return "active" if self.live else "expired"


@dataclass(frozen=True)
class StartedImpersonation:
    """A new impersonation: the raw token for the cookie (shown to no one), and where it works."""

    id: int
    token: str
    tenant_slug: str
    expires_at: datetime


@dataclass(frozen=True)
class ActiveImpersonation:
    """A live impersonation, as the edge resolves it for one request."""

    id: int
    operator: Operator
    identity: Identity
    membership: Membership
    expires_at: datetime

    @property
    def label(self) -> str:
        """How the workspace's audit log names whoever acts: the operator, as the member."""
        return f"{self.operator.label} as {self.identity.email}"

    def actor_extra(self) -> dict[str, str]:
        """What an Actor built for this request carries beside its label."""
        return {"operator_id": str(self.operator.id), "impersonation_id": str(self.id)}


_SELECT = (
    "SELECT i.id, i.operator_id, o.email AS operator_email, i.operator_session_id, i.tenant_id, i.identity_id,"
    " p.email AS identity_email, i.reason, i.started_at, i.expires_at, i.ended_at, i.end_reason"
    " FROM public.impersonation_sessions i JOIN public.operators o ON o.id = i.operator_id"
    " JOIN public.identities p ON p.id = i.identity_id"
)


def _row(row: dict[str, Any]) -> Impersonation:
    return Impersonation(**row)


def lifetime() -> timedelta:
    """How long an impersonation lasts (KITH_IMPERSONATION_MINUTES)."""
    return timedelta(minutes=get_settings().impersonation_minutes)


async def _end_in(tx: TransactionalDBClient, operator: Operator, client: ClientInfo, tenant_id: int, slug: str,
                  where: str, args: list[Any]) -> list[Impersonation]:
    rows = await tx.execute_query_dict(
        "UPDATE public.impersonation_sessions i SET ended_at = now(), end_reason = 'ended'"
        f" WHERE i.ended_at IS NULL AND {where} RETURNING i.id", args)
    ended: list[Impersonation] = []
    for row in rows:
        found = await tx.execute_query_dict(f"{_SELECT} WHERE i.id = $1", [row["id"]])
        item = _row(found[0])
        await record_ops_action(
            tx, operator, client, tenant_id=tenant_id, tenant_slug=slug, action="ops.impersonate.end",
            object_type="identity", object_id=item.identity_id,
            detail={"impersonation_id": item.id, "as": item.identity_email,
                    "expired": item.expires_at <= datetime.now(UTC)})
        ended.append(item)
    return ended


async def start_impersonation(operator: Operator, operator_session_id: int, *, tenant_id: int, identity_id: int,
                              reason: str, client: ClientInfo) -> StartedImpersonation:
    """Start acting as an active member of an active workspace, audited in both logs.

    An impersonation of the same workspace already running from this console session ends
    first (its cookie is about to be replaced). Raises ReasonRequired for a blank reason and
    ImpersonationError when the workspace or member is not there.
    """
    why = clean_reason(reason)
    raw = secrets.token_urlsafe(32)
    async with tenant_scope(tenant_id) as tx:
        tenants = await tx.execute_query_dict(
            "SELECT slug, status FROM public.tenants WHERE id = $1", [tenant_id])
        if not tenants or tenants[0]["status"] != "active":
            raise ImpersonationError("Only an active workspace can be impersonated; reactivate it first.")
        slug = str(tenants[0]["slug"])
        members = await tx.execute_query_dict(
            "SELECT i.email, m.role FROM public.memberships m JOIN public.identities i ON i.id = m.identity_id"
            " WHERE m.tenant_id = $1 AND m.identity_id = $2 AND m.is_active", [tenant_id, identity_id])
        if not members:
            raise ImpersonationError("That person is not an active member of this workspace.")
        await _end_in(tx, operator, client, tenant_id, slug, "i.operator_session_id = $1 AND i.tenant_id = $2",
                      [operator_session_id, tenant_id])
        expires = datetime.now(UTC) + lifetime()
        rows = await tx.execute_query_dict(
            "INSERT INTO public.impersonation_sessions (token_hash, operator_id, operator_session_id, tenant_id,"
            " identity_id, reason, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            [token_hash(raw), operator.id, operator_session_id, tenant_id, identity_id, why, expires])
        impersonation_id = int(rows[0]["id"])
        await record_ops_action(
            tx, operator, client, tenant_id=tenant_id, tenant_slug=slug, action="ops.impersonate.start",
            object_type="identity", object_id=identity_id,
            detail={"reason": why, "impersonation_id": impersonation_id, "as": str(members[0]["email"]),
                    "role": str(members[0]["role"]), "expires_at": expires.isoformat()})
    return StartedImpersonation(impersonation_id, raw, slug, expires)


async def end_impersonation(operator: Operator, impersonation_id: int, client: ClientInfo) -> Impersonation | None:
    """End one of the operator's impersonations (live or expired but not yet marked), audited
    in both logs. Returns it, or None when it is not the operator's or was already ended."""
    found = await impersonation(impersonation_id)
    if found is None or found.operator_id != operator.id:
        return None
    if found.ended_at is not None:
        return found
    async with tenant_scope(found.tenant_id) as tx:
        tenants = await tx.execute_query_dict("SELECT slug FROM public.tenants WHERE id = $1", [found.tenant_id])
        ended = await _end_in(tx, operator, client, found.tenant_id, str(tenants[0]["slug"]),
                              "i.id = $1 AND i.operator_id = $2", [impersonation_id, operator.id])
    return ended[0] if ended else found


async def impersonation(impersonation_id: int) -> Impersonation | None:
    """One impersonation by id, or None."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(f"{_SELECT} WHERE i.id = $1", [impersonation_id])
    return _row(rows[0]) if rows else None


async def impersonations_of(tx: TransactionalDBClient, *, tenant_id: int | None = None,
                            operator_session_id: int | None = None, limit: int = 20) -> list[Impersonation]:
    """The newest impersonations of a workspace, or of a console session, inside `tx`."""
    clauses, args = [], []
    if tenant_id is not None:
        args.append(tenant_id)
        clauses.append(f"i.tenant_id = ${len(args)}")
    if operator_session_id is not None:
        args.append(operator_session_id)
        clauses.append(f"i.operator_session_id = ${len(args)}")
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    args.append(limit)
    rows = await tx.execute_query_dict(f"{_SELECT}{where} ORDER BY i.started_at DESC LIMIT ${len(args)}", args)
    return [_row(r) for r in rows]


async def load_impersonation(raw: str, tenant_id: int, tx: TransactionalDBClient) -> ActiveImpersonation | None:
    """The live impersonation a cookie names in this workspace, inside the edge's transaction:
    not ended or expired, its operator enabled and still signed in to the console, and the
    member still active. None otherwise."""
    if not raw:
        return None
    rows = await tx.execute_query_dict(
        "SELECT i.id, i.expires_at, o.id AS op_id, o.email AS op_email, o.display_name AS op_name, m.id AS mid"
        " FROM public.impersonation_sessions i"
        " JOIN public.operators o ON o.id = i.operator_id AND o.enabled"
        " JOIN public.operator_sessions s ON s.id = i.operator_session_id AND s.stage = 'active'"
        "  AND s.expires_at > now()"
        " JOIN public.memberships m ON m.tenant_id = i.tenant_id AND m.identity_id = i.identity_id AND m.is_active"
        " WHERE i.token_hash = $1 AND i.tenant_id = $2 AND i.ended_at IS NULL AND i.expires_at > now()",
        [token_hash(raw), tenant_id])
    if not rows:
        return None
    row = rows[0]
    membership = await Membership.filter(id=row["mid"]).using_db(tx).select_related("identity").get()
    return ActiveImpersonation(
        id=int(row["id"]), operator=Operator(int(row["op_id"]), str(row["op_email"]), str(row["op_name"])),
        identity=membership.identity, membership=membership, expires_at=row["expires_at"])
