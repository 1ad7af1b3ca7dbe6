"""Audit completeness: every kind of change Kith makes today, performed the way people and
programs make it (API and pages), leaves exactly one entry naming the right actor, object,
action and field-level diff; a refused change leaves none.

The cases are a table: a new kind of change is one more `Case(...)` row (the privacy work's
erasure, data-subject export and consent changes belong here when they land).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from kith.platform.access.actor import Actor
from kith.platform.audit.entries import AuditFilter, head_seq, list_entries
from kith.platform.db import platform_tx, tenant_scope
from kith.platform.identity.account import active_sessions
from kith.platform.identity.models import ApiToken
from kith.platform.identity.tokens import create_api_token
from kith.platform.identity.totp import set_workspace_requires_2fa

from .conftest import Services, Workspace, make_workspace
from .factories import add_member
from .test_account_security import _CHEAP, _enrol, _next_code
from .web_helpers import app, client, csrf_from, form_post

_ips = itertools.count(1)
_n = itertools.count(1)
MEMBER_PASSWORD = "audited member passphrase"

DiffCheck = Mapping[str, Any] | Callable[[Any], bool] | None


def _client(headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    """A client from its own address, so sign-in throttles never mix cases."""
    n = next(_ips)
    transport = httpx.ASGITransport(app=app(), client=(f"10.{200 + os.getpid() % 50}.{n // 250}.{n % 250}", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=dict(headers or {}))


@dataclass
class Env:
    ws: Workspace
    api: dict[str, str]  # the owner's API token
    token_id: int
    page: httpx.AsyncClient  # the owner, signed in


@dataclass(frozen=True)
class Expected:
    since: int  # the log's head before the change: only entries after it count
    action: str
    object_type: str
    object_id: str
    actor_kind: str
    actor_id: str
    diff: DiffCheck
    token_id: int | None = None
    undo: Callable[[], Awaitable[None]] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Env], Awaitable[Expected]]


async def _head(ws: Workspace) -> int:
    async with tenant_scope(ws.tenant_id) as tx:
        return await head_seq(tx)


async def _entries_after(ws: Workspace, since: int) -> list[dict[str, Any]]:
    """Entries after `since`, leaving out "token.use": that records the call itself (once a
    minute per token), not the change the call made or was refused."""
    async with tenant_scope(ws.tenant_id) as tx:
        page = await list_entries(tx, AuditFilter(), limit=200)
    return [e.as_json() for e in page.items if e.seq > since and e.action != "token.use"]


def _by_token(env: Env, since: int, action: str, object_type: str, object_id: object, diff: DiffCheck) -> Expected:
    return Expected(since, action, object_type, str(object_id), "token", str(env.ws.identity_id), diff, env.token_id)


def _by_owner(env: Env, since: int, action: str, object_type: str, object_id: object, diff: DiffCheck,
              undo: Callable[[], Awaitable[None]] | None = None) -> Expected:
    return Expected(since, action, object_type, str(object_id), "user", str(env.ws.identity_id), diff, undo=undo)


def _created_id(resp: httpx.Response, what: str) -> int:
    found = re.search(rf"[?&]{what}=(\d+)", resp.headers.get("location", ""))
    assert resp.status_code == 303 and found, (resp.status_code, resp.text[:300])
    return int(found.group(1))


async def _api_contact(env: Env, **values: str) -> dict[str, Any]:
    async with _client(env.api) as c:
        resp = await c.post("/api/v1/contacts", json={"name": f"Contact {next(_n)}", **values})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _api(env: Env, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    async with _client(env.api) as c:
        resp = await c.request(method, "/api/v1" + path, json=body)
    assert resp.status_code == status, (method, path, resp.status_code, resp.text)
    return resp.json() if resp.content else None


# --- contacts --------------------------------------------------------------------------


async def contact_create_api(env: Env) -> Expected:
    since = await _head(env.ws)
    made = await _api_contact(env, name="李娜", phone="+86 138 0013 8000", email="li.na@example.cn")
    return _by_token(env, since, "contact.create", "contacts", made["id"], {
        "name": [None, "李娜"], "phone": [None, "+86 138 0013 8000"], "email": [None, "li.na@example.cn"]})


async def contact_create_page(env: Env) -> Expected:
    since = await _head(env.ws)
    resp = await form_post(env.page, f"/t/{env.ws.slug}/contacts/new",
                           {"name": "Ada Lovelace", "company_name": "Analytical", "notes": ""})
    return _by_owner(env, since, "contact.create", "contacts", _created_id(resp, "created"),
                     {"name": [None, "Ada Lovelace"], "company_name": [None, "Analytical"]})


async def contact_update_api(env: Env) -> Expected:
    made = await _api_contact(env, phone="+44 20 7946 0001")
    since = await _head(env.ws)
    await _api(env, "PATCH", f"/contacts/{made['id']}", {"phone": "+44 20 7946 0002", "notes": "moved"})
    return _by_token(env, since, "contact.update", "contacts", made["id"],
                     {"phone": ["+44 20 7946 0001", "+44 20 7946 0002"], "notes": ["", "moved"]})


async def contact_update_page(env: Env) -> Expected:
    made = await _api_contact(env, company_name="Old Co")
    since = await _head(env.ws)
    resp = await form_post(env.page, f"/t/{env.ws.slug}/contacts/{made['id']}/edit",
                           {"name": made["name"], "email": "", "phone": "", "company_name": "New Co", "notes": ""})
    assert resp.status_code == 303, resp.text[:300]
    return _by_owner(env, since, "contact.update", "contacts", made["id"], {"company_name": ["Old Co", "New Co"]})


async def contact_delete_api(env: Env) -> Expected:
    made = await _api_contact(env, email="gone@example.com")
    since = await _head(env.ws)
    async with _client(env.api) as c:
        assert (await c.delete(f"/api/v1/contacts/{made['id']}")).status_code == 204
    return _by_token(env, since, "contact.delete", "contacts", made["id"],
                     {"name": [made["name"], None], "email": ["gone@example.com", None]})


async def contact_delete_page(env: Env) -> Expected:
    made = await _api_contact(env, notes="to be removed")
    since = await _head(env.ws)
    page = f"/t/{env.ws.slug}/contacts/{made['id']}/delete"
    resp = await form_post(env.page, page, {})
    assert resp.status_code == 303
    return _by_owner(env, since, "contact.delete", "contacts", made["id"],
                     {"name": [made["name"], None], "notes": ["to be removed", None]})


async def contact_read_sensitive_api(env: Env) -> Expected:
    made = await _api_contact(env, phone="+33 1 23 45 67 89")
    since = await _head(env.ws)
    await _api(env, "GET", f"/contacts/{made['id']}")
    return _by_token(env, since, "contacts.read_sensitive", "contacts", made["id"], {"fields": ["phone"]})


async def contact_list_read_sensitive_api(env: Env) -> Expected:
    marker = f"listed-{next(_n)}"
    made = await _api_contact(env, email=f"{marker}@example.com", phone="+33 1 23 45 67 00", company_name=marker)
    await _api_contact(env, company_name=marker)  # nothing sensitive: not named in the entry
    since = await _head(env.ws)
    await _api(env, "GET", f"/contacts?q={marker}")
    return _by_token(env, since, "contacts.read_sensitive", "contacts", "",
                     {"ids": [made["id"]], "fields": ["email", "phone"]})


# --- roles, members, teams -----------------------------------------------------------------


def _role_json(key: str, name: str, actions: list[str]) -> dict[str, Any]:
    return {"key": key, "name": name, "grants": {"contacts": actions}, "workspace": [],
            "record_scope": {"contacts": "own"}, "hidden_fields": {}}


async def role_create(env: Env) -> Expected:
    since = await _head(env.ws)
    name = f"Auditors {next(_n)}"
    role = await _api(env, "POST", "/roles", {"name": name, "grants": {"contacts": ["view"]}}, 201)
    return _by_token(env, since, "role.create", "role", role["key"],
                     {"before": None, "after": _role_json(role["key"], name, ["view"])})


async def role_update(env: Env) -> Expected:
    name = f"Editors {next(_n)}"
    role = await _api(env, "POST", "/roles", {"name": name, "grants": {"contacts": ["view"]}}, 201)
    since = await _head(env.ws)
    await _api(env, "PATCH", f"/roles/{role['key']}", {"grants": {"contacts": ["view", "edit"]}})
    return _by_token(env, since, "role.update", "role", role["key"], {
        "before": _role_json(role["key"], name, ["view"]), "after": _role_json(role["key"], name, ["view", "edit"])})


async def role_delete(env: Env) -> Expected:
    name = f"Short-lived {next(_n)}"
    role = await _api(env, "POST", "/roles", {"name": name, "grants": {"contacts": ["view"]}}, 201)
    since = await _head(env.ws)
    await _api(env, "DELETE", f"/roles/{role['key']}", status=204)
    return _by_token(env, since, "role.delete", "role", role["key"],
                     {"before": _role_json(role["key"], name, ["view"]), "after": None})


async def member_role_change(env: Env) -> Expected:
    member = await add_member(env.ws, "sales")
    since = await _head(env.ws)
    await _api(env, "PATCH", f"/members/{member.identity_id}", {"role": "support"})
    return _by_token(env, since, "member.role_change", "membership", member.identity_id,
                     {"before": {"role": "sales"}, "after": {"role": "support"}})


async def team_create(env: Env) -> Expected:
    since = await _head(env.ws)
    name = f"Team {next(_n)}"
    team = await _api(env, "POST", "/teams", {"name": name}, 201)
    return _by_token(env, since, "team.create", "team", team["id"], {"before": None, "after": {"name": name}})


async def team_delete(env: Env) -> Expected:
    name = f"Team {next(_n)}"
    team = await _api(env, "POST", "/teams", {"name": name}, 201)
    await _api(env, "PUT", f"/teams/{team['id']}/members/{env.ws.identity_id}", {"is_manager": True})
    since = await _head(env.ws)
    await _api(env, "DELETE", f"/teams/{team['id']}", status=204)
    return _by_token(env, since, "team.delete", "team", team["id"],
                     {"before": {"name": name, "members": [env.ws.identity_id]}, "after": None})


async def team_member_set(env: Env) -> Expected:
    team = await _api(env, "POST", "/teams", {"name": f"Team {next(_n)}"}, 201)
    member = await add_member(env.ws, "sales")
    since = await _head(env.ws)
    await _api(env, "PUT", f"/teams/{team['id']}/members/{member.identity_id}", {"is_manager": True})
    return _by_token(env, since, "team.member_set", "team", team["id"],
                     {"identity_id": member.identity_id, "before": None, "after": {"is_manager": True}})


async def team_member_remove(env: Env) -> Expected:
    team = await _api(env, "POST", "/teams", {"name": f"Team {next(_n)}"}, 201)
    member = await add_member(env.ws, "sales")
    await _api(env, "PUT", f"/teams/{team['id']}/members/{member.identity_id}", {"is_manager": False})
    since = await _head(env.ws)
    await _api(env, "DELETE", f"/teams/{team['id']}/members/{member.identity_id}", status=204)
    return _by_token(env, since, "team.member_remove", "team", team["id"],
                     {"identity_id": member.identity_id, "before": {"is_manager": False}, "after": None})


# --- API tokens ------------------------------------------------------------------------------


async def token_create_page(env: Env) -> Expected:
    since = await _head(env.ws)
    name = f"sync {next(_n)}"
    resp = await form_post(env.page, f"/t/{env.ws.slug}/settings/tokens", {"name": name})
    assert resp.status_code == 201, resp.text[:300]
    async with platform_tx() as tx:
        token = await ApiToken.filter(tenant_id=env.ws.tenant_id, name=name).using_db(tx).get()
    return _by_owner(env, since, "token.create", "api_token", token.id, {"name": name, "prefix": token.prefix})


async def token_revoke_page(env: Env) -> Expected:
    name = f"old sync {next(_n)}"
    token, _ = await create_api_token(tenant_id=env.ws.tenant_id, identity_id=env.ws.identity_id, name=name)
    since = await _head(env.ws)
    resp = await form_post(env.page, f"/t/{env.ws.slug}/settings/tokens", {},
                           f"/t/{env.ws.slug}/settings/tokens/{token.id}/revoke")
    assert resp.status_code == 303
    return _by_owner(env, since, "token.revoke", "api_token", token.id, {"name": name, "prefix": token.prefix})


# --- sign-in and account security (a member of their own, with a cheap password hash) ---------


@dataclass(frozen=True)
class Person:
    identity_id: int
    email: str


async def _person(env: Env) -> Person:
    member = await add_member(env.ws, "sales")
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.identities SET password_hash = $2 WHERE id = $1",
                               [member.identity_id, _CHEAP.hash(MEMBER_PASSWORD)])
    return Person(member.identity_id, member.email)


def _by_person(person: Person, since: int, action: str, diff: DiffCheck) -> Expected:
    return Expected(since, action, "identity", str(person.identity_id), "user", str(person.identity_id), diff)


async def _sign_in(c: httpx.AsyncClient, person: Person, password: str = MEMBER_PASSWORD) -> httpx.Response:
    return await form_post(c, "/login", {"email": person.email, "password": password}, "/login")


async def login_success(env: Env) -> Expected:
    person = await _person(env)
    since = await _head(env.ws)
    async with _client() as c:
        assert (await _sign_in(c, person)).status_code == 303
    return _by_person(person, since, "login.success", {"factor": "password"})


async def login_failure(env: Env) -> Expected:
    person = await _person(env)
    since = await _head(env.ws)
    async with _client() as c:
        assert (await _sign_in(c, person, "not the password")).status_code == 401
    return _by_person(person, since, "login.failure", {"reason": "password"})


async def login_lockout(env: Env) -> Expected:
    person = await _person(env)
    since = await _head(env.ws)
    async with _client() as c:
        statuses = [(await _sign_in(c, person, f"guess {n}")).status_code for n in range(5)]
    assert statuses[-1] == 429, statuses
    return _by_person(person, since, "login.locked",
                      lambda d: d["scope"] == "email" and set(d) == {"scope", "until"})


async def logout(env: Env) -> Expected:
    person = await _person(env)
    async with _client() as c:
        await _sign_in(c, person)
        since = await _head(env.ws)
        assert (await form_post(c, "/account/security", {}, "/logout")).status_code == 303
    return _by_person(person, since, "logout", {})


async def password_change(env: Env) -> Expected:
    person = await _person(env)
    async with _client() as c, _client() as elsewhere:
        await _sign_in(c, person)
        await _sign_in(elsewhere, person)
        since = await _head(env.ws)
        resp = await form_post(c, "/account/password", {
            "current_password": MEMBER_PASSWORD, "new_password": "a brand new passphrase 42",
            "new_password_confirm": "a brand new passphrase 42"})
        assert resp.status_code == 303, resp.text[-600:]
    return _by_person(person, since, "password.change", {"sessions_ended": 1})


async def two_factor_enable(env: Env) -> Expected:
    person = await _person(env)
    async with _client() as c:
        await _sign_in(c, person)
        since = await _head(env.ws)
        await _enrol(c)
    return _by_person(person, since, "2fa.enable", {})


async def two_factor_disable(env: Env) -> Expected:
    person = await _person(env)
    async with _client() as c:
        await _sign_in(c, person)
        secret, _ = await _enrol(c)
        since = await _head(env.ws)
        resp = await form_post(c, "/account/security", {"password": MEMBER_PASSWORD, "code": _next_code(secret)},
                               "/account/security/2fa/disable")
        assert resp.status_code == 303, resp.text[-600:]
    return _by_person(person, since, "2fa.disable", {})


async def session_revoke(env: Env) -> Expected:
    person = await _person(env)
    async with _client() as c, _client() as other:
        await _sign_in(other, person)
        await _sign_in(c, person)
        sessions = await active_sessions(person.identity_id, current_session_id=None)
        target = min(s.id for s in sessions)  # the first sign-in: `other`
        since = await _head(env.ws)
        resp = await form_post(c, "/account/security", {}, f"/account/sessions/{target}/revoke")
        assert resp.status_code == 303
    return _by_person(person, since, "session.revoke", {"session_id": target})


# --- workspace settings and the audit log itself -------------------------------------------------


async def workspace_requires_2fa(env: Env) -> Expected:
    since = await _head(env.ws)
    resp = await form_post(env.page, f"/t/{env.ws.slug}/settings/security", {"require_2fa": "on"})
    assert resp.status_code == 303, resp.text[:300]

    async def undo() -> None:  # the owner has no 2FA: with the rule on, every page sends them to enrol
        owner = Actor(kind="user", tenant_id=env.ws.tenant_id, role="owner", identity_id=env.ws.identity_id)
        await set_workspace_requires_2fa(owner, False)

    return _by_owner(env, since, "settings.update", "workspace", env.ws.tenant_id,
                     {"require_2fa": [False, True]}, undo=undo)


async def audit_retention_change(env: Env) -> Expected:
    since = await _head(env.ws)
    page = f"/t/{env.ws.slug}/settings/audit"
    resp = await form_post(env.page, page, {"retention_days": "400"}, f"{page}/retention")
    assert resp.status_code == 303, resp.text[:300]
    return _by_owner(env, since, "audit.settings.update", "audit_settings", "", {"retention_days": [2555, 400]})


async def audit_export(env: Env) -> Expected:
    since = await _head(env.ws)
    page = f"/t/{env.ws.slug}/settings/audit"
    resp = await form_post(env.page, page, {"format": "jsonl", "action": "contact"}, f"{page}/export")
    assert resp.status_code == 200, resp.text[:300]
    return _by_owner(env, since, "audit.export", "audit_log", "",
                     {"format": "jsonl", "filters": {"action": "contact"}, "through_seq": since})


async def email_provider_update(env: Env) -> Expected:
    since = await _head(env.ws)
    await _api(env, "PUT", "/email-provider", {"kind": "smtp", "smtp_host": "smtp.example.cn", "smtp_port": 587,
                                              "smtp_username": "mailer", "smtp_password": "s3cret mail pass"})

    async def undo() -> None:
        await _api(env, "PUT", "/email-provider", {"kind": "platform"})

    def only_that_a_secret_was_given(diff: Any) -> bool:  # never its text or its ciphertext
        return (diff.get("kind") == ["platform", "smtp"] and diff.get("smtp_host") == ["", "smtp.example.cn"]
                and diff.get("smtp_password") == [None, "new value"] and "s3cret" not in str(diff)
                and "kc1:" not in str(diff))

    return Expected(since, "email_provider.update", "email_provider", "", "token", str(env.ws.identity_id),
                    only_that_a_secret_was_given, env.token_id, undo=undo)


async def campaign_delete(env: Env) -> Expected:
    made = await _api(env, "POST", "/campaigns", {"name": f"草稿 {next(_n)}"}, status=201)
    since = await _head(env.ws)
    await _api(env, "DELETE", f"/campaigns/{made['id']}", status=204)
    return _by_token(env, since, "campaign.delete", "campaigns", made["id"],
                     {"name": [made["name"], None], "status": ["draft", None]})


CASES: list[Case] = [
    Case("contact create (API)", contact_create_api),
    Case("contact create (page)", contact_create_page),
    Case("contact update (API)", contact_update_api),
    Case("contact update (page)", contact_update_page),
    Case("contact delete (API)", contact_delete_api),
    Case("contact delete (page)", contact_delete_page),
    Case("contact sensitive read (API get)", contact_read_sensitive_api),
    Case("contact sensitive read (API list)", contact_list_read_sensitive_api),
    Case("role create", role_create),
    Case("role update", role_update),
    Case("role delete", role_delete),
    Case("member role change", member_role_change),
    Case("team create", team_create),
    Case("team delete", team_delete),
    Case("team member set", team_member_set),
    Case("team member remove", team_member_remove),
    Case("API token create (page)", token_create_page),
    Case("API token revoke (page)", token_revoke_page),
    Case("login success", login_success),
    Case("login failure", login_failure),
    Case("login lockout", login_lockout),
    Case("logout", logout),
    Case("password change", password_change),
    Case("2FA enable", two_factor_enable),
    Case("2FA disable", two_factor_disable),
    Case("session revoke", session_revoke),
    Case("workspace 2FA requirement", workspace_requires_2fa),
    Case("audit retention change", audit_retention_change),
    Case("audit export", audit_export),
    Case("email provider update (API)", email_provider_update),
    Case("campaign delete (API)", campaign_delete),
]


@pytest.fixture(scope="module")
async def env(db: Services) -> Any:
    ws = await make_workspace("complete")
    token, raw = await create_api_token(tenant_id=ws.tenant_id, identity_id=ws.identity_id, name="completeness")
    async with _client() as page:
        assert (await form_post(page, "/login", {"email": ws.email, "password": ws.password}, "/login")
                ).status_code == 303
        yield Env(ws, {"Authorization": f"Bearer {raw}"}, token.id, page)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_each_change_leaves_one_entry_with_its_diff(env: Env, case: Case) -> None:
    expected = await case.run(env)
    try:
        found = await _entries_after(env.ws, expected.since)
        mine = [e for e in found if e["action"] == expected.action and e["object_id"] == expected.object_id]
        assert len(mine) == 1, (expected.action, expected.object_id,
                                [(e["action"], e["object_id"]) for e in found])
        entry = mine[0]
        assert entry["object_type"] == expected.object_type
        assert (entry["actor_kind"], entry["actor_id"], entry["token_id"]) == (
            expected.actor_kind, expected.actor_id, expected.token_id)
        assert entry["ip"] and entry["request_id"], entry  # where it came from, for the auditor
        if callable(expected.diff):
            assert expected.diff(entry["diff"]), entry["diff"]
        else:
            assert entry["diff"] == expected.diff
    finally:
        if expected.undo is not None:
            await expected.undo()


# --- refused changes leave nothing -----------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    name: str
    role: str  # who tries: "owner" or a built-in role given to a fresh member
    method: str
    path: str
    body: Any
    status: int


REFUSALS: list[Refusal] = [
    Refusal("read-only creates a contact", "read_only", "POST", "/contacts", {"name": "Nope"}, 403),
    Refusal("sales deletes a contact out of scope", "sales", "DELETE", "/contacts/{contact_id}", None, 404),
    Refusal("owner sends a bad email", "owner", "POST", "/contacts", {"name": "x", "email": "no"}, 422),
    Refusal("empty name on update", "owner", "PATCH", "/contacts/{contact_id}", {"name": ""}, 422),
    Refusal("support creates a role", "support", "POST", "/roles", {"name": "Mine", "grants": {}}, 403),
    Refusal("a role named like a built-in one", "owner", "POST", "/roles", {"name": "Admin", "grants": {}}, 422),
    Refusal("manager changes a member's role", "manager", "PATCH", "/members/{identity_id}", {"role": "owner"}, 403),
    Refusal("sales creates a team", "sales", "POST", "/teams", {"name": "Sneaky"}, 403),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=[r.name for r in REFUSALS])
async def test_a_refused_change_leaves_no_entry(env: Env, refusal: Refusal) -> None:
    made = await _api_contact(env, phone="+1 202 555 0100")
    headers = env.api if refusal.role == "owner" else (await add_member(env.ws, refusal.role)).headers
    path = refusal.path.format(contact_id=made["id"], identity_id=env.ws.identity_id)
    since = await _head(env.ws)
    async with _client(headers) as c:
        resp = await c.request(refusal.method, "/api/v1" + path, json=refusal.body)
    assert resp.status_code == refusal.status, resp.text
    assert await _entries_after(env.ws, since) == []


async def test_a_refused_page_change_leaves_no_entry(env: Env) -> None:
    reader = await _person(env)
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.memberships SET role = 'read_only' WHERE identity_id = $1",
                               [reader.identity_id])
    new_contact = f"/t/{env.ws.slug}/contacts/new"
    async with _client() as c:
        await _sign_in(c, reader)
        # the forms first (viewing the list is itself an audited read), then the refused posts
        reader_csrf = csrf_from((await c.get(f"/t/{env.ws.slug}/settings/tokens")).text)
        owner_csrf = csrf_from((await env.page.get(new_contact)).text)
        since = await _head(env.ws)
        resp = await c.post(new_contact, data={"name": "Nope", "csrf_token": reader_csrf})
        assert resp.status_code == 403
        bad = await env.page.post(new_contact, data={"name": "", "csrf_token": owner_csrf})
        assert bad.status_code == 422
    assert await _entries_after(env.ws, since) == []


async def test_token_use_is_audited_once_a_minute(workspace: Workspace) -> None:
    """API token use: one "token.use" entry per token per minute, with where it came from."""
    token, raw = await create_api_token(tenant_id=workspace.tenant_id, identity_id=workspace.identity_id,
                                        name="use-audit")
    async with tenant_scope(workspace.tenant_id) as tx:
        since = await head_seq(tx)
    async with client(headers={"Authorization": f"Bearer {raw}", "X-Request-ID": "use-1"}) as c:
        for _ in range(3):
            assert (await c.get("/api/v1/contacts")).status_code == 200
    async with tenant_scope(workspace.tenant_id) as tx:
        page = await list_entries(tx, AuditFilter(), limit=50)
    uses = [e.as_json() for e in page.items if e.seq > since and e.action == "token.use"]
    assert len(uses) == 1, uses
    assert (uses[0]["actor_kind"], uses[0]["token_id"], uses[0]["object_id"]) == ("token", token.id,
                                                                                  str(token.id))
    assert uses[0]["request_id"] == "use-1"


async def test_read_entries_commit_asynchronously_but_changes_do_not(workspace: Workspace) -> None:
    """A transaction that only recorded reads commits without waiting for its WAL flush; one
    that recorded a change stays durable, whether the read came before or after the change."""
    from kith.platform.access.session import acting_as

    actor = Actor(kind="user", tenant_id=workspace.tenant_id, role="owner", identity_id=workspace.identity_id,
                  label=workspace.email)

    async def setting(session: Any) -> str:
        rows = await session.tx.execute_query_dict("SHOW synchronous_commit")
        return str(rows[0]["synchronous_commit"])

    async with acting_as(actor) as session:
        await session.audit_read("contacts", [1], ["email"])
        assert await setting(session) == "off"
        await session.audit("contact.update", "contacts", 1, {"notes": ["a", "b"]})
        assert await setting(session) == "on"
    async with acting_as(actor) as session:
        await session.audit("contact.update", "contacts", 1, {"notes": ["b", "c"]})
        await session.audit_read("contacts", [1], ["email"])
        assert await setting(session) == "on"
