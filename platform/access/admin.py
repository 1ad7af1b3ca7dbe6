"""Administering access in a workspace: custom roles, members' roles and teams.

Every action takes the acting Actor, works inside `acting_as(actor)` (one tenant
transaction), checks the workspace permission it needs first, and writes an audit entry
for every change in the same transaction. Members' roles live in public.memberships and
are changed in that same transaction, so a role change and its audit entry commit together.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from tortoise.exceptions import IntegrityError

from kith.platform.access.actor import Actor
from kith.platform.access.policy import Policy, role_from_row
from kith.platform.access.rules import (
    ACTIONS,
    BUILT_IN_ROLES,
    SCOPES,
    WORKSPACE,
    WORKSPACE_PERMISSIONS,
    PermissionDenied,
    RoleDef,
    object_types,
    permission_label,
)
from kith.platform.access.schemas import (
    MemberOut,
    RoleIn,
    RoleOut,
    RolePatch,
    TeamIn,
    TeamMemberIn,
    TeamMemberOut,
    TeamOut,
)
from kith.platform.access.session import TenantSession, acting_as

OWNER = "owner"
_ROLE_COLUMNS = "key, name, grants, workspace, record_scope, hidden_fields"


class AccessAdminError(Exception):
    """A refused administration request: an HTTP-like status, a stable code, a message a person
    can act on, and per-field messages for bad input."""

    def __init__(self, status: int, code: str, message: str, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}


def _not_found(what: str) -> AccessAdminError:
    return AccessAdminError(404, "not_found", f"There is no such {what}.")


# --- roles -----------------------------------------------------------------------------


def role_json(role: RoleDef) -> dict[str, Any]:
    """A role as plain JSON (API output and audit diffs), in declaration order."""
    return {
        "key": role.key,
        "name": role.name,
        "grants": {t: [a for a in ACTIONS if a in acts] for t, acts in role.grants.items() if acts},
        "workspace": [p for p in WORKSPACE_PERMISSIONS if p in role.workspace],
        "record_scope": dict(role.record_scope),
        "hidden_fields": {t: sorted(f) for t, f in role.hidden_fields.items() if f},
    }


def _role_out(role: RoleDef, members: int) -> RoleOut:
    return RoleOut(built_in=role.built_in, members=members, **role_json(role))


def _custom_role(key: str, data: RoleIn) -> RoleDef:
    # a granted object type without a stated scope gets the narrowest one
    scopes = {t: data.record_scope.get(t, "own") for t in data.grants}
    return RoleDef(
        key=key,
        name=data.name,
        built_in=False,
        grants={t: frozenset(a) for t, a in data.grants.items()},
        workspace=frozenset(data.workspace),
        record_scope=scopes,
        hidden_fields={t: frozenset(f) for t, f in data.hidden_fields.items()},
    )


def beyond(holder: RoleDef, role: RoleDef) -> list[str]:
    """The permissions `role` has that `holder` lacks: actions, workspace permissions, a wider
    record scope or a field `holder` may not see. Nobody may hand out more than they hold."""
    missing: list[str] = []
    for type_name, actions in role.grants.items():
        have = holder.grants.get(type_name, frozenset())
        missing += [permission_label(type_name, a) for a in ACTIONS if a in actions and a not in have]
        if actions and SCOPES.index(role.record_scope.get(type_name, "own")) > SCOPES.index(
            holder.record_scope.get(type_name, "own")
        ):
            missing.append(f"{type_name}: {role.record_scope[type_name]} records")
        hidden_from_holder = holder.hidden_fields.get(type_name, frozenset())
        shown = hidden_from_holder - role.hidden_fields.get(type_name, frozenset())
        missing += [f"{type_name}.{f}" for f in sorted(shown)] if actions else []
    missing += [permission_label(WORKSPACE, p) for p in WORKSPACE_PERMISSIONS
                if p in role.workspace and p not in holder.workspace]
    return missing


def _require_within(policy: Policy, role: RoleDef) -> None:
    if policy.role.key == OWNER:
        return
    missing = beyond(policy.role, role)
    if missing:
        raise PermissionDenied(
            policy.role.name, missing[0],
            f"Your role '{policy.role.name}' may not give out the permission '{missing[0]}', "
            "which it does not have itself.",
        )


def _slug(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40].strip("-") or "role"


async def _new_key(session: TenantSession, name: str) -> str:
    base = f"custom-{_slug(name)}"
    rows = await session.tx.execute_query_dict(
        "SELECT key FROM roles WHERE key = $1 OR key LIKE $2", [base, base + "-%"]
    )
    taken = {r["key"] for r in rows}
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


async def _check_name(session: TenantSession, name: str, key: str = "") -> None:
    if name.lower() in {r.name.lower() for r in BUILT_IN_ROLES.values()} | set(BUILT_IN_ROLES):
        raise AccessAdminError(422, "invalid_input", "Some fields are not valid.",
                               fields={"name": f"'{name}' is the name of a built-in role; choose another."})
    rows = await session.tx.execute_query_dict(
        "SELECT 1 FROM roles WHERE lower(name) = lower($1) AND key <> $2", [name, key]
    )
    if rows:
        raise _duplicate_name("role", name)


def _duplicate_name(what: str, name: str) -> AccessAdminError:
    return AccessAdminError(422, "invalid_input", "Some fields are not valid.",
                            fields={"name": f"A {what} named '{name}' already exists."})


async def _member_counts(session: TenantSession) -> dict[str, int]:
    rows = await session.tx.execute_query_dict(
        "SELECT role, count(*) AS n FROM public.memberships WHERE tenant_id = $1 GROUP BY role",
        [session.actor.tenant_id],
    )
    return {str(r["role"]): int(r["n"]) for r in rows}


async def _custom_roles(session: TenantSession) -> list[RoleDef]:
    rows = await session.tx.execute_query_dict(f"SELECT {_ROLE_COLUMNS} FROM roles ORDER BY lower(name), key")
    return [role_from_row(r) for r in rows]


async def _all_roles(session: TenantSession) -> list[RoleOut]:
    counts = await _member_counts(session)
    roles = [*BUILT_IN_ROLES.values(), *await _custom_roles(session)]
    return [_role_out(r, counts.get(r.key, 0)) for r in roles]


async def list_roles(actor: Actor) -> list[RoleOut]:
    """Every role of the workspace, built-in first, with how many members hold each."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_roles")
        return await _all_roles(session)


