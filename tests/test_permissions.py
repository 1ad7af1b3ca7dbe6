"""Per-tenant permissions: built-in roles, custom roles, record scopes, hidden fields,
role and member administration, and isolation between workspaces."""

from __future__ import annotations

from typing import Any

import httpx

import kith.tenants.registry  # noqa: F401 - registers the CRM's object types
from kith.platform.access import rules
from kith.platform.access.actor import Actor
from kith.platform.access.policy import Policy
from kith.platform.access.rules import (
    ACTIONS,
    BUILT_IN_ROLES,
    WORKSPACE_PERMISSIONS,
    ObjectType,
    PermissionDenied,
)
from kith.platform.db import platform_tx, tenant_scope

from .conftest import Workspace
from .factories import Member, add_member, owner_token
from .web_helpers import assert_error, client, csrf_from, form_post, login

PHONE = "+86 138 0013 8000"


def _policy(role: str, identity_id: int | None = 7, team: frozenset[int] = frozenset()) -> Policy:
    actor = Actor(kind="user" if identity_id else "job", tenant_id=1, role=role, identity_id=identity_id)
    return Policy(role=BUILT_IN_ROLES[role], actor=actor, team_member_ids=team)


def test_built_in_roles_follow_the_declared_matrix() -> None:
    expected = {
        "owner": (set(ACTIONS), "all", set(WORKSPACE_PERMISSIONS)),
        "admin": (set(ACTIONS), "all", set(WORKSPACE_PERMISSIONS)),
        "manager": (set(ACTIONS), "team", {"manage_campaigns", "manage_targets"}),
        "sales": ({"view", "create", "edit", "delete"}, "own", set()),
        "support": ({"view", "edit"}, "all", set()),
        "read_only": ({"view"}, "all", set()),
    }
    assert list(BUILT_IN_ROLES) == list(expected)
    for key, (actions, scope, workspace) in expected.items():
        policy = _policy(key)
        assert {a for a in ACTIONS if policy.can("contacts", a)} == actions, key
        assert policy.scope("contacts") == scope, key
        assert {p for p in WORKSPACE_PERMISSIONS if policy.can_manage(p)} == workspace, key
        assert policy.hidden_fields("contacts") == frozenset()
        assert not policy.can("no_such_type", "view")


def test_built_in_roles_cover_object_types_registered_later() -> None:
    later = ObjectType("test_deals", "Deals", ("title", "amount"))
    rules.register_object_type(later)
    try:
        assert _policy("read_only").can("test_deals", "view")
        assert not _policy("read_only").can("test_deals", "edit")
        assert _policy("manager").scope("test_deals") == "team"
    finally:
        del rules._OBJECT_TYPES["test_deals"]  # the registry is process-wide; leave it as found
    assert not _policy("owner").can("test_deals", "view")


def test_record_scopes_and_denial_messages() -> None:
    assert _policy("owner").owner_ids("contacts") is None
    assert _policy("sales").owner_ids("contacts") == {7}
    assert _policy("manager", team=frozenset({7, 8, 9})).owner_ids("contacts") == {7, 8, 9}
    assert _policy("manager").owner_ids("contacts") == {7}
    # a job acting with an own-scoped role owns nothing; with an all-scoped role it reaches all
    assert _policy("sales", identity_id=None).owner_ids("contacts") == frozenset()
    assert _policy("owner", identity_id=None).owner_ids("contacts") is None
    try:
        _policy("sales").require("contacts", "export")
        raise AssertionError("sales may not export")
    except PermissionDenied as exc:
        assert exc.permission == "contacts: export"
        assert str(exc) == "Your role 'Sales' does not have the permission 'contacts: export'."
    try:
        _policy("manager").require_manage("manage_roles")
        raise AssertionError("managers may not manage roles")
    except PermissionDenied as exc:
        assert str(exc) == "Your role 'Manager' does not have the permission 'workspace: manage_roles'."


async def _api(ws: Workspace) -> httpx.AsyncClient:
    return client(headers=await owner_token(ws))


