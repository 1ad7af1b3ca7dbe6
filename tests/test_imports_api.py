"""The imports API through HTTP (issue 7, "Import"): upload, the suggested mapping, configure, check
(a dry run), import, undo and the rejected rows, with the real pipeline run in this process
(`runner.execute`, what the arq job calls: a worker process would add nothing here; the browser
test runs one). Also: a role without the import permission, another workspace's member, bad
input (an empty file, no file, a binary file, an unknown or wrong encoding, an unknown kind, a
mapping to an unknown field or a column that does not exist, a match key whose field is not
mapped, a duplicate choice that does not exist, starting an import twice, a file over the size
limit) and the OpenAPI document. Then
the pages through HTTP: errors shown on the upload and mapping forms, reading the file again with
another delimiter, the progress JSON, cancel, and the refusals of a role without import and of a
stranger."""

from __future__ import annotations

import csv
import io
import os
from typing import Any

import httpx

from kith.platform.config import reset_settings, restored_environment
from kith.platform.db import tenant_scope
from kith.platform.tenancy.models import Tenant
from kith.tenants.imports.runner import execute

from .conftest import Workspace
from .factories import add_member, owner_token
from .web_helpers import assert_error, client, csrf_from, login

API = "/api/v1/imports"
ROWS = (
    "Name,Email,Phone,Company\n"
    "张伟,zhang.wei@example.cn,13800138000,星辰科技\n"
    "Emily Carter,emily@example.com,,Acme\n"
    "Bad Email,not-an-email,,\n"
    "Existing Person,existing@example.com,,New Trading\n"
)


async def _upload(c: httpx.AsyncClient, content: bytes, name: str = "contacts.csv", object_type: str = "contacts",
                  **data: str) -> httpx.Response:
    return await c.post(API, files={"file": (name, content, "text/csv")}, data={"object_type": object_type, **data})


async def _run(ws: Workspace, import_id: int, kind: str) -> None:
    """What the arq job does for a queued import: run it (in this process)."""
    tenant = await Tenant.get(id=ws.tenant_id)
    await execute(ws.tenant_id, tenant.default_phone_region, import_id, kind)


async def _contacts(ws: Workspace) -> list[dict[str, Any]]:
    async with tenant_scope(ws.tenant_id) as tx:
        return await tx.execute_query_dict("SELECT id, name, email, phone, company_name FROM contacts ORDER BY id")