async def get_role(actor: Actor, key: str) -> RoleOut:
    """One role by key (built-in or custom)."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_roles")
        for role in await _all_roles(session):
            if role.key == key:
                return role
    raise _not_found("role")


async def _insert_role(session: TenantSession, role: RoleDef) -> None:
    data = role_json(role)
    try:
        await session.tx.execute_query(
            "INSERT INTO roles (key, name, grants, workspace, record_scope, hidden_fields)"
            " VALUES ($1, $2, $3::jsonb, $4::jsonb, $5::jsonb, $6::jsonb)",
            [role.key, role.name, *(json.dumps(data[c]) for c in ("grants", "workspace", "record_scope",
                                                                  "hidden_fields"))],
        )
    except IntegrityError as exc:
        raise _write_conflict(exc, role.name) from None


def _write_conflict(exc: IntegrityError, name: str) -> AccessAdminError:
    # two saves at the same moment passed the name check; the unique index decides
    if "roles_name_key" in str(exc):
        return _duplicate_name("role", name)
    return AccessAdminError(409, "conflict", "Another role was saved at the same moment; please try again.")


async def create_role(actor: Actor, data: RoleIn) -> RoleOut:
    """Create a custom role. Its key ('custom-<name>') stays when the role is renamed."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_roles")
        await _check_name(session, data.name)
        role = _custom_role(await _new_key(session, data.name), data)
        _require_within(session.policy, role)
        await _insert_role(session, role)
        await session.audit("role.create", "role", role.key, {"before": None, "after": role_json(role)})
        return _role_out(role, 0)


