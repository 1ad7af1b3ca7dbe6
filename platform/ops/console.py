"""What the ops console reads and does, outside any impersonation.

It reads platform metadata only: workspaces, their members and roles, counts, the audit
log's entries without their diffs (diffs of contacts carry personal values; an operator
sees them only while impersonating someone in that workspace), and the outbox's failures
without addresses. The one per-tenant read, the contact count, runs through tenant_scope
like every access to tenant tables: one short transaction per workspace shown, so a page of
50 workspaces costs 50 transactions (fine at today's size; a counter kept by the contacts
actions would make it one query).

Actions (suspend, reactivate, extend a trial, comp a plan, resend an email verification link)
need a reason, and write the change, the workspace's audit entry and the platform's in one
transaction (kith.platform.ops.audit). Trial extensions and comps change billing's row through
billing's own functions, which refuse workspaces Stripe bills (Stripe's record would win at the
next webhook): there, support changes the subscription in Stripe.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from kith.platform.audit.entries import AuditEntry, AuditFilter, list_entries
from kith.platform.billing.actions import BillingError, Invoice, comp_plan_in, extend_trial_in, invoices_in
from kith.platform.billing.subscriptions import Subscription, load_subscription_in
from kith.platform.db import TenantUnavailable, platform_tx, tenant_scope
from kith.platform.identity.events import ClientInfo
from kith.platform.identity.verification import IssuedVerification, VerificationRefused, issue_verification_in
from kith.platform.ops.audit import clean_reason, record_ops_action
from kith.platform.ops.impersonation import Impersonation, impersonations_of
from kith.platform.ops.operators import Operator

PAGE_SIZE = 50
STATUSES = ("active", "suspended", "deleted")


class TenantActionError(ValueError):
    """An action that does not apply to the workspace as it is (e.g. suspending a suspended one)."""


def billing_available() -> bool:
    """Whether billing's plans (and the subscriptions they read) are part of this installation."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in
                   ("kith.platform.billing.plans", "kith.platform.billing.subscriptions"))
    except ModuleNotFoundError:  # the kith.platform.billing package itself is absent
        return False


async def _plans(tenant_ids: list[int]) -> dict[int, str]:
    if not tenant_ids or not billing_available():
        return {}
    from kith.platform.billing.plans import plans_of

    return {tid: plan.name for tid, plan in (await plans_of(tenant_ids)).items()}


@dataclass(frozen=True)
class TenantRow:
    """One workspace in the console's list."""

    id: int
    slug: str
    name: str
    status: str
    created_at: datetime
    seats: int
    last_activity: datetime | None
    contacts: int | None  # None when the workspace's schema cannot be entered (deleted)
    plan: str = ""


@dataclass(frozen=True)
class TenantQuery:
    """The list's search and filters; `q` matches slug, name and members' emails."""

    q: str = ""
    status: str = ""
    plan: str = ""
    page: int = 1


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# Seats: active memberships. Last activity: the latest "last seen" of a member's browser
# session or sign-in; a person in two workspaces counts as active in both (sessions are not
# per workspace), and a signed-out session's "last seen" goes with it.
_TENANTS = """
SELECT t.id, t.slug, t.name, t.status::text AS status, t.created_at,
       (SELECT count(*) FROM public.memberships m WHERE m.tenant_id = t.id AND m.is_active) AS seats,
       (SELECT greatest(max(s.last_seen_at), max(i.last_login_at))
          FROM public.memberships m JOIN public.identities i ON i.id = m.identity_id
          LEFT JOIN public.web_sessions s ON s.identity_id = m.identity_id
         WHERE m.tenant_id = t.id AND m.is_active) AS last_activity
  FROM public.tenants t
"""


async def contacts_count(tenant_id: int) -> int | None:
    """The workspace's number of contacts (through its scope), or None when it cannot be entered."""
    try:
        async with tenant_scope(tenant_id) as tx:
            rows = await tx.execute_query_dict("SELECT count(*) AS n FROM contacts", [])
    except TenantUnavailable:
        return None
    return int(rows[0]["n"])


