"""The JSON API with Bearer tokens: CRUD, bad input, isolation, OpenAPI coverage."""

from __future__ import annotations

import asyncio

from kith.platform.db import platform_tx, tenant_scope
from kith.platform.identity.tokens import create_api_token, revoke_api_token
from kith.tenants.contacts.models import Contact
from kith.web.api.registry import ENDPOINTS

from .conftest import Workspace, make_workspace
from .web_helpers import assert_error, client


async def _token(ws: Workspace) -> dict[str, str]:
    _, raw = await create_api_token(tenant_id=ws.tenant_id, identity_id=ws.identity_id, name="tests")
    return {"Authorization": f"Bearer {raw}"}


async def _count(ws: Workspace) -> int:
    async with tenant_scope(ws.tenant_id):
        return await Contact.all().count()


async def test_contact_crud_through_the_api(workspace: Workspace) -> None:
    headers = await _token(workspace)
    async with client(headers=headers) as c:
        created = await c.post("/api/v1/contacts", json={
            "name": "张伟", "email": "Zhang.Wei@Example.COM", "phone": "+86 138 0013 8000",
            "company_name": "上海云图科技有限公司", "notes": "met at 展会"})
        assert created.status_code == 201, created.text
        contact = created.json()
        assert contact["name"] == "张伟"
        assert contact["email"] == "Zhang.Wei@example.com"  # domain normalised
        assert contact["phone"] == "+86 138 0013 8000"
        got = await c.get(f"/api/v1/contacts/{contact['id']}")
        assert got.json()["company_name"] == "上海云图科技有限公司"
        patched = await c.patch(f"/api/v1/contacts/{contact['id']}", json={"notes": "signed"})
        assert patched.status_code == 200
        assert patched.json()["notes"] == "signed" and patched.json()["name"] == "张伟"
        found = await c.get("/api/v1/contacts", params={"q": "云图"})
        assert [i["id"] for i in found.json()["items"]] == [contact["id"]]
        # the tenant prefix works too
        prefixed = await c.get(f"/t/{workspace.slug}/api/v1/contacts/{contact['id']}")
        assert prefixed.status_code == 200
        deleted = await c.delete(f"/api/v1/contacts/{contact['id']}")
        assert deleted.status_code == 204
        assert_error(await c.get(f"/api/v1/contacts/{contact['id']}"), 404, "not_found")
        assert_error(await c.delete(f"/api/v1/contacts/{contact['id']}"), 404, "not_found")
        me = await c.get("/api/v1/me")
        assert me.json() == {"workspace_slug": workspace.slug, "workspace_name": workspace.name,
                             "email": workspace.email, "role": "owner"}