async def _locked_custom_role(session: TenantSession, key: str) -> RoleDef:
    if key in BUILT_IN_ROLES:
        raise AccessAdminError(409, "built_in_role",
                               f"The built-in role '{BUILT_IN_ROLES[key].name}' cannot be changed or deleted; "
                               "create a custom role instead.")
    rows = await session.tx.execute_query_dict(
        f"SELECT {_ROLE_COLUMNS} FROM roles WHERE key = $1 FOR UPDATE", [key]
    )
    if not rows:
        raise _not_found("role")
    return role_from_row(rows[0])


async def update_role(actor: Actor, key: str, changes: RolePatch) -> RoleOut:
    """Change a custom role; the parts of `changes` given replace the role's."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_roles")
        before = await _locked_custom_role(session, key)
        merged = {**role_json(before), **changes.model_dump(exclude_none=True)}
        merged.pop("key")
        role = _custom_role(key, RoleIn.model_validate(merged))
        if role.name != before.name:
            await _check_name(session, role.name, key)
        _require_within(session.policy, role)
        after = role_json(role)
        if after != role_json(before):
            try:
                await session.tx.execute_query(
                    "UPDATE roles SET name = $2, grants = $3::jsonb, workspace = $4::jsonb, record_scope = $5::jsonb,"
                    " hidden_fields = $6::jsonb, updated_at = now() WHERE key = $1",
                    [key, role.name, *(json.dumps(after[c]) for c in ("grants", "workspace", "record_scope",
                                                                       "hidden_fields"))],
                )
            except IntegrityError as exc:
                raise _write_conflict(exc, role.name) from None
            await session.audit("role.update", "role", key, {"before": role_json(before), "after": after})
        counts = await _member_counts(session)
        return _role_out(role, counts.get(key, 0))


async def delete_role(actor: Actor, key: str) -> None:
    """Delete a custom role that no member holds."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_roles")
        role = await _locked_custom_role(session, key)
        # the role row is locked, and assigning a role reads it FOR SHARE, so no member can
        # be given this role between the count and the delete
        rows = await session.tx.execute_query_dict(
            "SELECT count(*) AS n FROM public.memberships WHERE tenant_id = $1 AND role = $2",
            [actor.tenant_id, key],
        )
        held = int(rows[0]["n"])
        if held:
            people = "1 member holds" if held == 1 else f"{held} members hold"
            raise AccessAdminError(409, "role_in_use",
                                   f"The role '{role.name}' cannot be deleted: {people} it. "
                                   "Give them another role first.")
        await session.tx.execute_query("DELETE FROM roles WHERE key = $1", [key])
        await session.audit("role.delete", "role", key, {"before": role_json(role), "after": None})


# --- members ---------------------------------------------------------------------------


async def _members(session: TenantSession, identity_id: int | None = None) -> list[MemberOut]:
    params: list[Any] = [session.actor.tenant_id]
    where = "m.tenant_id = $1"
    if identity_id is not None:
        params.append(identity_id)
        where += " AND m.identity_id = $2"
    rows = await session.tx.execute_query_dict(
        "SELECT m.identity_id, i.email, i.display_name, m.role, m.is_active, r.name AS custom_name"
        " FROM public.memberships m JOIN public.identities i ON i.id = m.identity_id"
        f" LEFT JOIN roles r ON r.key = m.role WHERE {where} ORDER BY lower(i.email)",
        params,
    )
    out = []
    for r in rows:
        key = str(r["role"])
        name = BUILT_IN_ROLES[key].name if key in BUILT_IN_ROLES else (r["custom_name"] or f"{key} (deleted)")
        out.append(MemberOut(identity_id=r["identity_id"], email=r["email"], display_name=r["display_name"],
                             role=key, role_name=name, is_active=r["is_active"]))
    return out


async def list_members(actor: Actor) -> list[MemberOut]:
    """The workspace's members with their roles."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_users")
        return await _members(session)


async def role_choices(actor: Actor) -> list[RoleOut]:
    """The roles a member may be given (for people who manage users but not roles)."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_users")
        return await _all_roles(session)