def tenant_conditions(query: Any) -> tuple[list[str], list[Any]]:
    """The WHERE conditions (and their arguments) of the tenant list's status and search filters."""
    clauses = ["t.status <> 'provisioning'"]
    args: list[Any] = []
    if query.status in STATUSES:
        args.append(query.status)
        clauses.append(f"t.status = ${len(args)}")
    if query.q.strip():
        args.append(_like(query.q.strip()))
        n = len(args)
        clauses.append(f"(t.slug ILIKE ${n} OR t.name ILIKE ${n} OR EXISTS (SELECT 1 FROM public.memberships m"
                       f" JOIN public.identities i ON i.id = m.identity_id WHERE m.tenant_id = t.id"
                       f" AND i.email ILIKE ${n}))")
    return clauses, args


async def list_tenants(query: TenantQuery) -> list[TenantRow]:
    """One page of workspaces, newest first, matching the search and filters.

    A plan filter is applied before paging: the plan that applies now comes from billing (a
    trial that ended, a cancellation), computed per tenant, so every match's id is read first,
    filtered by plan, and the page taken from what is left.
    """
    clauses, args = tenant_conditions(query)
    where = " AND ".join(clauses)
    order = "ORDER BY t.created_at DESC, t.id DESC"
    offset = (max(1, query.page) - 1) * PAGE_SIZE
    async with platform_tx() as tx:
        if query.plan:
            ids = [int(r["id"]) for r in await tx.execute_query_dict(
                f"SELECT t.id FROM public.tenants t WHERE {where} {order}", args)]
            plans = await _plans(ids)
            page = [tid for tid in ids if plans.get(tid, "").lower() == query.plan.lower()][offset:offset + PAGE_SIZE]
            rows = await tx.execute_query_dict(f"{_TENANTS} WHERE t.id = ANY($1::bigint[]) {order}", [page])
        else:
            args += [PAGE_SIZE, offset]
            rows = await tx.execute_query_dict(
                f"{_TENANTS} WHERE {where} {order} LIMIT ${len(args) - 1} OFFSET ${len(args)}", args)
            plans = await _plans([int(r["id"]) for r in rows])
    return [TenantRow(**r, contacts=await contacts_count(int(r["id"])), plan=plans.get(int(r["id"]), ""))
            for r in rows]


@dataclass(frozen=True)
class MemberRow:
    identity_id: int
    email: str
    role: str
    active: bool
    two_factor_on: bool
    last_login_at: datetime | None
    email_verified: bool


@dataclass(frozen=True)
class TenantDetail:
    """A workspace as the console shows it: metadata, subscription and invoices, members, audit
    entries, impersonations."""

    tenant: TenantRow
    members: list[MemberRow]
    audit: list[AuditEntry]
    audit_next_before: int | None
    diffs_shown: bool
    impersonations: list[Impersonation]
    subscription: Subscription
    invoices: list[Invoice]