async def _create_role(c: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    resp = await c.post("/api/v1/roles", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _roles_in_db(ws: Workspace) -> int:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict("SELECT count(*) AS n FROM roles")
    return int(rows[0]["n"])


async def test_denials_are_403_naming_the_permission(workspace: Workspace) -> None:
    support = await add_member(workspace, "support")
    read_only = await add_member(workspace, "read_only")
    async with client() as c:
        made = await c.post("/api/v1/contacts", json={"name": "Kept"}, headers=await owner_token(workspace))
        err = assert_error(await c.delete(f"/api/v1/contacts/{made.json()['id']}", headers=support.headers),
                           403, "permission_denied")
        assert err["permission"] == "contacts: delete"
        assert err["message"] == "Your role 'Support' does not have the permission 'contacts: delete'."
        err = assert_error(await c.post("/api/v1/contacts", json={"name": "x"}, headers=read_only.headers), 403)
        assert err["permission"] == "contacts: create"
        err = assert_error(await c.get("/api/v1/roles", headers=support.headers), 403, "permission_denied")
        assert err["permission"] == "workspace: manage_roles"
        assert (await c.get(f"/api/v1/contacts/{made.json()['id']}", headers=read_only.headers)).status_code == 200
    # pages: the error page names the permission
    async with client() as c:
        await login(c, read_only.email, read_only.password)
        page = await c.get(f"/t/{workspace.slug}/settings/roles")
        assert page.status_code == 403
        assert "workspace: manage_roles" in page.text and "Read-only" in page.text


async def test_own_and_team_scopes(workspace: Workspace) -> None:
    alice, bob = await add_member(workspace, "sales"), await add_member(workspace, "sales")
    manager = await add_member(workspace, "manager")
    async with await _api(workspace) as owner, client() as c:
        ids = {}
        for who, name in ((alice, "Alice's lead"), (bob, "Bob's lead"), (manager, "Manager's lead")):
            resp = await c.post("/api/v1/contacts", json={"name": name}, headers=who.headers)
            assert resp.status_code == 201, resp.text
            ids[name] = resp.json()["id"]

        async def names(who: Member, q: str = "") -> set[str]:
            resp = await c.get("/api/v1/contacts", params={"q": q}, headers=who.headers)
            assert resp.status_code == 200, resp.text
            return {i["name"] for i in resp.json()["items"]}

        assert await names(alice) == {"Alice's lead"}
        assert await names(alice, "Bob") == set()
        bobs = "/api/v1/contacts/{}".format(ids["Bob's lead"])
        assert_error(await c.get(bobs, headers=alice.headers), 404, "not_found")
        assert_error(await c.patch(bobs, json={"notes": "mine now"}, headers=alice.headers), 404)
        assert_error(await c.delete(bobs, headers=alice.headers), 404)
        # a manager sees their own and their teams' records, nobody else's
        assert await names(manager) == {"Manager's lead"}
        team = (await owner.post("/api/v1/teams", json={"name": "East"})).json()
        for who, is_manager in ((manager, True), (alice, False)):
            put = await owner.put(f"/api/v1/teams/{team['id']}/members/{who.identity_id}",
                                  json={"is_manager": is_manager})
            assert put.status_code == 200, put.text
        assert await names(manager) == {"Manager's lead", "Alice's lead"}
        alices = "/api/v1/contacts/{}".format(ids["Alice's lead"])
        assert (await c.get(alices, headers=manager.headers)).status_code == 200
        assert_error(await c.get(bobs, headers=manager.headers), 404)
        # team membership does not widen an own-scoped role
        assert await names(alice) == {"Alice's lead"}
        await owner.delete(f"/api/v1/teams/{team['id']}/members/{alice.identity_id}")
        assert await names(manager) == {"Manager's lead"}
        everyone = {"Alice's lead", "Bob's lead", "Manager's lead"}
        assert {i["name"] for i in (await owner.get("/api/v1/contacts")).json()["items"]} == everyone


async def test_hidden_field_is_absent_everywhere(workspace: Workspace) -> None:
    async with await _api(workspace) as owner:
        role = await _create_role(owner, name="No phones", grants={"contacts": ["view", "create", "edit"]},
                                  record_scope={"contacts": "all"}, hidden_fields={"contacts": ["phone"]})
        assert role["key"] == "custom-no-phones"
        contact = (await owner.post("/api/v1/contacts", json={"name": "张伟", "phone": PHONE})).json()
    member = await add_member(workspace, role["key"])
    async with client(headers=member.headers) as c:
        listed = (await c.get("/api/v1/contacts")).json()["items"]
        assert [i["name"] for i in listed] == ["张伟"] and "phone" not in listed[0]
        got = (await c.get(f"/api/v1/contacts/{contact['id']}")).json()
        assert "phone" not in got and got["name"] == "张伟"
        # search does not match on the hidden field, or it would reveal it
        assert (await c.get("/api/v1/contacts", params={"q": "0013 8000"})).json()["items"] == []
        assert len((await c.get("/api/v1/contacts", params={"q": "张"})).json()["items"]) == 1
        err = assert_error(await c.patch(f"/api/v1/contacts/{contact['id']}", json={"phone": "12345"}), 403)
        assert err["message"] == "Your role 'No phones' may not see or change the field 'contacts.phone'."
        assert err["permission"] == "contacts.phone"
        assert_error(await c.post("/api/v1/contacts", json={"name": "x", "phone": "12345"}), 403)
        patched = await c.patch(f"/api/v1/contacts/{contact['id']}", json={"notes": "ok"})
        assert patched.status_code == 200 and "phone" not in patched.json()
    async with client() as c:
        await login(c, member.email, member.password)
        for page in (f"/t/{workspace.slug}/contacts", f"/t/{workspace.slug}/contacts/{contact['id']}/edit"):
            html = (await c.get(page)).text
            assert "张伟" in html and "0013 8000" not in html and 'name="phone"' not in html, page
        assert "张伟" not in (await c.get(f"/t/{workspace.slug}/contacts", params={"q": "0013"})).text
    async with tenant_scope(workspace.tenant_id) as tx:
        rows = await tx.execute_query_dict("SELECT phone FROM contacts WHERE id = $1", [contact["id"]])
    assert rows[0]["phone"] == PHONE  # hidden, not lost


async def test_a_deleted_custom_role_grants_nothing(workspace: Workspace) -> None:
    async with await _api(workspace) as owner:
        role = await _create_role(owner, name="Temp", grants={"contacts": ["view"]})
    member = await add_member(workspace, role["key"])
    async with client(headers=member.headers) as c:
        assert (await c.get("/api/v1/contacts")).status_code == 200
        async with tenant_scope(workspace.tenant_id) as tx:  # gone meanwhile, as after a race
            await tx.execute_query("DELETE FROM roles WHERE key = $1", [role["key"]])
        err = assert_error(await c.get("/api/v1/contacts"), 403, "permission_denied")
        assert err["message"] == "Your role 'custom-temp' does not have the permission 'contacts: view'."
    ghost = await add_member(workspace, "no-such-role")
    async with client(headers=ghost.headers) as c:
        assert_error(await c.get("/api/v1/contacts"), 403, "permission_denied")


async def test_owner_rules(workspace: Workspace) -> None:
    admin = await add_member(workspace, "admin")
    other = await add_member(workspace, "sales")
    async with await _api(workspace) as owner, client(headers=admin.headers) as by_admin:
        me = f"/api/v1/members/{workspace.identity_id}"
        err = assert_error(await owner.patch(me, json={"role": "admin"}), 409, "last_owner")
        assert "last owner" in err["message"]
        # only an owner grants or removes 'owner'
        err = assert_error(await by_admin.patch(f"/api/v1/members/{other.identity_id}", json={"role": "owner"}),
                           403, "permission_denied")
        assert "Only an owner" in err["message"]
        assert_error(await by_admin.patch(me, json={"role": "sales"}), 403, "permission_denied")
        ok = await by_admin.patch(f"/api/v1/members/{other.identity_id}", json={"role": "support"})
        assert ok.status_code == 200 and ok.json()["role"] == "support" and ok.json()["role_name"] == "Support"
        assert (await owner.patch(f"/api/v1/members/{other.identity_id}", json={"role": "owner"})).status_code == 200
        demoted = await owner.patch(me, json={"role": "admin"})
        assert demoted.status_code == 200, demoted.text
        # no longer an owner, so no longer able to remove one
        assert_error(await owner.patch(f"/api/v1/members/{other.identity_id}", json={"role": "admin"}), 403)
        assert_error(await by_admin.patch(me, json={"role": "ghost"}), 422, "invalid_input")
        assert_error(await by_admin.patch("/api/v1/members/999999999", json={"role": "sales"}), 404)
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT identity_id, role FROM public.memberships WHERE tenant_id = $1 AND role = 'owner'",
            [workspace.tenant_id])
    assert [r["identity_id"] for r in rows] == [other.identity_id]


async def test_nobody_hands_out_more_than_they_hold(workspace: Workspace) -> None:
    async with await _api(workspace) as owner:
        hr = await _create_role(owner, name="People ops", grants={"contacts": ["view"]},
                                workspace=["manage_users", "manage_roles"])
    member = await add_member(workspace, hr["key"])
    target = await add_member(workspace, "read_only")
    async with client(headers=member.headers) as c:
        err = assert_error(await c.patch(f"/api/v1/members/{target.identity_id}", json={"role": "admin"}), 403)
        assert err["permission"] == "contacts: create"
        err = assert_error(await c.post("/api/v1/roles", json={"name": "Sneaky", "grants": {
            "contacts": ["view", "export"]}}), 403, "permission_denied")
        assert "contacts: export" in err["message"]
        assert (await c.patch(f"/api/v1/members/{target.identity_id}", json={"role": hr["key"]})).status_code == 200


async def test_a_role_in_use_cannot_be_deleted(workspace: Workspace) -> None:
    one, two = await add_member(workspace, "sales"), await add_member(workspace, "sales")
    async with await _api(workspace) as owner:
        role = await _create_role(owner, name="Field team", grants={"contacts": ["view", "edit"]},
                                  record_scope={"contacts": "team"})
        for m in (one, two):
            given = await owner.patch(f"/api/v1/members/{m.identity_id}", json={"role": role["key"]})
            assert given.status_code == 200
        assert (await owner.get(f"/api/v1/roles/{role['key']}")).json()["members"] == 2
        err = assert_error(await owner.delete(f"/api/v1/roles/{role['key']}"), 409, "role_in_use")
        assert err["message"] == ("The role 'Field team' cannot be deleted: 2 members hold it. "
                                  "Give them another role first.")
        assert_error(await owner.delete("/api/v1/roles/sales"), 409, "built_in_role")
        assert_error(await owner.patch("/api/v1/roles/admin", json={"name": "Boss"}), 409, "built_in_role")
        for m in (one, two):
            await owner.patch(f"/api/v1/members/{m.identity_id}", json={"role": "sales"})
        renamed = await owner.patch(f"/api/v1/roles/{role['key']}", json={"name": "Field crew"})
        assert renamed.json()["name"] == "Field crew" and renamed.json()["key"] == role["key"]
        assert renamed.json()["record_scope"] == {"contacts": "team"}
        assert (await owner.delete(f"/api/v1/roles/{role['key']}")).status_code == 204
        assert_error(await owner.get(f"/api/v1/roles/{role['key']}"), 404, "not_found")
    async with tenant_scope(workspace.tenant_id) as tx:
        entries = await tx.execute_query_dict(
            "SELECT action, diff FROM audit_log WHERE object_type = 'role' ORDER BY seq")
    assert [e["action"] for e in entries] == ["role.create", "role.update", "role.delete"]


async def test_bad_role_input_is_refused_field_by_field(workspace: Workspace) -> None:
    async with await _api(workspace) as owner:
        await _create_role(owner, name="Taken")
        bad: list[tuple[dict[str, Any], str, str]] = [
            ({"name": "x", "grants": {"invoices": ["view"]}}, "grants", "Unknown object type 'invoices'"),
            ({"name": "x", "grants": {"contacts": ["view", "fly"]}}, "grants", "Unknown action 'fly'"),
            ({"name": "x", "grants": {"contacts": ["edit"]}}, "grants", "Grant 'view'"),
            ({"name": "x", "record_scope": {"contacts": "planet"}}, "record_scope", "own, team, all"),
            ({"name": "x", "hidden_fields": {"contacts": ["salary"]}}, "hidden_fields", "Unknown field 'salary'"),
            ({"name": "x", "workspace": ["launch_rockets"]}, "workspace", "Unknown workspace permission"),
            ({"name": "taken"}, "name", "already exists"),
            ({"name": "Admin"}, "name", "built-in role"),
            ({"name": "   "}, "name", "cannot be empty"),
            ({"name": "x" * 61}, "name", "at most 60"),
            ({"grants": {}}, "name", "required"),
            ({"name": "x", "colour": "red"}, "colour", "Unknown field"),
        ]
        for body, field, words in bad:
            err = assert_error(await owner.post("/api/v1/roles", json=body), 422, "invalid_input")
            assert words in err["fields"].get(field, ""), (body, err)
        key = "custom-taken"
        err = assert_error(await owner.patch(f"/api/v1/roles/{key}", json={"grants": {"contacts": ["nope"]}}), 422)
        assert "Unknown action 'nope'" in err["fields"]["grants"]
        assert_error(await owner.post("/api/v1/teams", json={"name": ""}), 422, "invalid_input")
    assert await _roles_in_db(workspace) == 1


async def test_roles_and_teams_stay_in_their_workspace(workspace: Workspace, other_workspace: Workspace) -> None:
    async with await _api(other_workspace) as theirs:
        role = await _create_role(theirs, name="Their secret role", grants={"contacts": ["view"]})
        team = (await theirs.post("/api/v1/teams", json={"name": "Their team"})).json()
    stranger = await add_member(other_workspace, "sales")
    async with await _api(workspace) as mine:
        assert "Their secret role" not in (await mine.get("/api/v1/roles")).text
        assert (await mine.get("/api/v1/teams")).json()["items"] == []
        assert_error(await mine.get(f"/api/v1/roles/{role['key']}"), 404)
        assert_error(await mine.delete(f"/api/v1/teams/{team['id']}"), 404)
        assert_error(await mine.patch(f"/api/v1/members/{stranger.identity_id}", json={"role": "admin"}), 404)
        mine_team = (await mine.post("/api/v1/teams", json={"name": "Their team"})).json()  # same name is fine
        assert_error(await mine.put(f"/api/v1/teams/{mine_team['id']}/members/{stranger.identity_id}", json={}), 404)
        # a custom role key of another workspace means nothing here
        assert_error(await mine.patch(f"/api/v1/members/{workspace.identity_id}", json={"role": role["key"]}), 422)
        members = (await mine.get("/api/v1/members")).json()["items"]
        assert [m["email"] for m in members] == [workspace.email]
    async with tenant_scope(other_workspace.tenant_id) as tx:
        assert len(await tx.execute_query_dict("SELECT 1 FROM teams")) == 1


async def test_settings_pages(workspace: Workspace) -> None:
    member = await add_member(workspace, "sales")
    base = f"/t/{workspace.slug}/settings"
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        roles = await c.get(f"{base}/roles")
        assert roles.status_code == 200
        assert 'id="matrix-contacts"' in roles.text and "Read-only" in roles.text
        made = await form_post(c, f"{base}/roles/new", {
            "name": "Call centre", "grant:contacts:view": "on", "grant:contacts:edit": "on",
            "scope:contacts": "all", "hidden:contacts:email": "on", "workspace:manage_campaigns": "on"})
        assert made.status_code == 303, made.text
        async with await _api(workspace) as api:
            role = (await api.get("/api/v1/roles/custom-call-centre")).json()
        assert role["grants"] == {"contacts": ["view", "edit"]} and role["hidden_fields"] == {"contacts": ["email"]}
        assert role["workspace"] == ["manage_campaigns"] and role["record_scope"] == {"contacts": "all"}
        bad = await form_post(c, f"{base}/roles/new", {"name": "", "grant:contacts:edit": "on"})
        assert bad.status_code == 422 and 'data-field="name"' in bad.text and 'data-field="grants"' in bad.text
        edit = await c.get(f"{base}/roles/custom-call-centre/edit")
        assert 'name="hidden:contacts:email" checked' in edit.text
        saved = await c.post(f"{base}/roles/custom-call-centre/edit", data={
            "csrf_token": csrf_from(edit.text), "name": "Call center", "grant:contacts:view": "on",
            "scope:contacts": "own"})
        assert saved.status_code == 303
        members = await c.get(f"{base}/members")
        assert member.email in members.text
        changed = await c.post(f"{base}/members/{member.identity_id}/role",
                               data={"csrf_token": csrf_from(members.text), "role": "custom-call-centre"})
        assert changed.status_code == 303
        in_use = await c.post(f"{base}/roles/custom-call-centre/delete", data={"csrf_token": csrf_from(members.text)})
        assert in_use.status_code == 409 and "1 member holds it" in in_use.text
        teams = await form_post(c, f"{base}/teams", {"name": "North"})
        assert teams.status_code == 303
        page = await c.get(f"{base}/teams")
        assert "North" in page.text
        async with await _api(workspace) as api:
            team_id = (await api.get("/api/v1/teams")).json()["items"][0]["id"]
        added = await c.post(f"{base}/teams/{team_id}/members", data={
            "csrf_token": csrf_from(page.text), "identity_id": str(member.identity_id), "is_manager": "on"})
        assert added.status_code == 303
        page = await c.get(f"{base}/teams")
        assert member.email in page.text and "manager" in page.text
        dup = await form_post(c, f"{base}/teams", {"name": "north"})
        assert dup.status_code == 422 and "already exists" in dup.text


async def test_settings_pages_in_the_browser_on_desktop_and_phone(workspace: Workspace) -> None:
    from playwright.async_api import expect

    from .browser import SHOTS, chromium, no_horizontal_scroll
    from .live_server import web_server

    await add_member(workspace, "sales")
    async with await _api(workspace) as api:
        await _create_role(api, name="区域销售 Regional", grants={"contacts": ["view", "create"]},
                           hidden_fields={"contacts": ["phone", "notes"]})
        team = (await api.post("/api/v1/teams", json={"name": "华东 East"})).json()
        await api.put(f"/api/v1/teams/{team['id']}/members/{workspace.identity_id}", json={"is_manager": True})
    with web_server() as base:
        async with chromium() as browser:
            for name, viewport in (("desktop", {"width": 1280, "height": 800}),
                                   ("phone", {"width": 390, "height": 844})):
                ctx = await browser.new_context(viewport=viewport, is_mobile=name == "phone")
                page = await ctx.new_page()
                await page.goto(f"{base}/login")
                await page.fill("input[name=email]", workspace.email)
                await page.fill("input[name=password]", workspace.password)
                await page.click("button[type=submit]")
                await page.wait_for_url(f"{base}/t/{workspace.slug}/contacts")
                await page.click("nav[aria-label=Workspace] >> text=Settings")
                await page.click("nav[aria-label=Settings] >> text=Members")
                for settings in ("members", "roles", "teams"):
                    await page.goto(f"{base}/t/{workspace.slug}/settings/{settings}")
                    await expect(page.locator("h1")).to_have_text(settings.capitalize())
                    await no_horizontal_scroll(page)
                    # a mobile browser widens its layout viewport to fit an overflowing control, so
                    # measure the elements against the device's width instead
                    right = await page.evaluate(
                        "Math.max(...[...document.querySelectorAll('main *')]"
                        ".map(e => e.getBoundingClientRect().right))")
                    overflow = right - viewport["width"]
                    assert overflow <= 1, f"{settings} at {name} width: an element overflows by {overflow}px"
                    await page.screenshot(path=str(SHOTS / f"settings-{settings}-{name}.png"), full_page=True)
                await page.goto(f"{base}/t/{workspace.slug}/settings/roles/custom-regional/edit")
                await no_horizontal_scroll(page)
                await page.screenshot(path=str(SHOTS / f"settings-role-form-{name}.png"), full_page=True)
                await ctx.close()