async def grantable_role(session: TenantSession, key: str) -> RoleDef:
    """The role `key`, if the session's actor may hand it out (to a member or an invitation):
    it exists, only an owner hands out 'owner', and nobody hands out a permission they lack."""
    role = await _role_for_grant(session, key)
    if key == OWNER and session.policy.role.key != OWNER:
        raise PermissionDenied(session.policy.role.name, "workspace: owner",
                               "Only an owner may grant or remove the role 'Owner'.")
    _require_within(session.policy, role)
    return role


async def member_in(session: TenantSession, identity_id: int) -> MemberOut:
    """One member of the session's workspace (active or not); 404 when there is none such."""
    found = await _members(session, identity_id)
    if not found:
        raise _not_found("member")
    return found[0]


async def _role_for_grant(session: TenantSession, key: str) -> RoleDef:
    if key in BUILT_IN_ROLES:
        return BUILT_IN_ROLES[key]
    # FOR SHARE: the role cannot be deleted until this transaction ends (see delete_role)
    rows = await session.tx.execute_query_dict(
        f"SELECT {_ROLE_COLUMNS} FROM roles WHERE key = $1 FOR SHARE", [key]
    )
    if not rows:
        raise AccessAdminError(422, "invalid_input", "Some fields are not valid.",
                               fields={"role": f"There is no role '{key}' in this workspace."})
    return role_from_row(rows[0])


async def set_member_role(actor: Actor, identity_id: int, role_key: str) -> MemberOut:
    """Give a member another role. Only an owner grants or removes 'owner', and the last
    owner keeps it, so a workspace always has someone who can manage everything."""
    async with acting_as(actor) as session:
        policy = session.policy
        policy.require_manage("manage_users")
        rows = await session.tx.execute_query_dict(
            "SELECT role FROM public.memberships WHERE tenant_id = $1 AND identity_id = $2 FOR UPDATE",
            [actor.tenant_id, identity_id],
        )
        if not rows:
            raise _not_found("member")
        old = str(rows[0]["role"])
        new_role = await _role_for_grant(session, role_key)
        if old == role_key:
            return (await _members(session, identity_id))[0]
        if OWNER in (old, role_key) and policy.role.key != OWNER:
            raise PermissionDenied(policy.role.name, "workspace: owner",
                                   "Only an owner may grant or remove the role 'Owner'.")
        _require_within(policy, new_role)
        if old == OWNER:
            # lock every owner row in one order, so two owners demoting each other at once
            # are serialised and the second sees the first's change
            owners = await session.tx.execute_query_dict(
                "SELECT identity_id FROM public.memberships WHERE tenant_id = $1 AND role = 'owner' AND is_active"
                " ORDER BY id FOR UPDATE",
                [actor.tenant_id],
            )
            if [r["identity_id"] for r in owners] in ([identity_id], []):
                raise AccessAdminError(409, "last_owner",
                                       "This is the workspace's last owner; make someone else owner first.")
        await session.tx.execute_query(
            "UPDATE public.memberships SET role = $3 WHERE tenant_id = $1 AND identity_id = $2",
            [actor.tenant_id, identity_id, role_key],
        )
        await session.audit("member.role_change", "membership", identity_id,
                            {"before": {"role": old}, "after": {"role": role_key}})
        return (await _members(session, identity_id))[0]


# --- teams -----------------------------------------------------------------------------


async def _teams(session: TenantSession, team_id: int | None = None) -> list[TeamOut]:
    params: list[Any] = []
    where = ""
    if team_id is not None:
        params.append(team_id)
        where = " WHERE t.id = $1"
    rows = await session.tx.execute_query_dict(
        "SELECT t.id, t.name, tm.identity_id, tm.is_manager, i.email FROM teams t"
        " LEFT JOIN team_members tm ON tm.team_id = t.id LEFT JOIN public.identities i ON i.id = tm.identity_id"
        f"{where} ORDER BY lower(t.name), t.id, tm.is_manager DESC, lower(i.email)",
        params,
    )
    teams: dict[int, TeamOut] = {}
    for r in rows:
        team = teams.setdefault(r["id"], TeamOut(id=r["id"], name=r["name"], members=[]))
        if r["identity_id"] is not None:
            team.members.append(TeamMemberOut(identity_id=r["identity_id"], email=r["email"],
                                              is_manager=r["is_manager"]))
    return list(teams.values())