async def tenant_row(tenant_id: int) -> TenantRow | None:
    """One workspace's list row, or None when there is no such workspace."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(f"{_TENANTS} WHERE t.id = $1", [tenant_id])
    if not rows:
        return None
    plans = await _plans([tenant_id])
    return TenantRow(**rows[0], contacts=await contacts_count(tenant_id), plan=plans.get(tenant_id, ""))


async def tenant_detail(tenant_id: int, *, operator_session_id: int, before_seq: int | None = None,
                        audit_filter: AuditFilter | None = None) -> TenantDetail | None:
    """The workspace's detail page. Audit diffs are left out unless this console session is
    impersonating someone in the workspace right now."""
    row = await tenant_row(tenant_id)
    if row is None:
        return None
    async with platform_tx() as tx:
        members = await tx.execute_query_dict(
            "SELECT i.id AS identity_id, i.email, m.role, m.is_active AS active,"
            " i.totp_enabled_at IS NOT NULL AS two_factor_on, i.last_login_at,"
            " i.email_verified_at IS NOT NULL AS email_verified"
            " FROM public.memberships m JOIN public.identities i ON i.id = m.identity_id"
            " WHERE m.tenant_id = $1 ORDER BY m.is_active DESC, lower(i.email)", [tenant_id])
        history = await impersonations_of(tx, tenant_id=tenant_id)
        subscription = await load_subscription_in(tx, tenant_id)
        invoices = await invoices_in(tx, tenant_id)
    diffs_shown = any(i.live and i.operator_session_id == operator_session_id for i in history)
    entries: list[AuditEntry] = []
    next_before: int | None = None
    try:
        async with tenant_scope(tenant_id) as tx:
            page = await list_entries(tx, audit_filter or AuditFilter(), before_seq=before_seq, limit=50)
        entries = page.items if diffs_shown else [replace(e, diff=None) for e in page.items]
        next_before = page.next_before
    except TenantUnavailable:
        pass
    return TenantDetail(row, [MemberRow(**m) for m in members], entries, next_before, diffs_shown, history,
                        subscription, invoices)


async def _set_status(operator: Operator, tenant_id: int, reason: str, client: ClientInfo, *,
                      from_status: str, to_status: str, action: str) -> None:
    why = clean_reason(reason)
    try:
        async with tenant_scope(tenant_id) as tx:
            changed = await tx.execute_query_dict(
                "UPDATE public.tenants SET status = $3, updated_at = now() WHERE id = $1 AND status = $2"
                " RETURNING slug", [tenant_id, from_status, to_status])
            if not changed:
                raise TenantActionError(f"Only a workspace that is {from_status} can be {to_status}.")
            await record_ops_action(tx, operator, client, tenant_id=tenant_id, tenant_slug=str(changed[0]["slug"]),
                                    action=action, object_type="tenant", object_id=tenant_id,
                                    detail={"reason": why, "status": [from_status, to_status]})
    except TenantUnavailable:
        raise TenantActionError("There is no such workspace.") from None


async def suspend_tenant(operator: Operator, tenant_id: int, reason: str, client: ClientInfo) -> None:
    """Suspend an active workspace (the edge then refuses its pages and API with 403), with a
    reason, audited in the workspace's log and the platform's ("ops.suspend")."""
    await _set_status(operator, tenant_id, reason, client, from_status="active", to_status="suspended",
                      action="ops.suspend")


async def reactivate_tenant(operator: Operator, tenant_id: int, reason: str, client: ClientInfo) -> None:
    """Reactivate a suspended workspace, with a reason, audited in both logs ("ops.reactivate")."""
    await _set_status(operator, tenant_id, reason, client, from_status="suspended", to_status="active",
                      action="ops.reactivate")


async def _billing_action(operator: Operator, tenant_id: int, reason: str, client: ClientInfo, *, action: str,
                          change: Callable[[BaseDBAsyncClient], Awaitable[dict[str, list[Any]]]],
                          detail: dict[str, Any]) -> dict[str, list[Any]]:
    why = clean_reason(reason)
    try:
        async with tenant_scope(tenant_id) as tx:
            slug = await _slug_in(tx, tenant_id)
            try:
                changes = await change(tx)
            except BillingError as exc:
                raise TenantActionError(str(exc)) from None
            await record_ops_action(tx, operator, client, tenant_id=tenant_id, tenant_slug=slug, action=action,
                                    object_type="billing_subscription", object_id=tenant_id,
                                    detail={"reason": why, **detail, "changes": changes})
    except TenantUnavailable:
        raise TenantActionError("There is no such workspace.") from None
    return changes


async def _slug_in(tx: BaseDBAsyncClient, tenant_id: int) -> str:
    rows = await tx.execute_query_dict("SELECT slug FROM public.tenants WHERE id = $1", [tenant_id])
    return str(rows[0]["slug"])


async def extend_trial(operator: Operator, tenant_id: int, days: int, reason: str,
                       client: ClientInfo) -> dict[str, list[Any]]:
    """Extend the workspace's trial by `days`, with a reason, audited in both logs
    ("ops.extend_trial"); returns what changed. TenantActionError when billing refuses
    (not in a trial, a trial Stripe runs, days out of range)."""
    return await _billing_action(operator, tenant_id, reason, client, action="ops.extend_trial",
                                 change=lambda tx: extend_trial_in(tx, tenant_id, days), detail={"days": days})


async def comp_plan(operator: Operator, tenant_id: int, plan: str, until: datetime, reason: str,
                    client: ClientInfo) -> dict[str, list[Any]]:
    """Give the workspace `plan` without payment until `until`, with a reason, audited in both
    logs ("ops.comp_plan"); returns what changed. TenantActionError when billing refuses (a
    workspace Stripe bills, an unknown or free plan, an end in the past or too far ahead)."""
    return await _billing_action(operator, tenant_id, reason, client, action="ops.comp_plan",
                                 change=lambda tx: comp_plan_in(tx, tenant_id, plan, until),
                                 detail={"plan": plan, "until": until.isoformat()})


async def resend_verification(operator: Operator, tenant_id: int, identity_id: int, reason: str,
                              client: ClientInfo) -> IssuedVerification:
    """Send a member of the workspace a new email verification link, with a reason, audited in
    both logs ("ops.resend_verification"). The hourly limit of links applies as for the member's
    own resends. Deliver the returned email after this returns (the transaction committed)."""
    why = clean_reason(reason)
    try:
        async with tenant_scope(tenant_id) as tx:
            slug = await _slug_in(tx, tenant_id)
            member = await tx.execute_query_dict(
                "SELECT 1 FROM public.memberships WHERE tenant_id = $1 AND identity_id = $2 AND is_active",
                [tenant_id, identity_id])
            if not member:
                raise TenantActionError("That person is not an active member of this workspace.")
            try:
                issued = await issue_verification_in(tx, identity_id)
            except VerificationRefused as exc:
                raise TenantActionError(exc.message) from None
            # the address stays out of the entries: the identity id names the person
            await record_ops_action(tx, operator, client, tenant_id=tenant_id, tenant_slug=slug,
                                    action="ops.resend_verification", object_type="identity", object_id=identity_id,
                                    detail={"reason": why, "verification_id": issued.verification_id})
    except TenantUnavailable:
        raise TenantActionError("There is no such workspace.") from None
    return issued


@dataclass(frozen=True)
class FailedEmail:
    tenant_slug: str
    kind: str
    error: str
    created_at: datetime


@dataclass(frozen=True)
class Dashboard:
    signups: list[tuple[date, int]]  # the last 30 days, oldest first, zeros included
    by_status: dict[str, int]
    largest: list[TenantRow]
    failed_emails_total: int
    failed_emails: list[FailedEmail]  # newest 10; recipients' addresses left out (personal data)


async def dashboard() -> Dashboard:
    """Platform figures: signups per day (30 days), workspaces by status, the largest by
    contacts, and emails the outbox failed to send.

    "Largest" is ranked by PostgreSQL's running count of live rows in each workspace's contacts
    table (`pg_stat_user_tables.n_live_tup`, one catalog query however many workspaces there
    are; it can trail a commit by a second); the ten shown are then counted exactly.
    """
    async with platform_tx() as tx:
        signups = await tx.execute_query_dict(
            "SELECT d::date AS day, count(t.id) AS n"
            " FROM generate_series(current_date - 29, current_date, interval '1 day') d"
            " LEFT JOIN public.tenants t ON t.created_at >= d AND t.created_at < d + interval '1 day'"
            "  AND t.status <> 'provisioning' GROUP BY d ORDER BY d", [])
        statuses = await tx.execute_query_dict(
            "SELECT status::text AS status, count(*) AS n FROM public.tenants GROUP BY status ORDER BY status", [])
        ranked = await tx.execute_query_dict(
            "SELECT t.id FROM public.tenants t JOIN pg_stat_user_tables s"
            " ON s.schemaname = 't_' || t.id::text AND s.relname = 'contacts'"
            " WHERE t.status IN ('active', 'suspended') ORDER BY s.n_live_tup DESC, t.id LIMIT 10", [])
        failed_total = await tx.execute_query_dict(
            "SELECT count(*) AS n FROM public.outbox_emails WHERE status = 'failed'", [])
        failed = await tx.execute_query_dict(
            "SELECT coalesce(t.slug, '') AS tenant_slug, e.kind, e.error, e.created_at"
            " FROM public.outbox_emails e LEFT JOIN public.tenants t ON t.id = e.tenant_id"
            " WHERE e.status = 'failed' ORDER BY e.created_at DESC LIMIT 10", [])
    shown = [row for r in ranked if (row := await tenant_row(int(r["id"]))) is not None]
    largest = sorted(shown, key=lambda row: (-(row.contacts or 0), row.id))  # by the exact counts
    return Dashboard(
        signups=[(r["day"], int(r["n"])) for r in signups],
        by_status={str(r["status"]): int(r["n"]) for r in statuses},
        largest=largest,
        failed_emails_total=int(failed_total[0]["n"]),
        failed_emails=[FailedEmail(**r) for r in failed],
    )
