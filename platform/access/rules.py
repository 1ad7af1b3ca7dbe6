"""Permissions as data, declared in one place.

A permission is an object type x action ("contacts: delete") or a workspace permission
("workspace: manage_roles"). A role grants permissions, a record scope per object type
(own, team or all records) and may hide fields. Built-in roles are declared here, in
code, as functions of the object-type registry, so an object type registered later (by a
new CRM domain in tenants/) is covered by every built-in role at once. Custom roles are
rows in the tenant's `roles` table with the same shape.

The platform never imports the CRM: tenants/ registers its object types here
(tenants/contacts/access.py), and tenants/registry.py imports those registrations.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

ACTIONS: tuple[str, ...] = ("view", "create", "edit", "delete", "export", "import")
WORKSPACE_PERMISSIONS: tuple[str, ...] = (
    "manage_users", "manage_roles", "manage_billing", "manage_settings", "manage_campaigns", "manage_targets",
)
WORKSPACE = "workspace"  # the "object type" of workspace permissions in declarations

Scope = Literal["own", "team", "all"]
SCOPES: tuple[str, ...] = ("own", "team", "all")


@dataclass(frozen=True)
class ObjectType:
    """A kind of CRM record permissions apply to, with the fields a role may be denied.

    `sensitive` names the fields whose reading is audited (issue 4: "reads of sensitive
    fields"): every query that returns one of them to a person or token records it.
    `catalogue` marks workspace-wide reference data nobody owns (the product catalogue): a
    record scope cannot narrow it, so the built-in roles that work with their own or their
    team's records (sales, support, read-only) may only view it; owners, admins and managers
    maintain it.
    `role_extras` adds actions to named built-in roles for this type only, as (role key, actions)
    pairs: the support role, which creates nothing elsewhere, opens tickets.
    """

    name: str
    label: str
    fields: tuple[str, ...]
    owner_field: str = "owner_id"
    sensitive: tuple[str, ...] = ()
    catalogue: bool = False
    role_extras: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        # a sensitive field that is not a field would silently never be audited
        unknown = [f for f in self.sensitive if f not in self.fields]
        if unknown:
            raise ValueError(f"object type '{self.name}': sensitive fields {unknown} are not among its fields")
        odd = [a for _, actions in self.role_extras for a in actions if a not in ACTIONS]
        if odd:
            raise ValueError(f"object type '{self.name}': extra actions {odd} are not actions")

    def extras_for(self, role_key: str) -> frozenset[str]:
        """The actions this type adds to the built-in role `role_key` (see role_extras)."""
        return frozenset(a for key, actions in self.role_extras if key == role_key for a in actions)


_OBJECT_TYPES: dict[str, ObjectType] = {}


def register_object_type(object_type: ObjectType) -> ObjectType:
    """Declare an object type. Registering the same declaration twice is harmless (re-imports);
    a different declaration under a taken name is a programming error."""
    if object_type.name == WORKSPACE:
        raise ValueError(f"'{WORKSPACE}' is reserved for workspace permissions")
    known = _OBJECT_TYPES.get(object_type.name)
    if known is not None and known != object_type:
        raise ValueError(f"object type '{object_type.name}' is already registered differently")
    _OBJECT_TYPES[object_type.name] = object_type
    return object_type


def object_types() -> tuple[ObjectType, ...]:
    """Every registered object type, in registration order."""
    return tuple(_OBJECT_TYPES.values())


def object_type(name: str) -> ObjectType | None:
    """The registered object type called `name`, or None."""
    return _OBJECT_TYPES.get(name)


@dataclass(frozen=True)
class RoleDef:
    """What a role allows. Object types missing from a mapping get nothing (fail closed)."""

    key: str
    name: str
    built_in: bool
    grants: Mapping[str, frozenset[str]] = field(default_factory=dict)
    workspace: frozenset[str] = frozenset()
    record_scope: Mapping[str, str] = field(default_factory=dict)
    hidden_fields: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _BuiltIn:
    key: str
    name: str
    actions: frozenset[str]
    scope: Scope
    workspace: frozenset[str]
    description: str


_ALL_ACTIONS = frozenset(ACTIONS)
_BUILT_INS: tuple[_BuiltIn, ...] = (
    _BuiltIn("owner", "Owner", _ALL_ACTIONS, "all", frozenset(WORKSPACE_PERMISSIONS),
             "Everything, including granting and removing the owner role."),
    _BuiltIn("admin", "Admin", _ALL_ACTIONS, "all", frozenset(WORKSPACE_PERMISSIONS),
             "Everything on every record; manages users, roles, billing, settings and campaigns."),
    _BuiltIn("manager", "Manager", _ALL_ACTIONS, "team", frozenset({"manage_campaigns", "manage_targets"}),
             "Works with the records of their teams, including export and import; runs campaigns; sets sales targets."),
    _BuiltIn("sales", "Sales", frozenset({"view", "create", "edit", "delete"}), "own", frozenset(),
             "Works with their own records."),
    _BuiltIn("support", "Support", frozenset({"view", "edit"}), "all", frozenset(),
             "Sees and corrects every record and opens service tickets; deletes nothing."),
    _BuiltIn("read_only", "Read-only", frozenset({"view"}), "all", frozenset(),
             "Sees every record and changes nothing."),
)
BUILT_IN_ROLE_KEYS: tuple[str, ...] = tuple(b.key for b in _BUILT_INS)
BUILT_IN_DESCRIPTIONS: Mapping[str, str] = {b.key: b.description for b in _BUILT_INS}


# the built-in roles that maintain catalogue object types (see ObjectType.catalogue)
CATALOGUE_KEEPERS = frozenset({"owner", "admin", "manager"})


def _built_in(spec: _BuiltIn) -> RoleDef:
    types = object_types()
    names = [t.name for t in types]
    return RoleDef(
        key=spec.key,
        name=spec.name,
        built_in=True,
        grants={t.name: (spec.actions if not t.catalogue or spec.key in CATALOGUE_KEEPERS
                         else spec.actions & {"view"}) | t.extras_for(spec.key) for t in types},
        workspace=spec.workspace,
        record_scope={n: spec.scope for n in names},
        hidden_fields={},
    )


class _BuiltInRoles(Mapping[str, RoleDef]):
    """The built-in roles, computed from the object-type registry on every read, so that
    object types registered after import are covered too."""

    def __getitem__(self, key: str) -> RoleDef:
        for spec in _BUILT_INS:
            if spec.key == key:
                return _built_in(spec)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(BUILT_IN_ROLE_KEYS)

    def __len__(self) -> int:
        return len(_BUILT_INS)


BUILT_IN_ROLES: Mapping[str, RoleDef] = _BuiltInRoles()


def no_access_role(key: str) -> RoleDef:
    """What an unknown role key gets (e.g. a custom role deleted meanwhile): nothing at all."""
    return RoleDef(key=key, name=key, built_in=False)


def permission_label(object_type: str, action: str) -> str:
    """How a permission is named in messages and API errors: 'contacts: delete'."""
    return f"{object_type}: {action}"


class PermissionDenied(Exception):
    """The actor's role lacks a permission; the message names the role and the permission."""

    def __init__(self, role_name: str, permission: str, message: str | None = None) -> None:
        self.role_name = role_name
        self.permission = permission
        super().__init__(
            message or f"Your role '{role_name}' does not have the permission '{permission}'."
        )

    @classmethod
    def hidden_field(cls, role_name: str, object_type: str, field_name: str) -> PermissionDenied:
        """A denial for reading or writing a field hidden from the role."""
        return cls(
            role_name,
            f"{object_type}.{field_name}",
            f"Your role '{role_name}' may not see or change the field '{object_type}.{field_name}'.",
        )

    @property
    def message(self) -> str:
        return str(self)


def matrix_allows(role: RoleDef, permission: tuple[str, str] | None) -> bool:
    """Whether `role` holds a declared endpoint permission: (object type, action),
    ("workspace", permission) or None (any member)."""
    if permission is None:
        return True
    kind, name = permission
    if kind == WORKSPACE:
        return name in role.workspace
    return name in role.grants.get(kind, frozenset())


def unknown_names(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """The names not among `known`, in the order given (for validation messages)."""
    allowed = set(known)
    return [n for n in names if n not in allowed]