async def list_teams(actor: Actor) -> list[TeamOut]:
    """The workspace's teams and their members."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_users")
        return await _teams(session)


async def create_team(actor: Actor, data: TeamIn) -> TeamOut:
    """Create an empty team with a unique name."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_users")
        taken = await session.tx.execute_query_dict("SELECT 1 FROM teams WHERE lower(name) = lower($1)", [data.name])
        if taken:
            raise _duplicate_name("team", data.name)
        try:
            rows = await session.tx.execute_query_dict("INSERT INTO teams (name) VALUES ($1) RETURNING id",
                                                       [data.name])
        except IntegrityError:
            raise _duplicate_name("team", data.name) from None
        team_id = int(rows[0]["id"])
        await session.audit("team.create", "team", team_id, {"before": None, "after": {"name": data.name}})
        return TeamOut(id=team_id, name=data.name, members=[])


async def _locked_team(session: TenantSession, team_id: int) -> Mapping[str, Any]:
    rows = await session.tx.execute_query_dict("SELECT id, name FROM teams WHERE id = $1 FOR UPDATE", [team_id])
    if not rows:
        raise _not_found("team")
    return rows[0]


async def delete_team(actor: Actor, team_id: int) -> None:
    """Delete a team; its members stay in the workspace."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_users")
        team = await _locked_team(session, team_id)
        before = (await _teams(session, team_id))[0]
        await session.tx.execute_query("DELETE FROM teams WHERE id = $1", [team_id])
        await session.audit("team.delete", "team", team_id, {
            "before": {"name": team["name"], "members": [m.identity_id for m in before.members]}, "after": None})


async def set_team_member(actor: Actor, team_id: int, identity_id: int, data: TeamMemberIn) -> TeamOut:
    """Put a workspace member in a team (or change whether they manage it)."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_users")
        await _locked_team(session, team_id)
        member = await session.tx.execute_query_dict(
            "SELECT 1 FROM public.memberships WHERE tenant_id = $1 AND identity_id = $2", [actor.tenant_id, identity_id]
        )
        if not member:
            raise _not_found("member")
        rows = await session.tx.execute_query_dict(
            "SELECT is_manager FROM team_members WHERE team_id = $1 AND identity_id = $2", [team_id, identity_id]
        )
        before = {"is_manager": rows[0]["is_manager"]} if rows else None
        after = {"is_manager": data.is_manager}
        if before != after:
            await session.tx.execute_query(
                "INSERT INTO team_members (team_id, identity_id, is_manager) VALUES ($1, $2, $3)"
                " ON CONFLICT (team_id, identity_id) DO UPDATE SET is_manager = EXCLUDED.is_manager",
                [team_id, identity_id, data.is_manager],
            )
            await session.audit("team.member_set", "team", team_id,
                                {"identity_id": identity_id, "before": before, "after": after})
        return (await _teams(session, team_id))[0]


async def remove_team_member(actor: Actor, team_id: int, identity_id: int) -> None:
    """Take a member out of a team."""
    async with acting_as(actor) as session:
        session.policy.require_manage("manage_users")
        await _locked_team(session, team_id)
        rows = await session.tx.execute_query_dict(
            "DELETE FROM team_members WHERE team_id = $1 AND identity_id = $2 RETURNING is_manager",
            [team_id, identity_id],
        )
        if not rows:
            raise _not_found("team member")
        await session.audit("team.member_remove", "team", team_id,
                            {"identity_id": identity_id, "before": {"is_manager": rows[0]["is_manager"]},
                             "after": None})


def object_type_names() -> list[str]:
    """The registered object types' names (for forms)."""
    return [t.name for t in object_types()]

