"""The role matrix: every API endpoint, called by a member of every built-in role, is refused
with 403 exactly when the declared matrix (BUILT_IN_ROLES x the endpoint's declared
permission) denies it. A new endpoint without a declared permission, or with a body or
path parameter this test cannot fill, fails here with its name.

Each CRM domain adds its own sample bodies and path values in a module `tests/matrix_<domain>.py`
beside this one (found by name): `SAMPLE_BODIES` (model name -> callable making a valid body) and
`async def path_values(ws, member, owner_headers) -> dict[str, str]` (fresh records the member
may reach, for the path parameters of that domain's endpoints) and, for endpoints that need a
query string, `QUERY_STRINGS` ("GET /timeline" -> "?company_id={timeline_company_id}", filled
from the path values). An endpoint that needs more than a JSON body (a file upload) takes extra
request arguments from `REQUESTS` ("POST /imports" -> callable returning httpx keyword arguments),
and one whose declared path cannot be walked as is names the path to call in `PATHS`."""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kith.platform.access.rules import (
    ACTIONS,
    BUILT_IN_ROLE_KEYS,
    BUILT_IN_ROLES,
    WORKSPACE,
    WORKSPACE_PERMISSIONS,
    matrix_allows,
    object_type,
)
from kith.platform.db import tenant_scope
from kith.web.api.registry import ENDPOINTS, Endpoint

from .conftest import Services, Workspace, make_workspace
from .factories import Member, add_member, owner_token
from .web_helpers import client

_n = itertools.count(1)

# A minimal valid body per request model; a new model must be added here (the test says so).
SAMPLE_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "ContactIn": lambda: {"name": "Matrix contact"},
    "ContactPatch": lambda: {"notes": "checked by the role matrix"},
    "RoleIn": lambda: {"name": f"Matrix role {next(_n)}", "grants": {"contacts": ["view"]}},
    "RolePatch": lambda: {"name": f"Matrix role renamed {next(_n)}"},
    "MemberRoleIn": lambda: {"role": "sales"},
    "TeamIn": lambda: {"name": f"Matrix team {next(_n)}"},
    "TeamMemberIn": lambda: {"is_manager": False},
    "InvitationIn": lambda: {"email": f"matrix-invite-{next(_n)}@example.com", "role": "read_only"},
    "WorkspacePatch": lambda: {"time_zone": "UTC"},
    "CheckoutIn": lambda: {"plan": "pro"},  # Pro keeps room for every role's member (seats)
}
PathValues = Callable[[Workspace, Member, dict[str, str]], Awaitable[dict[str, str]]]
DOMAIN_PATH_VALUES: list[PathValues] = []
DOMAIN_QUERIES: dict[str, str] = {}
DOMAIN_REQUESTS: dict[str, Callable[[], dict[str, Any]]] = {}
DOMAIN_PATHS: dict[str, str] = {}
for _module in sorted(Path(__file__).parent.glob("matrix_*.py")):
    _domain = importlib.import_module(f"{__package__}.{_module.stem}")
    SAMPLE_BODIES.update(getattr(_domain, "SAMPLE_BODIES", {}))
    DOMAIN_QUERIES.update(getattr(_domain, "QUERY_STRINGS", {}))
    DOMAIN_REQUESTS.update(getattr(_domain, "REQUESTS", {}))
    DOMAIN_PATHS.update(getattr(_domain, "PATHS", {}))
    if hasattr(_domain, "path_values"):
        DOMAIN_PATH_VALUES.append(_domain.path_values)


@dataclass
class Setting:
    ws: Workspace
    owner: dict[str, str]
    members: dict[str, Member]
    target: Member  # whose role and team membership the calls change


@pytest.fixture(scope="module")
async def setting(db: Services) -> Setting:
    ws = await make_workspace("matrix")
    members = {role: await add_member(ws, role) for role in BUILT_IN_ROLE_KEYS}
    target = await add_member(ws, "sales")
    return Setting(ws, await owner_token(ws), members, target)