async def test_keyset_pagination_walks_every_contact_once(workspace: Workspace) -> None:
    async with tenant_scope(workspace.tenant_id):
        await Contact.bulk_create([Contact(name=f"Person {i:03d}") for i in range(57)])
    headers = await _token(workspace)
    seen: list[int] = []
    cursor = None
    async with client(headers=headers) as c:
        while True:
            params = {"limit": "20", **({"cursor": cursor} if cursor else {})}
            page = (await c.get("/api/v1/contacts", params=params)).json()
            seen += [i["id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
    assert len(seen) == 57 and len(set(seen)) == 57 and seen == sorted(seen, reverse=True)


async def test_bad_input_gets_field_messages_and_writes_nothing(workspace: Workspace) -> None:
    headers = await _token(workspace)
    async with client(headers=headers) as c:
        # missing name
        err = assert_error(await c.post("/api/v1/contacts", json={"email": "a@example.com"}), 422, "invalid_input")
        assert err["fields"]["name"] == "This field is required."
        # empty name, malformed email, phone with letters, unknown field
        err = assert_error(await c.post("/api/v1/contacts", json={
            "name": "  ", "email": "not-an-email", "phone": "call me", "colour": "red"}), 422)
        assert set(err["fields"]) == {"name", "email", "phone", "colour"}
        assert "email" in err["fields"]["email"].lower()
        assert err["fields"]["colour"] == "Unknown field."
        # name too long
        err = assert_error(await c.post("/api/v1/contacts", json={"name": "x" * 201}), 422)
        assert "200" in err["fields"]["name"]
        # not JSON, and JSON that is not an object
        assert_error(await c.post("/api/v1/contacts", content=b"{nope", headers={"content-type": "application/json"}),
                     400, "invalid_json")
        assert_error(await c.post("/api/v1/contacts", json=["Zhang"]), 400, "invalid_json")
        # bad paging parameters and ids
        assert_error(await c.get("/api/v1/contacts", params={"limit": "1000"}), 422)
        assert_error(await c.get("/api/v1/contacts", params={"cursor": "abc"}), 422)
        assert_error(await c.get("/api/v1/contacts/abc"), 404)
        # PATCH cannot blank the name
        made = await c.post("/api/v1/contacts", json={"name": "Keep Me"})
        assert_error(await c.patch(f"/api/v1/contacts/{made.json()['id']}", json={"name": ""}), 422)
        assert_error(await c.get("/api/v1/nowhere"), 404, "not_found")
    assert await _count(workspace) == 1


async def test_tokens_are_checked(workspace: Workspace) -> None:
    async with client() as c:
        assert_error(await c.get("/api/v1/contacts"), 401, "not_authenticated")
        assert_error(await c.get("/api/v1/contacts", headers={"Authorization": "Bearer kith_wrong"}),
                     401, "invalid_token")
        assert_error(await c.get("/api/v1/contacts", headers={"Authorization": "Basic abc"}), 401)
        token, raw = await create_api_token(tenant_id=workspace.tenant_id, identity_id=workspace.identity_id, name="x")
        ok = await c.get("/api/v1/contacts", headers={"Authorization": f"Bearer {raw}"})
        assert ok.status_code == 200
        await revoke_api_token(tenant_id=workspace.tenant_id, identity_id=workspace.identity_id, token_id=token.id)
        assert_error(await c.get("/api/v1/contacts", headers={"Authorization": f"Bearer {raw}"}), 401, "invalid_token")


async def test_a_token_never_reaches_another_workspace(workspace: Workspace, other_workspace: Workspace) -> None:
    mine, theirs = await _token(workspace), await _token(other_workspace)
    async with client() as c:
        secret = (await c.post("/api/v1/contacts", json={"name": "Their secret"}, headers=theirs)).json()
        assert_error(await c.get(f"/api/v1/contacts/{secret['id']}", headers=mine), 404)
        assert_error(await c.patch(f"/api/v1/contacts/{secret['id']}", json={"name": "x"}, headers=mine), 404)
        assert_error(await c.delete(f"/api/v1/contacts/{secret['id']}", headers=mine), 404)
        assert_error(await c.get(f"/t/{other_workspace.slug}/api/v1/contacts", headers=mine), 404)
        listed = (await c.get("/api/v1/contacts", params={"q": "secret"}, headers=mine)).json()
        assert listed["items"] == []
        assert_error(await c.get("/t/no-such-workspace/api/v1/contacts", headers=mine), 404, "no_such_workspace")
    assert await _count(other_workspace) == 1


async def test_suspended_workspace_is_refused(workspace: Workspace) -> None:
    headers = await _token(workspace)
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.tenants SET status = 'suspended' WHERE id = $1", [workspace.tenant_id])
    async with client(headers=headers) as c:
        assert_error(await c.get("/api/v1/contacts"), 403, "workspace_suspended")


async def test_concurrent_api_requests_stay_in_their_tenant(db: object) -> None:
    spaces = await asyncio.gather(*(make_workspace("api-iso") for _ in range(20)))
    tokens = await asyncio.gather(*(_token(ws) for ws in spaces))
    async with client() as c:
        async def work(ws: Workspace, headers: dict[str, str], n: int) -> list[str]:
            await c.post("/api/v1/contacts", json={"name": f"{ws.slug}|{n}"}, headers=headers)
            page = (await c.get("/api/v1/contacts", params={"limit": "100"}, headers=headers)).json()
            return [i["name"].split("|")[0] for i in page["items"]]

        results = await asyncio.gather(
            *(work(ws, h, n) for n in range(10) for ws, h in zip(spaces, tokens, strict=True))
        )
    for names in results:
        assert len(set(names)) == 1
    for ws in spaces:
        assert await _count(ws) == 10


async def test_openapi_describes_every_route(db: object) -> None:
    async with client() as c:
        doc = (await c.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    for ep in ENDPOINTS:
        assert ("/api/v1" + ep.path, ep.method.lower()) in documented
    app_routes = {("/api/v1" + ep.path, ep.method.lower()) for ep in ENDPOINTS} | {
        ("/healthz", "get"), ("/readyz", "get")}
    assert documented == app_routes
    contact_schema = doc["components"]["schemas"]["ContactOut"]
    # fields a role may not see are absent, so only these are always there
    assert set(contact_schema["required"]) == {"id", "created_at", "updated_at"}
    assert set(contact_schema["properties"]) >= {"name", "email", "phone", "company_name", "notes", "owner_id"}
    for ep in ENDPOINTS:
        op = doc["paths"]["/api/v1" + ep.path][ep.method.lower()]
        # a declared permission can be refused; an endpoint open to every member may still answer 403
        # for a reason of its own (another member's saved view), so only one direction is a rule
        if ep.permission is not None:
            assert "403" in op["responses"], ep.operation_id


async def test_health_and_readiness(db: object) -> None:
    async with client() as c:
        assert (await c.get("/healthz")).json()["status"] == "ok"
        ready = await c.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}
