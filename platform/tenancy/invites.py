"""Inviting people into a workspace, and accepting an invitation.

An invitation is a row in `public.invitations`; the emailed link carries a random token of
which only a keyed hash (HMAC-SHA256 with KITH_SECRET_KEY) is stored: the link is signed in
the sense that matters (nobody without the key can make one that works, not even someone
who can read the table), it expires after KITH_INVITE_DAYS, and it works once.

Creating, revoking and accepting are each one transaction in the workspace's scope with
its audit entry. The invitation email is written to the outbox in the creating transaction
and delivered by a job (`kith.jobs.invites`). Every refusal to accept (unknown, expired,
used, revoked, wrong account) is raised before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kith.platform.access import admin
from kith.platform.access.actor import Actor
from kith.platform.access.rules import BUILT_IN_ROLES
from kith.platform.access.session import acting_as
from kith.platform.audit.log import append_entry
from kith.platform.billing import actions as billing_actions
from kith.platform.billing import limits
from kith.platform.billing.plans import LimitExceeded
from kith.platform.config import get_settings
from kith.platform.db import platform_tx, tenant_scope
from kith.platform.email.delivery import queue_email
from kith.platform.identity.events import ClientInfo, record_account_event
from kith.platform.identity.links import new_link_token, token_digest
from kith.platform.identity.passwords import PasswordRuleError, check_password_rules, hash_password
from kith.platform.identity.verification import mark_verified_in
from kith.platform.tenancy.signup import normalize_email

INVITE_PATH = "/invite/"


class InvitationIn(BaseModel):
    """Whom to invite, and the role they get when they accept."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=1, max_length=320)
    role: str = Field(default="sales", min_length=1, max_length=100)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        try:
            return normalize_email(value)
        except ValueError as exc:
            raise ValueError(str(exc) or "Email address is not valid.") from None


class InvitationOut(BaseModel):
    """A pending invitation (accepted and revoked ones are history, kept in the audit log)."""

    id: int
    email: str
    role: str
    role_name: str
    invited_by: str | None
    created_at: datetime
    expires_at: datetime
    expired: bool


class InvitationList(BaseModel):
    items: list[InvitationOut]


class InvitationRefused(Exception):
    """The link cannot be used. `code` is stable (unknown, expired, used, revoked, wrong_account,
    already_member, account_exists, seat_limit); the message says what to do instead."""

    def __init__(self, status: int, code: str, message: str, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}


@dataclass(frozen=True)
class InvitationView:
    """What the accept page shows: the workspace, the invited email and role, and whether
    that email already has an account (then the person signs in instead of signing up)."""

    invitation_id: int
    tenant_id: int
    tenant_slug: str
    tenant_name: str
    email: str
    role_name: str
    invited_by: str | None
    account_exists: bool


def _digest(raw: str) -> str:
    return token_digest(raw, "kith-invite")


def invite_url(raw: str) -> str:
    """The link an invitee opens."""
    return f"{get_settings().base_url}{INVITE_PATH}{raw}"


def invitation_text(*, workspace: str, inviter: str, role_name: str, url: str, expires_at: datetime) -> str:
    """The plain-text body of the invitation email."""
    return (
        f"Hello,\n\n{inviter} invited you to join the workspace \"{workspace}\" on Kith as {role_name}.\n\n"
        f"Accept the invitation here (the link works once, until {expires_at:%Y-%m-%d %H:%M} UTC):\n{url}\n\n"
        "If you did not expect this email, ignore it: nothing happens unless you open the link.\n\n"
        "The Kith team\n"
    )


# --- seats (billing) ---------------------------------------------------------------------


async def check_seat_available(tenant_id: int) -> None:
    """Refuse adding an active member when the plan's seats are used up:
    InvitationRefused(402, "seat_limit") with billing's message (which limit, how to raise it)."""
    try:
        await limits.check_seat_available(tenant_id)
    except LimitExceeded as exc:
        raise InvitationRefused(402, "seat_limit", str(exc)) from None