async def test_upload_map_check_import_and_undo(workspace: Workspace) -> None:
    headers = await owner_token(workspace)
    async with client(headers=headers) as c:
        existing = await c.post("/api/v1/contacts", json={"name": "Existing Person", "email": "existing@example.com",
                                                          "title": "Buyer"})
        assert existing.status_code == 201, existing.text

        made = await _upload(c, ROWS.encode())
        assert made.status_code == 201, made.text
        item = made.json()
        assert item["status"] == "uploaded" and item["file_format"] == "csv" and item["encoding"] == "utf-8"
        assert item["headers"] == ["Name", "Email", "Phone", "Company"]
        assert item["sample"][0] == ["张伟", "zhang.wei@example.cn", "13800138000", "星辰科技"]
        # suggested from the headers: each column to its field, duplicates found by email
        assert item["mapping"] == {"0": "name", "1": "email", "2": "phone", "3": "company_name"}
        assert item["mapping_source"] == "headers" and item["match_key"] == "email"
        assert item["rows_estimate"] == 4 and item["outcome"]
        import_id = item["id"]

        targets = await c.get(f"{API}/targets/contacts")
        assert targets.status_code == 200, targets.text
        names = [f["name"] for f in targets.json()["fields"]]
        assert {"name", "first_name", "last_name", "email", "phone", "company_name"} <= set(names)
        assert [k["name"] for k in targets.json()["match_keys"]] == ["email", "phone", "name"]

        mapped = await c.put(f"{API}/{import_id}/mapping", json={
            "mapping": {"0": "name", "1": "email", "2": "phone", "3": "company_name"},
            "match_key": "email", "on_duplicate": "update"})
        assert mapped.status_code == 200, mapped.text
        assert mapped.json()["on_duplicate"] == "update"

        # the dry run: counts and rejected rows, nothing written
        checking = await c.post(f"{API}/{import_id}/check")
        assert checking.status_code == 202 and checking.json()["status"] == "queued", checking.text
        await _run(workspace, import_id, "check")
        checked = (await c.get(f"{API}/{import_id}")).json()
        assert checked["status"] == "checked", checked
        counts = checked["counts"]
        assert (counts["rows"], counts["valid"], counts["rejected"], counts["created"], counts["updated"]) == \
            (4, 3, 1, 2, 1), counts
        assert checked["rejected_sample"][0]["line"] == 4
        assert checked["rejected_sample"][0]["reason"].startswith("Email")
        assert checked["rejected_sample"][0]["cells"][:2] == ["Bad Email", "not-an-email"]
        assert checked["has_rejected_file"] and "nothing written" in checked["outcome"]
        assert len(await _contacts(workspace)) == 1

        rejected = await c.get(f"{API}/{import_id}/rejected.csv")
        assert rejected.status_code == 200, rejected.text
        assert rejected.headers["content-type"].startswith("text/csv")
        assert "contacts-rejected.csv" in rejected.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(rejected.content.decode("utf-8-sig"))))
        assert rows[0] == ["Name", "Email", "Phone", "Company", "Line", "Reason"]
        assert rows[1][:2] == ["Bad Email", "not-an-email"] and rows[1][4] == "4" and rows[1][5].startswith("Email")

        # the import itself
        running = await c.post(f"{API}/{import_id}/run")
        assert running.status_code == 202 and running.json()["run_kind"] == "import", running.text
        await _run(workspace, import_id, "import")
        imported = (await c.get(f"{API}/{import_id}")).json()
        assert imported["status"] == "imported" and imported["can_undo"], imported
        assert (imported["counts"]["created"], imported["counts"]["updated"], imported["counts"]["rejected"]) == \
            (2, 1, 1)
        contacts = {r["email"]: r for r in await _contacts(workspace)}
        assert set(contacts) == {"existing@example.com", "zhang.wei@example.cn", "emily@example.com"}
        assert contacts["zhang.wei@example.cn"]["name"] == "张伟"
        assert contacts["zhang.wei@example.cn"]["phone"].replace(" ", "").endswith("13800138000")
        assert contacts["existing@example.com"]["company_name"] == "New Trading"

        listed = await c.get(API)
        assert listed.status_code == 200
        assert [i["id"] for i in listed.json()["items"]] == [import_id]

        # undo: the two it created are gone, the existing contact is as it was
        undoing = await c.post(f"{API}/{import_id}/undo")
        assert undoing.status_code == 202 and undoing.json()["run_kind"] == "undo", undoing.text
        await _run(workspace, import_id, "undo")
        undone = (await c.get(f"{API}/{import_id}")).json()
        assert undone["status"] == "undone" and not undone["can_undo"], undone
        left = await _contacts(workspace)
        assert [(r["email"], r["company_name"]) for r in left] == [("existing@example.com", "")]
        again = await c.post(f"{API}/{import_id}/undo")
        assert "undone" in assert_error(again, 409, "wrong_state")["message"]


async def test_a_gbk_file_with_chinese_headers_is_read_and_mapped(workspace: Workspace) -> None:
    content = "姓名,手机,邮箱,公司\n李娜,13900139000,li.na@example.cn,北京星辰\n".encode("gbk")
    async with client(headers=await owner_token(workspace)) as c:
        made = await _upload(c, content, name="客户.csv")
        assert made.status_code == 201, made.text
        item = made.json()
        assert item["encoding"] == "gb18030" and item["headers"] == ["姓名", "手机", "邮箱", "公司"]
        assert item["file_name"] == "客户.csv"
        assert item["mapping"] == {"0": "name", "1": "phone", "2": "email", "3": "company_name"}


