"""Email templates: the sandboxed renderer, signed campaign links, and the templates service and API
(CRUD under permissions, preview through the contacts' record scope and field rules, test send
into the dev outbox, tenant isolation, the pages without JavaScript)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from kith.platform.db import platform_tx, tenant_scope
from kith.tenants.campaigns import links
from kith.tenants.campaigns.templates import (
    MAX_OUTPUT,
    TemplateError,
    check_template,
    html_to_text,
    merge_values,
    render,
    split_name,
)

from .conftest import Services, Workspace
from .factories import add_member, owner_token
from .web_helpers import assert_error, client, csrf_from, form_post, login

UNSUB = "https://kith.example/e/u/TOKEN"
PIXEL = "https://kith.example/e/o/PIXEL.gif"


def _render(subject: str, html: str, text: str, merge: dict[str, Any], **kwargs: Any) -> tuple[str, str, str]:
    options: dict[str, Any] = {"unsubscribe_url": UNSUB, "open_pixel_url": None, "click_url": None, **kwargs}
    return render(subject, html, text, merge, **options)


# ---- rendering ------------------------------------------------------------------------------


def test_chinese_merge_values_and_defaults() -> None:
    merge = merge_values({"name": "张伟", "email": "zhang@例子.cn", "company_name": "上海云图科技", "title": "",
                          "custom": {"city": "杭州", "tier": ["金牌", "VIP"], "vip": True}},
                         ["city", "tier", "vip", "missing"], workspace_name="云图")
    assert merge == {"name": "张伟", "first_name": "张伟", "email": "zhang@例子.cn", "company_name": "上海云图科技",
                     "workspace_name": "云图", "custom_city": "杭州", "custom_tier": "金牌, VIP", "custom_vip": "yes"}
    subject, html, text = _render(
        "{{ first_name }}，您好：{{ workspace_name }}新品\n上市",
        "<p>{{ name }}（{{ title | default('客户') }}）来自{{ custom_city }}，{{ custom_missing | default('无') }}</p>",
        "{{ name }}，{{ last_name | default('朋友') }}，{{ company_name }}。{{ nothing }}结束", merge, locale="zh-CN")
    # the subject is one line; an empty title and a missing field take their defaults; unknown names render ""
    assert subject == "张伟，您好：云图新品 上市"
    assert "<p>张伟（客户）来自杭州，无</p>" in html
    assert text.startswith("张伟，朋友，上海云图科技。结束")
    # the unsubscribe link in the workspace's language
    assert "退订" in html and text.rstrip().endswith(f"退订: {UNSUB}")
    assert split_name("Ada King Lovelace") == ("Ada", "King Lovelace") and split_name("欧阳娜娜") == ("欧阳娜娜", "")


def test_html_is_autoescaped_and_text_is_not() -> None:
    merge = {"name": "<script>alert('x')</script>", "company_name": "A & B"}
    subject, html, text = _render("Hi {{ name }} & co", "<p>{{ name }} of {{ company_name }}</p>",
                                  "{{ name }} of {{ company_name }}", merge)
    assert "<script>" not in html and "&lt;script&gt;" in html and "A &amp; B" in html
    assert text.startswith("<script>alert('x')</script> of A & B")
    assert subject == "Hi <script>alert('x')</script> & co"
    # a replace() into markup escapes the merge value too
    _, html, _ = _render("s", "{{ 'x' | e | replace('x', name) }}", "", merge)
    assert "<script>" not in html


@pytest.mark.parametrize("source", [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ name['__class__'] }}",
    "{{ name.upper() }}",
    "{{ lipsum(1000) }}",
    "{{ name | attr('__class__') }}",
    "{% for i in range(10) %}{{ i }}{% endfor %}",
    "{% set x = name %}{{ x }}",
    "{% autoescape false %}{{ name }}{% endautoescape %}",
    "{% include 'base.html' %}",
    "{{ 'a' * 100000000 }}",
    "{{ 10 ** 100000 }}",
    "{{ '%99999999d' % 1 }}",
    "{{ name | replace('', name * 1000) | replace('', name * 1000) }}",
])
def test_the_sandbox_refuses_what_is_not_a_merge_field(source: str) -> None:
    with pytest.raises(TemplateError) as caught:
        _render(source, "", "", {"name": "<b>Ada</b>" * 10})
    assert caught.value.message.startswith("Subject, line 1: ")
    # the check says so too (except for sizes, which only a render can know)
    if "*" not in source and "%" not in source and "replace" not in source:
        assert check_template(source, "", "")


def test_runtime_errors_name_the_part_and_line() -> None:
    with pytest.raises(TemplateError) as caught:
        _render("ok", "<p>a</p>\n<p>b</p>\n{{ name | int // 0 }}", "", {"name": "12"})
    assert caught.value.message == "HTML body, line 3: the template could not be filled in: division by zero"
    with pytest.raises(TemplateError) as caught:
        _render("ok", "", "line\n{% if %}", {})
    assert caught.value.message.startswith("Text body, line 2: ")
    assert len("x" * MAX_OUTPUT) == MAX_OUTPUT  # the cap is a plain number the messages show


def test_unsubscribe_link_is_added_exactly_once() -> None:
    _, html, text = _render("s", "<html><body><p>Hello</p></body></html>", "Hello", {})
    assert html.count(UNSUB) == 1 and text.count(UNSUB) == 1
    assert html.index(UNSUB) < html.index("</body>")
    # a template that places the link itself gets no second one, in either body
    _, html, text = _render("s", '<p><a href="{{ unsubscribe_url }}">Leave</a></p>',
                            "Leave: {{ unsubscribe_url }}", {}, click_url=lambda u: "https://t/" + u)
    assert html.count(UNSUB) == 1 and text.count(UNSUB) == 1
    assert "https://t/" not in html  # the unsubscribe link is never turned into a tracked link
    # the HTML places it, the text body is empty: the text made from the HTML carries it once
    _, html, text = _render("s", '<p>Hi</p><a href="{{ unsubscribe_url }}">Leave</a>', "", {})
    assert text.count(UNSUB) == 1 and "Hi" in text
    # markup inside an expression cannot be read as a text template: the filled-in HTML is read instead
    _, _, text = _render("s", "<p>{{ '<a href=\"' ~ name }}</p>", "", {"name": "x&y"})
    assert text.startswith('<a href="x&y\n') and text.count(UNSUB) == 1
    # a text-only template: no HTML at all, the line in the text
    _, html, text = _render("s", "", "只有文字", {}, locale="zh-CN")
    assert html == "" and text == f"只有文字\n\n退订: {UNSUB}\n"


def test_links_are_rewritten_through_signed_click_urls(services: Services) -> None:
    base = "https://kith.example"
    tenant_id, recipient_id = 7, 123456

    def click(url: str) -> str:
        return links.click_url(base, tenant_id, recipient_id, url)

    html_in = ('<html><body><a href="https://shop.example/新品?a=1&amp;b=2">Shop</a> '
               "<a class='x' href='http://plain.example/'>Plain</a> <a href=\"mailto:hi@example.com\">Mail</a> "
               '<a href="#top">Top</a></body></html>')
    _, html, text = _render("s", html_in, "", {}, click_url=click, open_pixel_url=PIXEL)
    tracked = re.findall(r'href="(https://kith\.example/e/c/[^"]+)"', html) + re.findall(
        r"href='(https://kith\.example/e/c/[^']+)'", html)
    assert len(tracked) == 2
    targets = [links.parse_click_token(u.rsplit("/", 1)[1].replace("&amp;", "&")) for u in tracked]
    assert [t.url for t in targets] == ["https://shop.example/新品?a=1&b=2", "http://plain.example/"]
    assert all((t.tenant_id, t.recipient_id) == (tenant_id, recipient_id) for t in targets)
    assert 'href="mailto:hi@example.com"' in html and 'href="#top"' in html
    # a link too long for a signed URL stays as written instead of failing the email
    long_link = "https://shop.example/?q=" + "x" * links.MAX_CLICK_URL_LENGTH
    _, long_html, _ = _render("s", f'<a href="{long_link}">long</a>', "", {}, click_url=click)
    assert f'href="{long_link}"' in long_html
    # the pixel comes last in the body, once
    assert html.count(PIXEL) == 1 and html.index(PIXEL) < html.index("</body>") and 'width="1"' in html
    # the text made from the HTML keeps the real links (no tracking in plain text)
    assert "Shop (https://shop.example/新品?a=1&b=2)" in text
    assert "Top" in html_to_text('<p>x</p><a href="#top">Top</a>')


def _tampered(token: str) -> str:
    body, tag = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload[1] += 1  # another recipient
    forged = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{forged}.{tag}"


def test_signed_links_refuse_tampered_and_other_purposes(services: Services) -> None:
    unsub = links.unsubscribe_token(3, 42)
    assert links.parse_unsubscribe_token(unsub) == links.LinkTarget(3, 42)
    opened = links.open_pixel_url("https://k.example/", 3, 42)
    assert opened.startswith("https://k.example/e/o/") and opened.endswith(".gif")
    assert links.parse_open_token(opened.rsplit("/", 1)[1]) == links.LinkTarget(3, 42)
    click = links.click_token(3, 42, "https://example.com/a")
    assert links.parse_click_token(click).url == "https://example.com/a"
    # short enough for a URL: ids as numbers, no padding
    assert len(links.unsubscribe_url("https://k.example", 999999, 99999999)) < 100
    bad = [
        _tampered(unsub),                       # another recipient, old signature
        unsub[:-2],                             # cut short
        unsub + "A",                            # lengthened
        unsub.replace(".", ""),                 # no signature
        "",                                     # nothing
        "not-a-token",
        "a.b.c",
        links.open_token(3, 42),                # an open token is not an unsubscribe token
        links.click_token(3, 42, "https://example.com/"),
    ]
    for token in bad:
        with pytest.raises(links.BadLink):
            links.parse_unsubscribe_token(token)
    with pytest.raises(links.BadLink):
        links.parse_click_token(unsub)  # nor an unsubscribe token a click token
    # a click token's URL cannot be swapped for another
    body, tag = click.split(".")
    other = base64.urlsafe_b64encode(b'[3,42,"https://evil.example/"]').rstrip(b"=").decode()
    with pytest.raises(links.BadLink):
        links.parse_click_token(f"{other}.{tag}")
    # only http(s) links are tracked, and ids are positive integers
    for args in ((3, 42, "javascript:alert(1)"), (0, 42, "https://x"), (3, -1, "https://x")):
        with pytest.raises(ValueError):
            links.click_token(*args)  # type: ignore[arg-type]


def test_check_template_messages() -> None:
    problems = check_template(
        "Hi {{ frist_name }}",
        "<p>ok</p>\n<p>{{ name | shout }}</p>\n{{ custom_vip }}{{ custom_gone }}",
        "{% if first_name %}\nno end",
        custom_keys=["vip"])
    assert problems[0] == ("Subject, line 1: {{ frist_name }} is not a field you can use; fields: name, first_name, "
                           "last_name, email, company_name, title, workspace_name, unsubscribe_url, custom_vip")
    assert problems[1].startswith("HTML body, line 2: the filter 'shout' is not available; filters: default")
    assert problems[2].startswith("HTML body, line 3: {{ custom_gone }} is not a field you can use")
    # jinja names the line of the block left open
    assert problems[3].startswith("Text body, line 1: Unexpected end of template") and "'endif'" in problems[3]
    assert len(problems) == 4
    assert check_template("{{ first_name | default('there') | upper }}", "{% if custom_vip %}VIP{% endif %}", "",
                          custom_keys=["vip"]) == []
    # without the workspace's field list any well-formed custom_<key> passes
    assert check_template("{{ custom_anything }}", "", "") == []


# ---- the service through the API ------------------------------------------------------------

TEMPLATE = {"name": "春季通讯", "subject": "{{ first_name | default('朋友') }}，春季新品",
            "html_body": "<html><body><p>{{ name }} · {{ email | default('（无邮箱）') }}</p>"
                         "<a href=\"https://shop.example/\">逛逛</a></body></html>",
            "text_body": ""}


async def _contact(ws: Workspace, owner_id: int | None, name: str, email: str) -> int:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "INSERT INTO contacts (name, email, owner_id, created_by_id) VALUES ($1, $2, $3, $3) RETURNING id",
            [name, email, owner_id])
    return int(rows[0]["id"])


async def _audit(ws: Workspace, action: str) -> list[dict[str, Any]]:
    async with tenant_scope(ws.tenant_id) as tx:
        return await tx.execute_query_dict("SELECT * FROM audit_log WHERE action = $1 ORDER BY seq", [action])


async def test_crud_with_permissions_and_isolation(workspace: Workspace, other_workspace: Workspace) -> None:
    owner = await owner_token(workspace)
    sales = await add_member(workspace, "sales")
    async with client(headers=owner) as c:
        made = await c.post("/api/v1/email-templates", json=TEMPLATE)
        assert made.status_code == 201, made.text
        tid = made.json()["id"]
        assert made.json()["name"] == "春季通讯"
        # the same name in another case is taken
        assert_error(await c.post("/api/v1/email-templates", json={**TEMPLATE, "name": " 春季通讯 "}), 409, "conflict")
        # bad input: each problem named, nothing saved
        bad = await c.post("/api/v1/email-templates", json={**TEMPLATE, "name": "Bad",
                                                             "subject": "Hi {{ frist_name }}",
                                                             "html_body": "<p>\n{{ ''.__class__ }}</p>"})
        error = assert_error(bad, 422, "invalid_template")
        assert "{{ frist_name }} is not a field you can use" in error["fields"]["subject"]
        assert error["fields"]["html_body"].startswith("HTML body, line 2: '.__class__' cannot be used")
        assert_error(await c.post("/api/v1/email-templates", json={**TEMPLATE, "name": "Empty", "html_body": "",
                                                                   "text_body": "  "}), 422, "invalid_template")
        assert_error(await c.post("/api/v1/email-templates", json={**TEMPLATE, "name": ""}), 422)
        assert_error(await c.post("/api/v1/email-templates", json={**TEMPLATE, "name": "X", "subject": ""}), 422)
        assert_error(await c.post("/api/v1/email-templates", json={**TEMPLATE, "name": "X", "extra": 1}), 422)
        listing = await c.get("/api/v1/email-templates", params={"q": "春季"})
        assert [t["name"] for t in listing.json()["items"]] == ["春季通讯"]
        assert "html_body" not in listing.json()["items"][0]
        # a change is checked again as a whole
        assert_error(await c.patch(f"/api/v1/email-templates/{tid}", json={"text_body": "{% if x %}"}), 422)
        changed = await c.patch(f"/api/v1/email-templates/{tid}", json={"text_body": "{{ name }}，你好"})
        assert changed.status_code == 200 and changed.json()["text_body"] == "{{ name }}，你好"
        assert_error(await c.get("/api/v1/email-templates/99999999"), 404, "not_found")
        assert_error(await c.get("/api/v1/email-templates/abc"), 404)

    # sales may view and preview, not change: 403 naming the permission
    async with client(headers=sales.headers) as c:
        assert (await c.get(f"/api/v1/email-templates/{tid}")).status_code == 200
        refused = assert_error(await c.patch(f"/api/v1/email-templates/{tid}", json={"name": "x"}), 403,
                               "permission_denied")
        assert "email_templates: edit" in refused["message"] and refused["permission"] == "email_templates: edit"
        assert_error(await c.post("/api/v1/email-templates", json={**TEMPLATE, "name": "S"}), 403)
        assert_error(await c.delete(f"/api/v1/email-templates/{tid}"), 403)
        assert_error(await c.post(f"/api/v1/email-templates/{tid}/test-send"), 403)

    # another workspace never sees it
    async with client(headers=await owner_token(other_workspace)) as c:
        assert_error(await c.get(f"/api/v1/email-templates/{tid}"), 404)
        assert (await c.get("/api/v1/email-templates")).json()["items"] == []
        assert_error(await c.post(f"/api/v1/email-templates/{tid}/preview", json={}), 404)

    async with client(headers=owner) as c:
        assert (await c.delete(f"/api/v1/email-templates/{tid}")).status_code == 204
        assert_error(await c.get(f"/api/v1/email-templates/{tid}"), 404)
    actions = [r["action"] for r in await _audit(workspace, "email_template.create")]
    actions += [r["action"] for r in await _audit(workspace, "email_template.update")]
    actions += [r["action"] for r in await _audit(workspace, "email_template.delete")]
    assert actions == ["email_template.create", "email_template.update", "email_template.delete"]


async def test_preview_respects_record_scope_and_hidden_fields(workspace: Workspace) -> None:
    owner = await owner_token(workspace)
    sales = await add_member(workspace, "sales")
    mine = await _contact(workspace, sales.identity_id, "李娜 Li", "li.na@example.com")
    theirs = await _contact(workspace, workspace.identity_id, "王芳", "wang@example.com")
    async with client(headers=owner) as c:
        tid = (await c.post("/api/v1/email-templates", json=TEMPLATE)).json()["id"]
        # a custom role that sees contacts but not their email addresses
        role = await c.post("/api/v1/roles", json={
            "name": "Marketing without emails", "grants": {"contacts": ["view"], "email_templates": ["view"]},
            "record_scope": {"contacts": "all"}, "hidden_fields": {"contacts": ["email"]}})
        assert role.status_code == 201, role.text
        full = await c.post(f"/api/v1/email-templates/{tid}/preview", json={"contact_id": mine})
        assert full.status_code == 200, full.text
        assert full.json()["subject"] == "李娜，春季新品" and "li.na@example.com" in full.json()["html"]
        assert full.json()["contact_name"] == "李娜 Li"
        # the preview showed an address: the read is audited
        reads = await _audit(workspace, "contacts.read_sensitive")
        assert reads and reads[-1]["object_id"] == str(mine)
        nobody = await c.post(f"/api/v1/email-templates/{tid}/preview", json={})
        assert nobody.json()["subject"] == "朋友，春季新品" and "（无邮箱）" in nobody.json()["html"]
        # links in a preview are not tracked, and its unsubscribe link leads nowhere
        assert 'href="https://shop.example/"' in full.json()["html"] and 'href="#unsubscribe"' in full.json()["html"]
    hidden = await add_member(workspace, role.json()["key"])
    async with client(headers=hidden.headers) as c:
        shown = await c.post(f"/api/v1/email-templates/{tid}/preview", json={"contact_id": mine})
        assert shown.status_code == 200, shown.text
        # the hidden field renders as the template's default, never its value
        assert "li.na@example.com" not in shown.text and "（无邮箱）" in shown.json()["html"]
    async with client(headers=sales.headers) as c:
        # sales sees only their own contacts: another's is "no such contact", with nothing of it shown
        refused = assert_error(await c.post(f"/api/v1/email-templates/{tid}/preview", json={"contact_id": theirs}),
                               404, "not_found")
        assert "王芳" not in json.dumps(refused)
        assert_error(await c.post(f"/api/v1/email-templates/{tid}/preview", json={"contact_id": 99999999}), 404)
        assert_error(await c.post(f"/api/v1/email-templates/{tid}/preview", json={"contact_id": "x"}), 422)
        ok = await c.post(f"/api/v1/email-templates/{tid}/preview", json={"contact_id": mine})
        assert ok.status_code == 200 and "李娜 Li" in ok.json()["html"]


async def _outbox(to: str) -> list[dict[str, Any]]:
    async with platform_tx() as tx:
        return await tx.execute_query_dict(
            "SELECT * FROM public.outbox_emails WHERE to_address = $1 AND kind = 'campaign' ORDER BY id", [to])


async def test_test_send_arrives_in_the_dev_outbox(workspace: Workspace) -> None:
    owner = await owner_token(workspace)
    async with client(headers=owner) as c:
        tid = (await c.post("/api/v1/email-templates", json={**TEMPLATE, "text_body": "{{ name }}：{{ email }}"})
               ).json()["id"]
        sent = await c.post(f"/api/v1/email-templates/{tid}/test-send")
        assert sent.status_code == 200, sent.text
        assert sent.json()["to"] == workspace.email and sent.json()["provider"] == "outbox"
        assert_error(await c.post("/api/v1/email-templates/99999999/test-send"), 404)
    rows = await _outbox(workspace.email)
    assert len(rows) == 1
    row = rows[0]
    # filled in with the owner's own name and address; marked as a test
    name = workspace.email.split("@")[0]
    assert row["subject"].startswith("[Test] ") and row["status"] == "outbox"
    assert row["body_text"].startswith(f"{name}：{workspace.email}")
    # the unsubscribe line leads back to the template
    assert f"/t/{workspace.slug}/campaigns/templates/{tid}" in row["body_text"]
    assert len(await _audit(workspace, "email_template.test_send")) == 1


# ---- pages without JavaScript ---------------------------------------------------------------


async def test_pages_save_preview_and_test_send_without_javascript(workspace: Workspace) -> None:
    contact = await _contact(workspace, workspace.identity_id, "赵敏", "zhao@example.com")
    base = f"/t/{workspace.slug}/campaigns/templates"
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        form = {"name": "Welcome", "subject": "Hi {{ first_name }}", "html_body": "<p>{{ name }}</p>",
                "text_body": "", "contact_q": "", "contact_id": ""}
        # a problem comes back at its field, what was typed kept
        bad = await form_post(c, f"{base}/new", {**form, "subject": "Hi {{ frist_name }}", "action": "save"})
        assert bad.status_code == 422 and 'data-field="subject"' in bad.text and "frist_name" in bad.text
        # preview before saving, as a chosen contact
        page = await form_post(c, f"{base}/new", {**form, "contact_id": str(contact), "action": "preview"})
        assert page.status_code == 200 and "Hi 赵敏" in page.text and "&lt;p&gt;赵敏&lt;/p&gt;" in page.text
        made = await form_post(c, f"{base}/new", {**form, "action": "save"})
        assert made.status_code == 303, made.text
        edit_url = made.headers["location"].split("?")[0]
        edit = await c.get(edit_url)
        assert edit.status_code == 200 and "Welcome" in edit.text and "data-preview-panel" in edit.text
        sent = await c.post(edit_url, data={**form, "action": "test", "csrf_token": csrf_from(edit.text)})
        assert sent.status_code == 200 and 'data-field="sent"' in sent.text and workspace.email in sent.text
        listing = await c.get(base)
        assert "Welcome" in listing.text
        # the live preview route answers JSON for the page's script
        live = await c.post(f"{base}/preview", data={"subject": "{{ name }}", "html_body": "", "text_body": "x",
                                                     "contact_id": str(contact), "csrf_token": csrf_from(edit.text)})
        assert live.status_code == 200 and live.json()["subject"] == "赵敏"
        broken = await c.post(f"{base}/preview", data={"subject": "{{ 1 // 0 }}", "html_body": "", "text_body": "x",
                                                       "contact_id": "", "csrf_token": csrf_from(edit.text)})
        assert broken.status_code == 422 and "division by zero" in broken.json()["error"]
        confirm = await c.get(f"{edit_url}/delete")
        gone = await c.post(f"{edit_url}/delete", data={"csrf_token": csrf_from(confirm.text)})
        assert gone.status_code == 303 and "Welcome" not in (await c.get(base)).text
    # sales see templates read-only: no Save, no test send, and a forged save is refused
    sales = await add_member(workspace, "sales")
    async with client(headers=await owner_token(workspace)) as c:
        tid = (await c.post("/api/v1/email-templates", json=TEMPLATE)).json()["id"]
    async with client() as c:
        await login(c, sales.email, sales.password)
        page = await c.get(f"{base}/{tid}")
        assert page.status_code == 200 and 'value="save"' not in page.text and " readonly" in page.text
        forged = await c.post(f"{base}/{tid}", data={**form, "action": "save", "csrf_token": csrf_from(page.text)})
        assert forged.status_code == 403 and "email_templates: edit" in forged.text
        assert (await c.get(f"{base}/new")).status_code == 403


async def test_pages_in_chinese(workspace: Workspace) -> None:
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.tenants SET locale = 'zh-CN' WHERE id = $1", [workspace.tenant_id])
    base = f"/t/{workspace.slug}/campaigns/templates"
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        listing = await c.get(base)
        assert "邮件模板" in listing.text and "新建模板" in listing.text
        page = await c.get(f"{base}/new")
        assert "合并字段" in page.text and "给我发送测试邮件" in page.text
        bad = await form_post(c, f"{base}/new", {"name": "坏", "subject": "{{ frist_name }}", "html_body": "x",
                                                  "text_body": "", "contact_q": "", "contact_id": "",
                                                  "action": "save"})
        assert bad.status_code == 422 and "主题，第 1 行：{{ frist_name }} 不是可用的字段" in bad.text
