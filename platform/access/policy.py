"""A role applied to one actor in one tenant: the single place that answers "may they?".

`load_policy` runs inside the tenant's transaction (see `acting_as`), so a custom role or
a team changed in the same transaction is seen at once, and a role deleted meanwhile
grants nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from kith.platform.access.actor import Actor
from kith.platform.access.rules import (
    BUILT_IN_ROLES,
    WORKSPACE,
    PermissionDenied,
    RoleDef,
    no_access_role,
    permission_label,
)


@dataclass(frozen=True)
class Policy:
    """What `actor` may do, given its role and (for team scope) its teams' members."""

    role: RoleDef
    actor: Actor
    team_member_ids: frozenset[int] = frozenset()

    def can(self, object_type: str, action: str) -> bool:
        """Whether the role grants `action` on `object_type`."""
        return action in self.role.grants.get(object_type, frozenset())

    def require(self, object_type: str, action: str) -> None:
        """Raise PermissionDenied unless the role grants `action` on `object_type`."""
        if not self.can(object_type, action):
            raise PermissionDenied(self.role.name, permission_label(object_type, action))

    def scope(self, object_type: str) -> str:
        """'own', 'team' or 'all'; 'own' when the role says nothing (the narrowest)."""
        return self.role.record_scope.get(object_type, "own")

    def owner_ids(self, object_type: str) -> frozenset[int] | None:
        """The owners whose records the actor may reach, or None for all records.

        'own' is the actor alone; 'team' the actor and every member of every team the actor
        belongs to. An actor without an identity (a job) owns nothing, so only an 'all'
        scope reaches records for it: the role decides, never the kind of actor.
        """
        scope = self.scope(object_type)
        if scope == "all":
            return None
        mine = frozenset({self.actor.identity_id}) if self.actor.identity_id is not None else frozenset()
        if scope == "team":
            return mine | self.team_member_ids
        return mine

    def hidden_fields(self, object_type: str) -> frozenset[str]:
        """The fields of `object_type` the role may neither see nor change."""
        return self.role.hidden_fields.get(object_type, frozenset())

    def visible(self, object_type: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """`values` without the keys hidden from the role."""
        hidden = self.hidden_fields(object_type)
        if not hidden:  # most roles hide nothing: skip the per-key test (it runs for every row of a page)
            return dict(values)
        return {k: v for k, v in values.items() if k not in hidden}

    def require_fields(self, object_type: str, fields: Iterable[str]) -> None:
        """Raise PermissionDenied naming the first of `fields` hidden from the role."""
        hidden = self.hidden_fields(object_type)
        for name in fields:
            if name in hidden:
                raise PermissionDenied.hidden_field(self.role.name, object_type, name)

    def can_manage(self, permission: str) -> bool:
        """Whether the role holds a workspace permission such as 'manage_roles'."""
        return permission in self.role.workspace

    def require_manage(self, permission: str) -> None:
        """Raise PermissionDenied unless the role holds the workspace permission."""
        if not self.can_manage(permission):
            raise PermissionDenied(self.role.name, permission_label(WORKSPACE, permission))


def _json(value: Any) -> Any:
    # asyncpg returns jsonb as text unless a codec is set; accept both
    return json.loads(value) if isinstance(value, str) else value


def role_from_row(row: Mapping[str, Any]) -> RoleDef:
    """A custom role from its row in the tenant's `roles` table."""
    grants = _json(row["grants"]) or {}
    hidden = _json(row["hidden_fields"]) or {}
    return RoleDef(
        key=str(row["key"]),
        name=str(row["name"]),
        built_in=False,
        grants={str(k): frozenset(v) for k, v in grants.items()},
        workspace=frozenset(_json(row["workspace"]) or ()),
        record_scope={str(k): str(v) for k, v in (_json(row["record_scope"]) or {}).items()},
        hidden_fields={str(k): frozenset(v) for k, v in hidden.items()},
    )


async def load_role(tx: BaseDBAsyncClient, key: str) -> RoleDef:
    """A role by key: built-in from code, custom from the tenant's `roles` table (one query),
    and no permissions at all for a key that names neither."""
    if key in BUILT_IN_ROLES:
        return BUILT_IN_ROLES[key]
    rows = await tx.execute_query_dict(
        "SELECT key, name, grants, workspace, record_scope, hidden_fields FROM roles WHERE key = $1", [key]
    )
    return role_from_row(rows[0]) if rows else no_access_role(key)


async def load_policy(tx: BaseDBAsyncClient, actor: Actor) -> Policy:
    """The actor's policy, read inside the tenant transaction `tx` (at most two queries)."""
    role = await load_role(tx, actor.role)
    team: frozenset[int] = frozenset()
    if actor.identity_id is not None and "team" in role.record_scope.values():
        rows = await tx.execute_query_dict(
            "SELECT DISTINCT other.identity_id FROM team_members mine"
            " JOIN team_members other ON other.team_id = mine.team_id WHERE mine.identity_id = $1",
            [actor.identity_id],
        )
        team = frozenset(int(r["identity_id"]) for r in rows)
    return Policy(role=role, actor=actor, team_member_ids=team)