async def sync_seats(tenant_id: int) -> None:
    """Tell billing the number of active members changed (the subscription's seat quantity
    follows it, prorated as Stripe does). Call after the change committed."""
    await billing_actions.sync_seats(tenant_id)


# --- administering invitations -------------------------------------------------------------


_PENDING = "accepted_at IS NULL AND revoked_at IS NULL"


async def list_invitations(actor: Actor) -> list[InvitationOut]:
    """The workspace's pending invitations, newest first (expired ones included, marked)."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_users")
        rows = await session.tx.execute_query_dict(
            "SELECT v.id, v.email, v.role, v.created_at, v.expires_at, i.email AS invited_by_email,"
            " coalesce(r.name, v.role) AS role_name FROM public.invitations v"
            " LEFT JOIN public.identities i ON i.id = v.invited_by LEFT JOIN roles r ON r.key = v.role"
            f" WHERE v.tenant_id = $1 AND {_PENDING} ORDER BY v.id DESC",
            [actor.tenant_id],
        )
    now = datetime.now(UTC)
    return [InvitationOut(id=r["id"], email=r["email"], role=r["role"], role_name=_role_name(r),
                          invited_by=r["invited_by_email"], created_at=r["created_at"], expires_at=r["expires_at"],
                          expired=r["expires_at"] <= now) for r in rows]


def _role_name(row: dict[str, Any]) -> str:
    key = str(row["role"])
    return BUILT_IN_ROLES[key].name if key in BUILT_IN_ROLES else str(row["role_name"])


@dataclass(frozen=True)
class CreatedInvitation:
    invitation: InvitationOut
    email_id: int


async def create_invitation(actor: Actor, data: InvitationIn) -> CreatedInvitation:
    """Invite `data.email` with `data.role`: the inviter needs manage_users and may hand out
    only a role within their own (as for role changes). A pending invitation to the same
    email is replaced (its link stops working). The email is queued in the same transaction;
    the caller enqueues its delivery job after the commit."""
    await check_seat_available(actor.tenant_id)
    settings = get_settings()
    raw = new_link_token()
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_users")
        role = await admin.grantable_role(session, data.role)
        member = await session.tx.execute_query_dict(
            "SELECT m.is_active FROM public.memberships m JOIN public.identities i ON i.id = m.identity_id"
            " WHERE m.tenant_id = $1 AND lower(i.email) = lower($2)",
            [actor.tenant_id, data.email],
        )
        if member:
            message = ("This person is already a member of the workspace." if member[0]["is_active"] else
                       "This person is a deactivated member; reactivate them on the members page instead.")
            raise InvitationRefused(409, "already_member", message, fields={"email": message})
        # a second invitation to the same address replaces the first: one live link per person
        replaced = await session.tx.execute_query_dict(
            f"UPDATE public.invitations SET revoked_at = now() WHERE tenant_id = $1 AND lower(email) = lower($2)"
            f" AND {_PENDING} RETURNING id",
            [actor.tenant_id, data.email],
        )
        expires_at = datetime.now(UTC) + timedelta(days=settings.invite_days)
        rows = await session.tx.execute_query_dict(
            "INSERT INTO public.invitations (tenant_id, email, role, token_hash, invited_by, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at, expires_at",
            [actor.tenant_id, data.email, role.key, _digest(raw), actor.identity_id, expires_at],
        )
        row = rows[0]
        tenant = (await session.tx.execute_query_dict(
            "SELECT name FROM public.tenants WHERE id = $1", [actor.tenant_id]))[0]
        inviter = actor.label or "A colleague"
        email_id = await queue_email(
            session.tx, tenant_id=actor.tenant_id, kind="invitation", dedupe_key=f"invitation:{row['id']}",
            to=data.email, subject=f"{inviter} invited you to {tenant['name']} on Kith",
            body_text=invitation_text(workspace=str(tenant["name"]), inviter=inviter, role_name=role.name,
                                      url=invite_url(raw), expires_at=row["expires_at"]),
        )
        assert email_id is not None  # the dedupe key names a row made in this transaction
        await session.audit("invitation.create", "invitation", row["id"], {
            "email": data.email, "role": role.key, "expires_at": row["expires_at"].isoformat(),
            "replaces": [r["id"] for r in replaced]})
    out = InvitationOut(id=row["id"], email=data.email, role=role.key, role_name=role.name,
                        invited_by=actor.label or None, created_at=row["created_at"], expires_at=row["expires_at"],
                        expired=False)
    return CreatedInvitation(out, email_id)


async def revoke_invitation(actor: Actor, invitation_id: int) -> None:
    """Withdraw a pending invitation: its link stops working at once."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_users")
        rows = await session.tx.execute_query_dict(
            f"UPDATE public.invitations SET revoked_at = now() WHERE id = $1 AND tenant_id = $2 AND {_PENDING}"
            " RETURNING email, role",
            [invitation_id, actor.tenant_id],
        )
        if not rows:
            raise InvitationRefused(404, "not_found", "There is no such pending invitation.")
        await session.audit("invitation.revoke", "invitation", invitation_id,
                            {"email": rows[0]["email"], "role": rows[0]["role"]})


