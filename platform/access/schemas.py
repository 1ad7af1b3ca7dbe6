"""What role, member and team administration accepts and returns (API and forms share these).

Validators read the object-type registry, so a role can only name object types, actions
and fields that exist; the messages say which name is wrong and what is allowed.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from kith.platform.access.rules import ACTIONS, SCOPES, WORKSPACE_PERMISSIONS, object_type, object_types

NAME_MAX = 60


def _clean_name(value: str) -> str:
    value = " ".join(value.split())
    if not value:
        raise ValueError("This field cannot be empty.")
    if len(value) > NAME_MAX:
        raise ValueError(f"Must be at most {NAME_MAX} characters long.")
    return value


def _known_type(name: str) -> None:
    if object_type(name) is None:
        known = ", ".join(t.name for t in object_types()) or "none"
        raise ValueError(f"Unknown object type '{name}'; known object types: {known}.")


def _check_grants(value: dict[str, list[str]]) -> dict[str, list[str]]:
    cleaned: dict[str, list[str]] = {}
    for type_name, actions in value.items():
        _known_type(type_name)
        for action in actions:
            if action not in ACTIONS:
                raise ValueError(f"Unknown action '{action}' on '{type_name}'; actions: {', '.join(ACTIONS)}.")
        if actions and "view" not in actions:
            # an action on records the role cannot see would be blind; say so rather than add it silently
            raise ValueError(f"Grant 'view' on '{type_name}' as well: the other actions need it.")
        if actions:
            cleaned[type_name] = [a for a in ACTIONS if a in actions]
    return cleaned


def _check_workspace(value: list[str]) -> list[str]:
    for name in value:
        if name not in WORKSPACE_PERMISSIONS:
            raise ValueError(
                f"Unknown workspace permission '{name}'; permissions: {', '.join(WORKSPACE_PERMISSIONS)}."
            )
    return [p for p in WORKSPACE_PERMISSIONS if p in value]


def _check_scopes(value: dict[str, str]) -> dict[str, str]:
    for type_name, scope in value.items():
        _known_type(type_name)
        if scope not in SCOPES:
            raise ValueError(f"Record scope of '{type_name}' must be one of {', '.join(SCOPES)}, not '{scope}'.")
    return dict(value)


def _check_hidden(value: dict[str, list[str]]) -> dict[str, list[str]]:
    cleaned: dict[str, list[str]] = {}
    for type_name, fields in value.items():
        _known_type(type_name)
        known = object_type(type_name)
        assert known is not None
        for name in fields:
            if name not in known.fields:
                raise ValueError(
                    f"Unknown field '{name}' of '{type_name}'; fields: {', '.join(known.fields)}."
                )
        if fields:
            cleaned[type_name] = [f for f in known.fields if f in fields]
    return cleaned


ShortName = Annotated[str, Field(max_length=200, description="1-60 characters, unique in the workspace."),
                     AfterValidator(_clean_name)]
Grants = Annotated[
    dict[str, list[str]],
    Field(description='Actions per object type, e.g. {"contacts": ["view", "edit"]}.'),
    AfterValidator(_check_grants),
]
WorkspacePermissions = Annotated[
    list[str], Field(description='Workspace permissions, e.g. ["manage_campaigns"].'), AfterValidator(_check_workspace)
]
RecordScopes = Annotated[
    dict[str, str],
    Field(description='Record scope per object type: "own", "team" or "all" (default "own").'),
    AfterValidator(_check_scopes),
]
HiddenFields = Annotated[
    dict[str, list[str]],
    Field(description='Fields the role may neither see nor change, e.g. {"contacts": ["phone"]}.'),
    AfterValidator(_check_hidden),
]


class RoleIn(BaseModel):
    """A new custom role."""

    model_config = ConfigDict(extra="forbid")

    name: ShortName
    grants: Grants = Field(default_factory=dict)
    workspace: WorkspacePermissions = Field(default_factory=list)
    record_scope: RecordScopes = Field(default_factory=dict)
    hidden_fields: HiddenFields = Field(default_factory=dict)


class RolePatch(BaseModel):
    """A change to a custom role: the parts given replace the role's; the others stay."""

    model_config = ConfigDict(extra="forbid")

    name: ShortName | None = None
    grants: Grants | None = None
    workspace: WorkspacePermissions | None = None
    record_scope: RecordScopes | None = None
    hidden_fields: HiddenFields | None = None


class RoleOut(BaseModel):
    """A role (built-in or custom), with how many members hold it."""

    key: str
    name: str
    built_in: bool
    grants: dict[str, list[str]]
    workspace: list[str]
    record_scope: dict[str, str]
    hidden_fields: dict[str, list[str]]
    members: int


class RoleList(BaseModel):
    """Built-in roles first, then custom roles by name."""

    items: list[RoleOut]


class MemberOut(BaseModel):
    """A member of the workspace and the role they hold."""

    identity_id: int
    email: str
    display_name: str
    role: str
    role_name: str
    is_active: bool


class MemberList(BaseModel):
    items: list[MemberOut]


class MemberRoleIn(BaseModel):
    """The role to give a member: a built-in role's key or a custom role's key."""

    model_config = ConfigDict(extra="forbid")

    role: Annotated[str, Field(min_length=1, max_length=80)]


class TeamIn(BaseModel):
    """A new team."""

    model_config = ConfigDict(extra="forbid")

    name: ShortName


class TeamMemberIn(BaseModel):
    """Membership in a team; managers are marked (a team-scoped role sees the team's records)."""

    model_config = ConfigDict(extra="forbid")

    is_manager: bool = False


class TeamMemberOut(BaseModel):
    identity_id: int
    email: str
    is_manager: bool


class TeamOut(BaseModel):
    """A team and its members."""

    id: int
    name: str
    members: list[TeamMemberOut]


class TeamList(BaseModel):
    items: list[TeamOut]
