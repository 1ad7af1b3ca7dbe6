"""Pages for people, through the real app: signup, login, contacts, CSRF, bad input."""

from __future__ import annotations

import re

from starlette.routing import Mount, Route

from kith.platform.db import platform_tx, tenant_scope
from kith.tenants.contacts.models import Contact

from .conftest import Workspace, unique_slug
from .web_helpers import app, client, form_post, login


async def _tenant_count() -> int:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict("SELECT count(*) AS n FROM public.tenants")
    return int(rows[0]["n"])


async def test_signup_lands_the_owner_in_the_workspace(db: object) -> None:
    slug = unique_slug("signup")
    async with client() as c:
        resp = await form_post(c, "/signup", {"company_name": "北京华信咨询", "slug": slug,
                                              "email": f"boss@{slug}.example.com", "password": "a long passphrase 42"})
        assert resp.status_code == 303 and resp.headers["location"] == f"/t/{slug}/contacts"
        cookie = resp.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
        page = await c.get(f"/t/{slug}/contacts")
        assert page.status_code == 200 and "北京华信咨询" in page.text and "No records yet" in page.text


async def test_signup_bad_input_names_the_problem_and_writes_nothing(workspace: Workspace) -> None:
    before = await _tenant_count()
    cases = [
        ({"slug": workspace.slug}, "slug", "already taken"),
        ({"slug": "admin"}, "slug", "reserved"),
        ({"slug": "Bad_Slug"}, "slug", "lowercase letters, digits and hyphens"),
        ({"slug": "ab"}, "slug", "3 to 40"),
        ({"password": "short"}, "password", "at least 10"),
        ({"password": "password123"}, "password", "too easy"),
        ({"email": "nobody"}, "email", "email"),
        ({"company_name": "   "}, "company_name", "required"),
        ({"email": workspace.email, "password": "a different passphrase"}, "email", "already exists"),
    ]
    async with client() as c:
        for change, field, words in cases:
            data = {"company_name": "Acme", "slug": unique_slug("bad"), "email": f"{unique_slug('p')}@example.com",
                    "password": "a long passphrase 42", **change}
            resp = await form_post(c, "/signup", data)
            assert resp.status_code == 422, (change, resp.status_code)
            message = re.search(rf'data-field="{field}">([^<]+)<', resp.text)
            assert message, (change, resp.text[-2000:])
            assert words.lower() in message.group(1).lower(), (change, message.group(1))
    assert await _tenant_count() == before


async def test_login_logout_and_membership(workspace: Workspace, other_workspace: Workspace) -> None:
    async with client() as c:
        # not signed in: sent to login, then back
        resp = await c.get(f"/t/{workspace.slug}/contacts?q=x")
        assert resp.status_code == 303 and resp.headers["location"].startswith("/login?next=")
        bad = await login(c, workspace.email, "wrong password here")
        assert bad.status_code == 401 and "not correct" in bad.text
        ok = await login(c, workspace.email, workspace.password)
        assert ok.status_code == 303 and ok.headers["location"] == f"/t/{workspace.slug}/contacts"
        # a member of one workspace gets a 404 for another, and for one that does not exist
        assert (await c.get(f"/t/{other_workspace.slug}/contacts")).status_code == 404
        assert (await c.get("/t/no-such-place/contacts")).status_code == 404
        # open redirects are refused
        page = await c.get("/login?next=https://evil.example.com/")
        assert 'name="next" value=""' in page.text
        out = await form_post(c, f"/t/{workspace.slug}/contacts", {}, "/logout")
        assert out.status_code == 303
        assert (await c.get(f"/t/{workspace.slug}/contacts")).status_code == 303


async def test_contact_crud_in_pages(workspace: Workspace) -> None:
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        base = f"/t/{workspace.slug}/contacts"
        bad = await form_post(c, f"{base}/new", {"name": "", "email": "nope"})
        assert bad.status_code == 422 and 'data-field="name"' in bad.text and 'data-field="email"' in bad.text
        made = await form_post(c, f"{base}/new", {"name": "王芳", "email": "wang.fang@example.cn",
                                                  "phone": "+86 139 1234 5678", "company_name": "华信"})
        assert made.status_code == 303
        async with tenant_scope(workspace.tenant_id):
            contact = await Contact.get(name="王芳")
        listing = await c.get(base, params={"q": "王"})
        assert "王芳" in listing.text
        edited = await form_post(c, f"{base}/{contact.id}/edit", {"name": "王芳", "email": "fang@example.cn",
                                                                  "phone": "", "company_name": "华信", "notes": "VIP"})
        assert edited.status_code == 303
        async with tenant_scope(workspace.tenant_id):
            assert (await Contact.get(id=contact.id)).notes == "VIP"
        gone = await form_post(c, f"{base}/{contact.id}/delete", {})
        assert gone.status_code == 303
        async with tenant_scope(workspace.tenant_id):
            assert await Contact.filter(id=contact.id).count() == 0
        assert (await c.get(f"{base}/{contact.id}/edit")).status_code == 404
        assert (await c.get(f"{base}/999999/edit")).status_code == 404


# POST routes that are not forms people submit, with what authenticates them instead
NOT_FORMS = {
    "/webhooks/stripe": "Stripe's signature (stripe.Webhook.construct_event)",
    "/webhooks/ses": "the SNS message signature (kith.tenants.campaigns.sns.verify_message)",
    "/e/u/{token}": "the signed unsubscribe token (RFC 8058 one-click POSTs carry no form token)",
}


async def test_every_form_route_refuses_a_post_without_csrf(workspace: Workspace) -> None:
    post_routes = [r.path for r in app().routes
                   if isinstance(r, Route) and "POST" in (r.methods or set()) and r.path not in NOT_FORMS]
    assert {"/signup", "/login", "/logout", "/t/{slug}/contacts/new"} <= set(post_routes)
    assert not any(isinstance(r, Mount) and r.path.startswith("/t/{slug}/") and "api" not in r.path
                   for r in app().routes)
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        async with tenant_scope(workspace.tenant_id):
            contact = await Contact.create(name="Keep")
        values = {"slug": workspace.slug, "contact_id": str(contact.id), "tenant_id": str(workspace.tenant_id)}
        for path in post_routes:
            url = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "1"), path)
            resp = await c.post(url, data={"name": "x", "email": "a@b.cn", "password": "p" * 12})
            assert resp.status_code == 403, (url, resp.status_code)
            assert "security token" in resp.text
            resp = await c.post(url, data={"name": "x", "csrf_token": "forged.value"})
            assert resp.status_code == 403, url
    async with tenant_scope(workspace.tenant_id):
        assert [c.name for c in await Contact.all()] == ["Keep"]


async def test_api_tokens_page_creates_a_working_token(workspace: Workspace) -> None:
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        made = await form_post(c, f"/t/{workspace.slug}/settings/tokens", {"name": "zapier"})
        assert made.status_code == 201
        raw = re.search(r'id="new-token">([^<]+)<', made.text).group(1)  # type: ignore[union-attr]
        empty = await form_post(c, f"/t/{workspace.slug}/settings/tokens", {"name": " "})
        assert empty.status_code == 422 and "required" in empty.text
    async with client(headers={"Authorization": f"Bearer {raw}"}) as api:
        assert (await api.get("/api/v1/me")).json()["workspace_slug"] == workspace.slug