async def invitation_is_pending(tenant_id: int, invitation_id: int) -> bool:
    """Whether the invitation can still be accepted (the email job skips withdrawn ones)."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            f"SELECT 1 FROM public.invitations WHERE id = $1 AND tenant_id = $2 AND {_PENDING}"
            " AND expires_at > now()",
            [invitation_id, tenant_id],
        )
    return bool(rows)


# --- accepting ------------------------------------------------------------------------------


_UNKNOWN = ("This invitation link is not valid. Check that you opened the whole link from the email, "
            "or ask the workspace's admin for a new invitation.")


def _refusal(row: dict[str, Any], now: datetime) -> InvitationRefused | None:
    if row["accepted_at"] is not None:
        return InvitationRefused(410, "used", "This invitation was already accepted; each link works once. "
                                              "Sign in to reach the workspace.")
    if row["revoked_at"] is not None:
        return InvitationRefused(410, "revoked", "This invitation was withdrawn by the workspace's admin. "
                                                 "Ask them for a new one if you still need access.")
    if row["expires_at"] <= now:
        return InvitationRefused(410, "expired", f"This invitation expired on {row['expires_at']:%Y-%m-%d}. "
                                                 "Ask the workspace's admin to invite you again.")
    return None


_SELECT = (
    "SELECT v.id, v.tenant_id, v.email, v.role, v.expires_at, v.accepted_at, v.revoked_at, t.slug, t.name,"
    " t.status, i.email AS invited_by_email,"
    " EXISTS (SELECT 1 FROM public.identities p WHERE lower(p.email) = lower(v.email)) AS account_exists"
    " FROM public.invitations v JOIN public.tenants t ON t.id = v.tenant_id"
    " LEFT JOIN public.identities i ON i.id = v.invited_by WHERE v.token_hash = $1"
)


async def view_invitation(raw: str) -> InvitationView:
    """What an invitation link offers, or InvitationRefused saying why it cannot be used."""
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(_SELECT, [_digest(raw)]) if raw else []
    if not rows or rows[0]["status"] != "active":
        raise InvitationRefused(404, "unknown", _UNKNOWN)
    row = rows[0]
    refused = _refusal(row, datetime.now(UTC))
    if refused is not None:
        raise refused
    role = str(row["role"])
    role_name = BUILT_IN_ROLES[role].name if role in BUILT_IN_ROLES else role
    if role not in BUILT_IN_ROLES:
        async with tenant_scope(int(row["tenant_id"])) as tx:
            found = await tx.execute_query_dict("SELECT name FROM roles WHERE key = $1", [role])
        role_name = str(found[0]["name"]) if found else role
    return InvitationView(invitation_id=row["id"], tenant_id=row["tenant_id"], tenant_slug=row["slug"],
                          tenant_name=row["name"], email=row["email"], role_name=role_name,
                          invited_by=row["invited_by_email"], account_exists=bool(row["account_exists"]))


@dataclass(frozen=True)
class Accepted:
    tenant_id: int
    tenant_slug: str
    identity_id: int
    created_identity: bool


async def accept_invitation(
    raw: str,
    *,
    signed_in_identity_id: int | None,
    display_name: str = "",
    password: str = "",
    client_ip: str = "",
    user_agent: str = "",
) -> Accepted:
    """Accept an invitation: the membership (with the invited role) is created and the
    invitation used up, in one transaction with its audit entry.

    - A person whose email has no account yet gives a name and a password (the password
      rules apply); the identity is created. Nobody may be signed in as someone else.
    - A person with an account must be signed in as exactly the invited email.
    Either way the email counts as verified: the link was mailed to it ("email.verify",
    audited after the commit when it was not verified before).
    Any refusal is raised before anything is written.
    """
    view = await view_invitation(raw)  # cheap refusals, and the tenant to enter
    await check_seat_available(view.tenant_id)
    async with tenant_scope(view.tenant_id) as tx:
        # the row lock makes two parallel accepts of one link queue; the second sees it used
        rows = await tx.execute_query_dict(_SELECT + " FOR UPDATE OF v", [_digest(raw)])
        if not rows:
            raise InvitationRefused(404, "unknown", _UNKNOWN)
        row = rows[0]
        refused = _refusal(row, datetime.now(UTC))
        if refused is not None:
            raise refused
        email = str(row["email"])
        existing = await tx.execute_query_dict(
            "SELECT id, email FROM public.identities WHERE lower(email) = lower($1)", [email])
        if signed_in_identity_id is not None and (not existing or existing[0]["id"] != signed_in_identity_id):
            raise InvitationRefused(403, "wrong_account",
                                    f"This invitation is for {email}, but you are signed in with another "
                                    "account. Sign out, then open the link again and sign in as "
                                    f"{email}.")
        if existing and signed_in_identity_id is None:
            raise InvitationRefused(409, "account_exists",
                                    f"{email} already has a Kith account: sign in with it to accept.")
        created = not existing
        if created:
            errors: dict[str, str] = {}
            name = " ".join(display_name.split())
            if not name:
                errors["display_name"] = "Enter your name."
            elif len(name) > 120:
                errors["display_name"] = "Name must be at most 120 characters long."
            try:
                check_password_rules(password, email=email)
            except PasswordRuleError as exc:
                errors["password"] = str(exc)
            if errors:
                raise InvitationRefused(422, "invalid_input", "Some fields are not valid.", fields=errors)
            made = await tx.execute_query_dict(
                "INSERT INTO public.identities (email, display_name, password_hash) VALUES ($1, $2, $3)"
                " RETURNING id", [email, name, hash_password(password)])
            identity_id = int(made[0]["id"])
        else:
            identity_id = int(existing[0]["id"])
        member = await tx.execute_query_dict(
            "SELECT is_active FROM public.memberships WHERE tenant_id = $1 AND identity_id = $2",
            [view.tenant_id, identity_id])
        if member:
            raise InvitationRefused(409, "already_member",
                                    "You are already a member of this workspace." if member[0]["is_active"] else
                                    "Your membership of this workspace was deactivated; ask its admin to "
                                    "reactivate you.")
        role = str(row["role"])
        await tx.execute_query(
            "INSERT INTO public.memberships (tenant_id, identity_id, role) VALUES ($1, $2, $3)",
            [view.tenant_id, identity_id, role])
        await tx.execute_query(
            "UPDATE public.invitations SET accepted_at = now(), accepted_by = $2 WHERE id = $1",
            [row["id"], identity_id])
        newly_verified = await mark_verified_in(tx, identity_id)
        actor = Actor(kind="user", tenant_id=view.tenant_id, role=role, identity_id=identity_id, label=email,
                      ip=client_ip, user_agent=user_agent)
        await append_entry(tx, actor, action="invitation.accept", object_type="invitation", object_id=row["id"],
                           diff={"email": email, "role": role, "new_account": created})
    if newly_verified:
        await record_account_event(identity_id, "email.verify", ClientInfo(ip=client_ip, user_agent=user_agent),
                                   email=email, detail={"via": "invitation"})
    await sync_seats(view.tenant_id)
    return Accepted(view.tenant_id, view.tenant_slug, identity_id, created)
