"""Exports of lists as CSV and XLSX (issue 7, "Export"): the file's bytes, the columns and
labels, formula safety, field-level permissions, record scope, tenant isolation, saved views,
the audit entries and a few thousand rows streamed through every page."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import httpx
import openpyxl
import pytest

from kith.platform.db import platform_tx, tenant_scope
from kith.web.i18n import gettext_for

from .conftest import Services, Workspace, make_workspace
from .factories import Member, add_member, owner_token
from .web_helpers import assert_error, client, login

HYPERLINK = '=HYPERLINK("http://x","y")'
CHINESE = "北京星辰科技有限公司 张伟"


def _rows(resp: httpx.Response) -> list[list[str]]:
    assert resp.status_code == 200, resp.text[:500]
    assert resp.content.startswith(b"\xef\xbb\xbf"), "a UTF-8 BOM first, for Excel"
    return list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"), newline="")))


async def _audit(ws: Workspace, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "SELECT action, diff FROM audit_log WHERE action LIKE $1 ORDER BY seq", [prefix + "%"])
    return [(r["action"], json.loads(r["diff"]) if isinstance(r["diff"], str) else r["diff"]) for r in rows]


@pytest.fixture(scope="module")
async def data(db: Services) -> dict[str, Any]:
    ws = await make_workspace("export")
    own = await add_member(ws, "custom-exp-own")
    no_email = await add_member(ws, "custom-exp-no-email")
    async with tenant_scope(ws.tenant_id) as tx:
        await tx.execute_query(
            "INSERT INTO roles (key, name, grants, record_scope, hidden_fields) VALUES"
            " ('custom-exp-own', 'Own exporter', '{\"contacts\": [\"view\", \"export\"]}',"
            " '{\"contacts\": \"own\"}', '{}'),"
            " ('custom-exp-no-email', 'No email', '{\"contacts\": [\"view\", \"export\"]}', '{\"contacts\": \"all\"}',"
            " '{\"contacts\": [\"email\"]}')")
        await tx.execute_query(
            "INSERT INTO custom_fields (object_type, key, label, kind, options) VALUES"
            " ('contacts', 'nickname', '昵称', 'text', '[]')")
        for name, email, title, owner, custom in (
                (CHINESE, "zhang@example.cn", "总经理", ws.identity_id, {"nickname": "老张"}),
                (HYPERLINK, "formula@example.com", "-2+3", ws.identity_id, {"nickname": "@SUM(A1)"}),
                ("Own record", "own@example.com", "Rep", own.identity_id, {}),
        ):
            await tx.execute_query(
                "INSERT INTO contacts (name, email, phone, title, owner_id, custom) VALUES ($1, $2, '+8613800000000',"
                " $3, $4, $5::jsonb)", [name, email, title, owner, json.dumps(custom)])
        pipeline = (await tx.execute_query_dict(
            "INSERT INTO pipelines (name) VALUES ('Export tests') RETURNING id"))[0]["id"]
        stage = (await tx.execute_query_dict(
            "INSERT INTO stages (pipeline_id, name) VALUES ($1, 'New') RETURNING id", [pipeline]))[0]["id"]
        await tx.execute_query(
            "INSERT INTO deals (name, amount, currency, expected_close, pipeline_id, stage_id, owner_id)"
            " VALUES ('=1+1', 1234.50, 'CNY', '2026-12-31', $1, $2, $3)", [pipeline, stage, ws.identity_id])
    return {"ws": ws, "owner": await owner_token(ws), "own": own, "no_email": no_email}


async def test_csv_has_bom_labels_chinese_text_safe_formulas_and_is_audited(data: dict[str, Any]) -> None:
    ws = data["ws"]
    async with client(headers=data["owner"]) as c:
        resp = await c.get("/api/v1/exports/contacts", params={"format": "csv", "sort": "id"})
    assert resp.headers["content-type"].startswith("text/csv")
    disposition = resp.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="contacts-') and disposition.endswith('.csv"')
    rows = _rows(resp)
    assert rows[0] == ["Name", "Email", "Phone", "Company", "Lifecycle stage", "Owner"]
    assert [r[0] for r in rows[1:]] == [CHINESE, "'" + HYPERLINK, "Own record"]
    assert rows[1][1] == "zhang@example.cn" and rows[1][5] == ws.email  # the owner by email
    assert b"\r\n" in resp.content  # RFC 4180 line ends
    # a chosen column and a custom field by its label; text starting with - + @ is made safe too
    async with client(headers=data["owner"]) as c:
        resp = await c.get("/api/v1/exports/contacts", params={"columns": "name,title,custom.nickname",
                                                                "f": "title:eq:-2+3"})
    assert _rows(resp) == [["Name", "Job title", "昵称"], ["'" + HYPERLINK, "'-2+3", "'@SUM(A1)"]]
    entries = await _audit(ws, "contacts.export")
    started = [d for a, d in entries if a == "contacts.export"]
    finished = [d for a, d in entries if a == "contacts.exported"]
    assert started[-1]["query"]["filters"] == [["title", "eq", "-2+3"]]
    assert started[-1]["columns"] == ["name", "title", "custom.nickname"] and started[-1]["format"] == "csv"
    assert finished[-1]["rows"] == 1 and finished[-2]["rows"] == 3
    assert "zhang@example.cn" not in json.dumps(entries, ensure_ascii=False)  # no values, ever


async def test_labels_follow_the_workspace_locale(db: Services) -> None:
    ws = await make_workspace("export-zh")
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.tenants SET locale = 'zh-CN' WHERE id = $1", [ws.tenant_id])
    async with tenant_scope(ws.tenant_id) as tx:
        await tx.execute_query("INSERT INTO companies (name, city) VALUES ('上海贸易有限公司', '上海')")
    async with client(headers=await owner_token(ws)) as c:
        rows = _rows(await c.get("/api/v1/exports/companies", params={"columns": "name,city"}))
    assert rows[0] == [gettext_for("zh-CN", "Name"), gettext_for("zh-CN", "City")] and rows[0][0] != "Name"
    assert rows[1] == ["上海贸易有限公司", "上海"]


async def test_xlsx_keeps_strings_numbers_and_dates(data: dict[str, Any]) -> None:
    async with client(headers=data["owner"]) as c:
        resp = await c.get("/api/v1/exports/deals", params={"format": "xlsx",
                                                             "columns": "name,amount,currency,expected_close"})
        contacts = await c.get("/api/v1/exports/contacts", params={"format": "xlsx", "sort": "id"})
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert resp.headers["content-disposition"].endswith('.xlsx"')
    sheet = openpyxl.load_workbook(io.BytesIO(resp.content)).active
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[0] == ["Name", "Amount", "Currency", "Expected close"]
    name, amount, currency, closing = values[1]
    assert name == "=1+1" and sheet.cell(2, 1).data_type == "s"  # a string, not a formula
    assert Decimal(str(amount)) == Decimal("1234.50") and currency == "CNY"
    assert isinstance(closing, datetime) and closing.date() == date(2026, 12, 31)
    book = openpyxl.load_workbook(io.BytesIO(contacts.content)).active
    names = [row[0].value for row in book.iter_rows(min_row=2)]
    assert names == [CHINESE, HYPERLINK, "Own record"]
    assert all(row[0].data_type == "s" for row in book.iter_rows(min_row=2))


async def test_hidden_fields_are_never_exported(data: dict[str, Any]) -> None:
    member: Member = data["no_email"]
    async with client(headers=member.headers) as c:
        default = await c.get("/api/v1/exports/contacts")
        every = await c.get("/api/v1/exports/contacts", params={"columns": "all"})
        asked = await c.get("/api/v1/exports/contacts", params={"columns": "name,email"})
        filtered = await c.get("/api/v1/exports/contacts", params={"f": "email:contains:zhang"})
    assert "Email" not in _rows(default)[0] and b"zhang@example.cn" not in default.content
    header = _rows(every)[0]
    assert "Email" not in header and "Name" in header and "Phone" in header and "昵称" in header
    assert b"zhang@example.cn" not in every.content and len(_rows(every)) == 4
    for resp in (asked, filtered):
        assert assert_error(resp, 403, "permission_denied")


async def test_record_scope_and_tenants(data: dict[str, Any], other_workspace: Workspace) -> None:
    async with tenant_scope(other_workspace.tenant_id) as tx:
        await tx.execute_query("INSERT INTO contacts (name) VALUES ('Contact of another workspace')")
    own: Member = data["own"]
    async with client(headers=own.headers) as c:
        rows = _rows(await c.get("/api/v1/exports/contacts", params={"columns": "name"}))
    assert rows == [["Name"], ["Own record"]]
    async with client(headers=data["owner"]) as c:
        names = [r[0] for r in _rows(await c.get("/api/v1/exports/contacts", params={"columns": "name"}))]
    assert "Contact of another workspace" not in names and len(names) == 4
    async with client(headers=await owner_token(other_workspace)) as c:
        theirs = [r[0] for r in _rows(await c.get("/api/v1/exports/contacts", params={"columns": "name"}))]
    assert CHINESE not in theirs and "Contact of another workspace" in theirs


async def test_roles_without_export_are_refused(data: dict[str, Any]) -> None:
    for role in ("sales", "read_only", "support"):
        member = await add_member(data["ws"], role)
        async with client(headers=member.headers) as c:
            error = assert_error(await c.get("/api/v1/exports/contacts"), 403, "permission_denied")
        assert error["permission"] == "contacts: export"
    async with client(headers=data["owner"]) as c:
        assert_error(await c.get("/api/v1/exports/contacts", params={"format": "pdf"}), 422, "invalid_input")
        assert_error(await c.get("/api/v1/exports/contacts", params={"sort": "nope"}), 422, "invalid_input")
        assert_error(await c.get("/api/v1/exports/contacts", params={"view": "999999"}), 404)


async def test_a_saved_view_exports_its_filters_and_columns(data: dict[str, Any]) -> None:
    async with client(headers=data["owner"]) as c:
        view = await c.post("/api/v1/views", json={
            "object_type": "contacts", "name": "Chinese names",
            "definition": {"filters": [["name", "contains", "北京"]], "columns": ["name", "phone"]}})
        assert view.status_code == 201, view.text
        rows = _rows(await c.get("/api/v1/exports/contacts", params={"view": view.json()["id"]}))
    assert rows == [["Name", "Phone"], [CHINESE, "'+8613800000000"]]
    started = [d for a, d in await _audit(data["ws"], "contacts.export") if a == "contacts.export"]
    assert started[-1]["view_id"] == view.json()["id"]


async def test_thousands_of_rows_stream_through_every_page(db: Services) -> None:
    ws = await make_workspace("export-big")
    async with tenant_scope(ws.tenant_id) as tx:
        await tx.execute_query(
            "INSERT INTO contacts (name, email, owner_id) SELECT '联系人 ' || n, 'c' || n || '@example.com', $1"
            " FROM generate_series(1, 3500) AS n", [ws.identity_id])
    async with client(headers=await owner_token(ws)) as c:
        resp = await c.get("/api/v1/exports/contacts", params={"columns": "name,email", "sort": "id"})
        book = await c.get("/api/v1/exports/contacts", params={"columns": "name", "format": "xlsx"})
    rows = _rows(resp)
    assert len(rows) == 3501 and rows[1] == ["联系人 1", "c1@example.com"] and rows[-1][0] == "联系人 3500"
    assert len({r[1] for r in rows[1:]}) == 3500
    assert openpyxl.load_workbook(io.BytesIO(book.content), read_only=True).active.max_row == 3501
    finished = [d for a, d in await _audit(ws, "contacts.export") if a == "contacts.exported"]
    assert [d["rows"] for d in finished] == [3500, 3500]


async def test_the_list_page_links_and_the_export_page_streams(data: dict[str, Any]) -> None:
    ws = data["ws"]
    async with client() as c:
        await login(c, ws.email, ws.password)
        page = await c.get(f"/t/{ws.slug}/contacts", params={"f": "name:contains:北京"})
        assert page.status_code == 200 and "/contacts/export?format=csv&f=name" in page.text
        assert "Export XLSX" in page.text
        rows = _rows(await c.get(f"/t/{ws.slug}/contacts/export", params={"format": "csv", "f": "name:contains:北京",
                                                                           "columns": "name"}))
        assert rows == [["Name"], [CHINESE]]
        bad = await c.get(f"/t/{ws.slug}/contacts/export", params={"format": "pdf"})
        assert bad.status_code == 422 and "format must be csv or xlsx" in bad.text
    member = await add_member(ws, "sales")
    async with client() as c:
        await login(c, member.email, member.password)
        page = await c.get(f"/t/{ws.slug}/contacts")
        assert page.status_code == 200 and "Export CSV" not in page.text
        refused = await c.get(f"/t/{ws.slug}/contacts/export")
        assert refused.status_code == 403