def test_every_endpoint_declares_a_known_permission() -> None:
    missing = [f"{ep.method} {ep.path}" for ep in ENDPOINTS if not hasattr(ep, "permission")]
    assert not missing, f"endpoints without a declared permission (add permission=... to endpoint()): {missing}"
    for ep in ENDPOINTS:
        if ep.permission is None:
            continue
        kind, name = ep.permission
        if kind == WORKSPACE:
            assert name in WORKSPACE_PERMISSIONS, f"{ep.method} {ep.path}: unknown workspace permission {name!r}"
        else:
            assert object_type(kind) is not None, f"{ep.method} {ep.path}: unknown object type {kind!r}"
            assert name in ACTIONS, f"{ep.method} {ep.path}: unknown action {name!r}"


async def _path_values(s: Setting, member: Member) -> dict[str, str]:
    """Fresh records for one role's walk, so an allowed call always finds what it names."""
    async with tenant_scope(s.ws.tenant_id) as tx:
        # owned by the member, so own, team and all scopes all reach it
        rows = await tx.execute_query_dict(
            "INSERT INTO contacts (name, created_by_id, owner_id) VALUES ('Matrix', $1, $1) RETURNING id",
            [member.identity_id],
        )
    async with client(headers=s.owner) as c:
        role = await c.post("/api/v1/roles", json={"name": f"Matrix fixture {next(_n)}"})
        team = await c.post("/api/v1/teams", json={"name": f"Matrix fixture {next(_n)}"})
        assert role.status_code == 201 and team.status_code == 201, (role.text, team.text)
        await c.put(f"/api/v1/teams/{team.json()['id']}/members/{s.target.identity_id}", json={})
        invitation = await c.post("/api/v1/invitations", json={"email": f"matrix-{next(_n)}@example.com"})
        assert invitation.status_code == 201, invitation.text
    values = {"invitation_id": str(invitation.json()["id"]),
              "contact_id": str(rows[0]["id"]), "key": role.json()["key"], "team_id": str(team.json()["id"]),
              "identity_id": str(s.target.identity_id)}
    for domain_values in DOMAIN_PATH_VALUES:
        values.update(await domain_values(s.ws, member, s.owner))
    return values


def _order(ep: Endpoint) -> tuple[int, int]:
    # deletions last, the most nested first, so no call loses the record it names
    return (1, -ep.path.count("/")) if ep.method == "DELETE" else (0, 0)


@pytest.mark.parametrize("role", BUILT_IN_ROLE_KEYS)
async def test_each_role_is_allowed_and_denied_as_declared(setting: Setting, role: str) -> None:
    member = setting.members[role]
    values = await _path_values(setting, member)
    wrong: list[str] = []
    async with client(headers=member.headers) as c:
        for ep in sorted(ENDPOINTS, key=_order):
            key = f"{ep.method} {ep.path}"
            path = DOMAIN_PATHS.get(key, ep.path)
            query = DOMAIN_QUERIES.get(key, "")
            for name, value in values.items():
                path = path.replace("{" + name + "}", value)
                query = query.replace("{" + name + "}", value)
            assert "{" not in path, f"{ep.method} {ep.path}: no test value for a path parameter; add it to _path_values"
            kwargs: dict[str, Any] = {}
            if ep.body is not None:
                sample = SAMPLE_BODIES.get(ep.body.__name__)
                assert sample is not None, f"{ep.method} {ep.path}: add a sample {ep.body.__name__} to SAMPLE_BODIES"
                kwargs["json"] = sample()
            if key in DOMAIN_REQUESTS:
                kwargs.update(DOMAIN_REQUESTS[key]())
            resp = await c.request(ep.method, "/api/v1" + path + query, **kwargs)
            allowed = matrix_allows(BUILT_IN_ROLES[role], ep.permission)
            label = f"{ep.method} {ep.path} as {role} (declared {ep.permission}): {resp.status_code} {resp.text[:200]}"
            if allowed and not 200 <= resp.status_code < 300:
                wrong.append("expected success, got " + label)
            if not allowed:
                if resp.status_code != 403 or resp.json()["error"]["code"] != "permission_denied":
                    wrong.append("expected 403 permission_denied, got " + label)
                elif resp.json()["error"]["permission"] != f"{ep.permission[0]}: {ep.permission[1]}":
                    wrong.append("the 403 names another permission: " + label)
    assert not wrong, "\n".join(wrong)