async def test_starting_twice_is_refused_and_a_queued_import_can_be_cancelled(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        import_id = (await _upload(c, ROWS.encode())).json()["id"]
        first = await c.post(f"{API}/{import_id}/run")
        assert first.status_code == 202, first.text
        assert "queued" in assert_error(await c.post(f"{API}/{import_id}/run"), 409, "wrong_state")["message"]
        assert_error(await c.post(f"{API}/{import_id}/check"), 409, "wrong_state")
        assert_error(await c.put(f"{API}/{import_id}/mapping", json={"mapping": {"0": "name"}}), 409, "wrong_state")
        cancelled = await c.post(f"{API}/{import_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
        # the job delivered after the cancel finds nothing to run
        await _run(workspace, import_id, "import")
        assert (await c.get(f"{API}/{import_id}")).json()["status"] == "cancelled"
        assert await _contacts(workspace) == []
        assert_error(await c.post(f"{API}/{import_id}/cancel"), 409, "wrong_state")
        assert_error(await c.post(f"{API}/{import_id}/undo"), 409, "wrong_state")


async def test_a_role_without_import_is_refused_naming_the_permission(workspace: Workspace) -> None:
    sales = await add_member(workspace, "sales")
    async with client(headers=await owner_token(workspace)) as c:
        import_id = (await _upload(c, ROWS.encode())).json()["id"]
    async with client(headers=sales.headers) as c:
        for resp in (await _upload(c, ROWS.encode()), await c.get(API), await c.get(f"{API}/{import_id}"),
                     await c.post(f"{API}/{import_id}/run"), await c.get(f"{API}/targets/leads")):
            error = assert_error(resp, 403, "permission_denied")
            assert error["permission"] in ("contacts: import", "leads: import"), error
            assert "Sales" in error["message"]
        leads = await _upload(c, b"Name\nA lead\n", object_type="leads")
        assert assert_error(leads, 403, "permission_denied")["permission"] == "leads: import"


async def test_another_workspace_cannot_see_the_import(workspace: Workspace, other_workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        import_id = (await _upload(c, ROWS.encode())).json()["id"]
    async with client(headers=await owner_token(other_workspace)) as c:
        assert_error(await c.get(f"{API}/{import_id}"), 404, "not_found")
        assert_error(await c.get(f"{API}/{import_id}/rejected.csv"), 404, "not_found")
        assert_error(await c.post(f"{API}/{import_id}/run"), 404, "not_found")
        assert (await c.get(API)).json()["items"] == []
        # naming the workspace in the path does not help: the token belongs to another one
        assert_error(await c.get(f"/t/{workspace.slug}/api/v1/imports/{import_id}"), 404, "no_such_workspace")


async def test_bad_files_are_refused_naming_the_problem(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        empty = assert_error(await _upload(c, b"", name="empty.csv"), 422, "empty_file")
        assert "'empty.csv' is empty" in empty["message"]
        missing = await c.post(API, data={"object_type": "contacts"}, files={"other": ("x.txt", b"x")})
        assert "file" in assert_error(missing, 422, "invalid_input")["fields"]
        deals = assert_error(await _upload(c, ROWS.encode(), object_type="deals"), 422, "invalid_input")
        assert "contacts, companies, leads" in deals["fields"]["object_type"]
        binary = assert_error(await _upload(c, b"\x00\x01\x02PK\x00\x00binary" * 50, name="photo.csv"), 422,
                              "unreadable_file")
        assert binary["message"]
        unknown = assert_error(await _upload(c, ROWS.encode(), encoding="klingon"), 422, "unreadable_file")
        assert "Unknown encoding" in unknown["message"] and "klingon" in unknown["message"]
        gbk = "姓名,邮箱\n张伟,zhang@example.cn\n".encode("gbk")
        wrong = assert_error(await _upload(c, gbk, encoding="utf-8"), 422, "unreadable_file")
        assert "line 1" in wrong["message"].lower(), wrong
        json_body = await c.post(API, json={"object_type": "contacts"})
        assert "multipart/form-data" in assert_error(json_body, 400, "not_multipart")["message"]
        assert_error(await c.get(f"{API}/targets/deals"), 404, "not_found")
        assert_error(await c.get(f"{API}/999999"), 404, "not_found")
        assert (await c.get(API)).json()["items"] == []  # nothing was kept of the refused files


async def test_a_file_over_the_limit_is_refused_before_it_is_read(workspace: Workspace) -> None:
    headers = await owner_token(workspace)
    with restored_environment("KITH_IMPORT_MAX_MB"):
        os.environ["KITH_IMPORT_MAX_MB"] = "1"
        reset_settings()
        async with client(headers=headers) as c:
            big = ("Name\n" + "x" * 80 + "\n") * 30_000  # ~2.5 MB
            refused = assert_error(await _upload(c, big.encode()), 413, "file_too_large")
            assert "1 MB" in refused["message"]
            assert (await c.get(API)).json()["items"] == []
        async with client() as c:  # the upload page says the same
            await login(c, workspace.email, workspace.password)
            page = await _page_upload(c, workspace, big.encode(), name="big.csv")
            assert page.status_code == 413 and "larger than imports take (1 MB" in page.text


async def test_bad_mappings_are_refused_naming_the_problem(workspace: Workspace) -> None:
    async with client(headers=await owner_token(workspace)) as c:
        import_id = (await _upload(c, ROWS.encode())).json()["id"]
        url = f"{API}/{import_id}/mapping"
        unknown = assert_error(await c.put(url, json={"mapping": {"0": "name", "1": "nickname"}}), 422,
                               "invalid_mapping")
        assert "'nickname' is not a field of contacts" in unknown["fields"]["mapping.1"]
        no_column = assert_error(await c.put(url, json={"mapping": {"0": "name", "9": "email"}}), 422,
                                 "invalid_mapping")
        assert "no column 10" in no_column["fields"]["mapping.9"]
        not_index = assert_error(await c.put(url, json={"mapping": {"B": "email"}}), 422, "invalid_mapping")
        assert "'B' is not a column index" in not_index["fields"]["mapping.B"]
        twice = assert_error(await c.put(url, json={"mapping": {"0": "name", "1": "email", "2": "email"}}), 422,
                             "invalid_mapping")
        assert "already filled" in twice["fields"]["mapping.2"]
        no_name = assert_error(await c.put(url, json={"mapping": {"1": "email"}}), 422, "invalid_mapping")
        assert "name" in no_name["fields"]["mapping"]
        key = assert_error(await c.put(url, json={"mapping": {"0": "name", "2": "phone"}, "match_key": "email"}),
                           422, "invalid_mapping")
        assert "email" in key["fields"]["match_key"]
        bad_key = assert_error(await c.put(url, json={"mapping": {"0": "name"}, "match_key": "domain"}), 422,
                               "invalid_mapping")
        assert "email, phone, name" in bad_key["fields"]["match_key"]
        mode = assert_error(await c.put(url, json={"mapping": {"0": "name"}, "on_duplicate": "merge"}), 422,
                            "invalid_input")
        assert "on_duplicate" in mode["fields"]
        extra = assert_error(await c.put(url, json={"mapping": {"0": "name"}, "columns": []}), 422, "invalid_input")
        assert extra["fields"]["columns"] == "Unknown field."
        # nothing of the refused mappings was kept
        assert (await c.get(f"{API}/{import_id}")).json()["mapping"] == {
            "0": "name", "1": "email", "2": "phone", "3": "company_name"}


async def test_the_endpoints_are_in_the_openapi_document(workspace: Workspace) -> None:
    async with client() as c:
        doc = (await c.get("/api/v1/openapi.json")).json()
    paths = doc["paths"]
    expected = {
        "/api/v1/imports": {"get", "post"}, "/api/v1/imports/targets/{object_type}": {"get"},
        "/api/v1/imports/{import_id}": {"get"}, "/api/v1/imports/{import_id}/mapping": {"put"},
        "/api/v1/imports/{import_id}/check": {"post"}, "/api/v1/imports/{import_id}/run": {"post"},
        "/api/v1/imports/{import_id}/cancel": {"post"}, "/api/v1/imports/{import_id}/undo": {"post"},
        "/api/v1/imports/{import_id}/rejected.csv": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert set(paths[path]) == methods, (path, set(paths[path]))
        for op in paths[path].values():
            assert op["x-kith-permission"] == "contacts: import" and op["tags"] == ["imports"]
            assert "403" in op["responses"]
    mapping = paths["/api/v1/imports/{import_id}/mapping"]["put"]
    assert mapping["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/MappingIn")
    assert "409" in paths["/api/v1/imports/{import_id}/run"]["post"]["responses"]
    assert "413" in paths["/api/v1/imports"]["post"]["responses"]
    schemas = doc["components"]["schemas"]
    assert {"ImportOut", "ImportList", "MappingIn", "TargetsOut"} <= set(schemas)
    assert {"progress_percent", "outcome", "can_undo", "counts", "rejected_sample"} <= set(
        schemas["ImportOut"]["properties"])


# --- the pages, through HTTP (the browser test walks the happy path in chromium) -------------


GBK = "姓名,手机,邮箱,公司\n李娜,13900139000,li.na@example.cn,北京星辰\n".encode("gbk")


async def _page_upload(c: httpx.AsyncClient, ws: Workspace, content: bytes, name: str = "客户.csv",
                       csrf: bool = True) -> httpx.Response:
    form = await c.get(f"/t/{ws.slug}/imports/new?type=contacts")
    assert form.status_code == 200, form.text[:300]
    data = {"object_type": "contacts", "encoding": "detect", "delimiter": "detect"}
    if csrf:
        data["csrf_token"] = csrf_from(form.text)
    return await c.post(f"/t/{ws.slug}/imports/new", data=data, files={"file": (name, content, "text/csv")})


async def test_the_pages_upload_map_reread_start_and_cancel(workspace: Workspace) -> None:
    base = f"/t/{workspace.slug}/imports"
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        assert "No imports yet." in (await c.get(base)).text
        contacts_list = (await c.get(f"/t/{workspace.slug}/contacts")).text
        assert f'href="/t/{workspace.slug}/imports/new?type=contacts"' in contacts_list
        empty = await _page_upload(c, workspace, b"", name="empty.csv")
        assert empty.status_code == 422 and "&#39;empty.csv&#39; is empty." in empty.text
        made = await _page_upload(c, workspace, GBK)
        assert made.status_code == 303, made.text[:500]
        page_url = made.headers["location"]
        assert page_url.startswith(f"{base}/")
        import_id = int(page_url.rsplit("/", 1)[1])

        page = await c.get(page_url)
        assert page.status_code == 200
        assert '<option value="name" selected>' in page.text and "李娜" in page.text
        token = csrf_from(page.text)
        mapping = {"map.0": "name", "map.1": "phone", "map.2": "email", "map.3": "company_name"}

        # no name column: the page again, with the reason, and nothing started
        refused = await c.post(page_url, data={**mapping, "map.0": "", "match_key": "email",
                                               "on_duplicate": "skip", "encoding": "gb18030", "delimiter": ",",
                                               "action": "check", "csrf_token": token})
        assert refused.status_code == 422 and "Choose the column that holds the name" in refused.text
        assert '<option value="phone" selected>' in refused.text  # the person's choices are kept

        # read again with another delimiter: one column; then back
        semicolon = await c.post(page_url, data={"map.0": "name", "match_key": "", "on_duplicate": "skip",
                                                 "encoding": "gb18030", "delimiter": ";", "action": "reread",
                                                 "csrf_token": token})
        assert semicolon.status_code == 303 and semicolon.headers["location"].endswith("?done=reread")
        reread = await c.get(page_url)
        assert "姓名,手机,邮箱,公司" in reread.text and 'name="map.1"' not in reread.text
        back = await c.post(page_url, data={"map.0": "name", "match_key": "", "on_duplicate": "skip",
                                            "encoding": "gb18030", "delimiter": ",", "action": "reread",
                                            "csrf_token": token})
        assert back.status_code == 303
        assert 'name="map.3"' in (await c.get(page_url)).text

        started = await c.post(page_url, data={**mapping, "match_key": "email", "on_duplicate": "skip",
                                               "encoding": "gb18030", "delimiter": ",", "action": "check",
                                               "csrf_token": token})
        assert started.status_code == 303 and started.headers["location"].endswith("?done=started")
        progress_page = await c.get(page_url)
        assert "data-import-progress" in progress_page.text
        assert '<noscript><meta http-equiv="refresh"' in progress_page.text
        progress = await c.get(f"{page_url}/progress")
        assert progress.status_code == 200 and progress.json()["status"] == "queued"
        assert progress.json()["progress_percent"] == 0

        not_imported = await c.get(f"{page_url}/undo")
        assert not_imported.status_code == 409 and "only an import that has run can be undone" in not_imported.text
        cancelled = await c.post(f"{page_url}/cancel", data={"csrf_token": token})
        assert cancelled.status_code == 303
        assert "Cancelled: nothing was written" in (await c.get(page_url)).text
        no_file = await c.get(f"{page_url}/rejected.csv")
        assert no_file.status_code == 404 and "no rejected rows file" in no_file.text
        listed = await c.get(base)
        assert f'data-import="{import_id}"' in listed.text and workspace.email in listed.text


async def test_the_pages_refuse_roles_without_import_and_strangers(workspace: Workspace,
                                                                   other_workspace: Workspace) -> None:
    sales = await add_member(workspace, "sales")
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        page_url = (await _page_upload(c, workspace, GBK)).headers["location"]
    async with client() as c:
        await login(c, sales.email, sales.password)
        for url in (f"/t/{workspace.slug}/imports", f"/t/{workspace.slug}/imports/new", page_url,
                    f"{page_url}/rejected.csv", f"{page_url}/progress"):
            resp = await c.get(url)
            assert resp.status_code == 403 and "contacts: import" in resp.text, (url, resp.status_code)
        assert "import-link" not in (await c.get(f"/t/{workspace.slug}/contacts")).text
    async with client() as c:
        await login(c, other_workspace.email, other_workspace.password)
        # not a member of the workspace: the same 404 as a workspace that does not exist
        assert (await c.get(page_url)).status_code == 404
        # their own workspace has no such import
        own = await c.get(page_url.replace(workspace.slug, other_workspace.slug))
        assert own.status_code == 404 and "There is no such import." in own.text
