"""CSV exports written by PostgreSQL's COPY (tenants/exports/copy_csv.py) are the bytes the
row-by-row Python writer (export_rows + csv_chunks, the reference) writes for the same data.

The data is meant to be awkward: Chinese names, text starting with = + - @ a tab or a CR,
commas, quotes, line breaks (LF and CRLF) inside values, a lone \\., trailing and leading
spaces, empty strings and NULLs, owners who are members, who are not, and nobody; tags with an
empty tag and a NULL element; custom fields of every kind (text, long text, URL, select,
multi-select with escaped characters, number and currency in Decimal's own spelling, scientific
included, dates, booleans), companies' and leads' custom fields; deals with amounts, stages and
companies joined; times with microseconds, before the year 1000 and in three zones. Every list
is compared with every column, the default columns, single columns, sorts (nullable ones both
ways, text, custom fields), filters, searches (one character, two Chinese characters, a quote
and a $1 in the text), a record scope, a hidden field, a saved view and no rows at all.

Bad input tried (each says so where it is): custom values Kith never stores, written straight to
the table (a JSON float, a number string with a space, a lower-case exponent, a list in a text
field, a number in a multi-select, a "yes" in a boolean, a compact date): the export falls back
to the Python writer and says why; a column hidden from the role after the export was planned
(empty, as Python leaves it); a download dropped half-way (the COPY stops, nothing is recorded,
the connection is fine); a cancelled background export (it stops; no "exported" entry).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kith.platform.access.actor import Actor
from kith.platform.access.rules import PermissionDenied
from kith.platform.db import platform_tx, tenant_scope
from kith.tenants.exports.copy_csv import CopyOutcome, CsvLines, _custom_unusual
from kith.tenants.exports.formats import csv_chunks
from kith.tenants.exports.jobs import execute, export_path
from kith.tenants.exports.records import ExportColumn, ExportPlan, export_rows, plan_export
from kith.tenants.exports.stream import export_chunks
from kith.tenants.records.custom import clean_custom_values, load_custom_fields
from kith.tenants.records.kinds import record_kind
from kith.tenants.records.listing import ListQuery

from .conftest import Services, Workspace, make_workspace
from .factories import Member, add_member, owner_token
from .web_helpers import client

SHANGHAI = "Asia/Shanghai"
AWKWARD = [
    "北京星辰科技有限公司 张伟", '=HYPERLINK("http://x","y")', "+86 138 0000 0000", "-2+3", "@SUM(A1)",
    "\tTabbed", "\rCR first", "comma, inside", 'quote "inside"', "line\nbreak", "crlf\r\nbreak", "\\.",
    "trailing space ", "  leading", "ß İ ǅ 😀", "x" * 200, "O'Brien $1 \\ back", "一", "=", "'already quoted",
]
CUSTOM = [  # key, label, kind, options
    ("nickname", "昵称", "text", []), ("bio", "简介", "long_text", []), ("site", "Web", "url", []),
    ("tier", "等级", "select", ["金牌", "=gold", "Silver, Ltd"]),
    ("interests", "Interests", "multi_select", ["CRM", "=cmd", "a, b", 'say "hi"', "back\\slash", "tab\tin", "中文"]),
    ("score", "Score", "number", []), ("budget", "Budget", "currency", []), ("since", "Since", "date", []),
    ("vip", "VIP", "boolean", []),
]
NUMBERS = ["12.30", "-5", "0", "1E+3", "-0.00", "0.000001", "1e-7", "123456789012345.6", "7"]


def _actor(ws: Workspace, role: str = "owner", identity_id: int | None = None) -> Actor:
    return Actor(kind="user", tenant_id=ws.tenant_id, role=role, identity_id=identity_id or ws.identity_id,
                 label="tests")


async def _both(actor: Actor, object_type: str, query: ListQuery | None = None, *, all_columns: bool = False,
                view_id: int | None = None, time_zone: str = SHANGHAI) -> tuple[bytes, bytes, CopyOutcome]:
    """The export's bytes from the Python writer and through export_chunks, and how the latter went."""
    plan = await plan_export(actor, object_type, query or ListQuery(), fmt="csv", all_columns=all_columns,
                             view_id=view_id)
    return await _both_of(actor, plan, time_zone)


async def _both_of(actor: Actor, plan: ExportPlan, time_zone: str = SHANGHAI) -> tuple[bytes, bytes, CopyOutcome]:
    labels = [c.label for c in plan.columns]
    python = b"".join([c async for c in csv_chunks(labels, export_rows(actor, plan), ZoneInfo(time_zone))])
    outcome = CopyOutcome()
    copied = b"".join([c async for c in export_chunks(actor, plan, labels, time_zone, outcome=outcome)])
    return python, copied, outcome


async def _same(actor: Actor, object_type: str, query: ListQuery | None = None, **kwargs: Any) -> bytes:
    python, copied, outcome = await _both(actor, object_type, query, **kwargs)
    assert outcome.method == "copy", outcome
    assert copied == python, _diff(python, copied)
    return copied


def _open_spools() -> int:
    """Spool files this process holds open (unlinked at once, they are reached by descriptor only)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += ".csv.spool" in os.readlink(f"/proc/self/fd/{fd}")
    return count


def _diff(python: bytes, copied: bytes) -> str:
    at = next((i for i, (a, b) in enumerate(zip(python, copied, strict=False)) if a != b), min(len(python),
                                                                                            len(copied)))
    return f"first difference at byte {at}: python {python[at - 80:at + 80]!r}\n copy {copied[at - 80:at + 80]!r}"


async def _audit(ws: Workspace, action: str) -> list[dict[str, Any]]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict("SELECT diff FROM audit_log WHERE action = $1 ORDER BY seq", [action])
    return [json.loads(r["diff"]) if isinstance(r["diff"], str) else r["diff"] for r in rows]


async def _custom_fields(tx: Any, object_type: str, fields: list[tuple[str, str, str, list[str]]]) -> None:
    for key, label, kind, options in fields:
        await tx.execute_query(
            "INSERT INTO custom_fields (object_type, key, label, kind, options) VALUES ($1, $2, $3, $4, $5::jsonb)",
            [object_type, key, label, kind, json.dumps(options, ensure_ascii=False)])


def _custom_values(n: int) -> dict[str, Any]:
    """Raw input for the custom fields of contact `n`, as a person or an import would give it."""
    rnd = random.Random(n)  # noqa: S311 - test data
    values: dict[str, Any] = {}
    if n % 5:
        values["nickname"] = AWKWARD[n % len(AWKWARD)].strip() or "x"
    if n % 3 == 0:
        values["bio"] = "多行\n文本, with \"quotes\"\r\nand more" if n % 2 else "-bio"
    if n % 4 == 1:
        values["site"] = "https://example.cn/路径?q=1,2"
    if n % 2:
        values["tier"] = CUSTOM[3][3][n % 3]
    values["interests"] = rnd.sample(CUSTOM[4][3], k=n % 4)
    if n % 7:
        values["score"] = NUMBERS[n % len(NUMBERS)]
    if n % 6:
        values["budget"] = ["1234.5", "-0.01", "0", "99999999.99"][n % 4]
    if n % 5 != 2:
        values["since"] = ["2026-11-23", "0999-01-01", "2000-02-29"][n % 3]
    if n % 4:
        values["vip"] = n % 8 < 4
    return values


@pytest.fixture(scope="module")
async def data(db: Services) -> dict[str, Any]:
    ws = await make_workspace("excopy")
    member = await add_member(ws, "manager")
    own = await add_member(ws, "custom-excopy-own")
    no_email = await add_member(ws, "custom-excopy-no-email")
    stranger = await make_workspace("excopy-other")  # an identity that is not a member here
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.identities SET email = $2 WHERE id = $1",
                               [member.identity_id, f"-minus-{ws.slug}@example.com"])
    async with tenant_scope(ws.tenant_id) as tx:
        await tx.execute_query(
            "INSERT INTO roles (key, name, grants, record_scope, hidden_fields) VALUES"
            " ('custom-excopy-own', 'Own', '{\"contacts\": [\"view\", \"export\"]}', '{\"contacts\": \"own\"}', '{}'),"
            " ('custom-excopy-no-email', 'No email', '{\"contacts\": [\"view\", \"export\"]}',"
            " '{\"contacts\": \"all\"}', '{\"contacts\": [\"email\", \"custom\"]}')")
        await _custom_fields(tx, "contacts", CUSTOM)
        await _custom_fields(tx, "companies", [("rating", "评级", "number", []), ("tags2", "Tags", "multi_select",
                                                                                ["x", "=y"])])
        await _custom_fields(tx, "leads", [("channel", "Channel", "select", ["微信", "-web"]),
                                           ("met", "Met", "date", [])])
        definitions = await load_custom_fields(tx, "contacts")
        companies = []
        for n, name in enumerate(["上海贸易有限公司", "=Company", "Acme, Inc."]):
            companies.append((await tx.execute_query_dict(
                "INSERT INTO companies (name, domain, industry, size, city, country, owner_id, tags, custom,"
                " last_activity_at) VALUES ($1, $2, $3, $4, '上海', $5, $6, $7, $8::jsonb, $9) RETURNING id",
                [name, "" if n else "example.cn", "-ind" if n == 1 else "Software", ["", "1-10", "5000+"][n],
                 "CN" if n != 2 else "", None if n == 2 else ws.identity_id, [["x", "=y"], [], ["a"]][n],
                 json.dumps({"rating": ["4.5", "-1"][n % 2], "tags2": ["=y"]} if n < 2 else {}),
                 datetime(2026, 1, 1, 12, tzinfo=UTC) if n else None]))[0]["id"])
        owners = [ws.identity_id, member.identity_id, own.identity_id, None, stranger.identity_id]
        for n in range(1, 121):
            awkward = AWKWARD[n % len(AWKWARD)]
            custom = clean_custom_values(definitions, _custom_values(n), partial=False)
            created = datetime(2026, 3, 8, 18, 59, 59, 999_999, tzinfo=UTC) if n % 9 else \
                datetime(999, 5, 1, 0, 0, tzinfo=UTC)
            await tx.execute_query(
                "INSERT INTO contacts (name, email, phone, company_name, company_id, title, lifecycle_stage, source,"
                " marketing_consent, owner_id, tags, custom, created_at, updated_at, last_activity_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14, $15)",
                [awkward if n % 7 else f"联系人 {n}", "" if n % 6 == 0 else f"=c{n}@example.com" if n % 11 == 0
                 else f"c{n}@example.com", ["", "+8613800000000", "-123", "@x"][n % 4], awkward[::-1] if n % 3 else "",
                 companies[n % 3] if n % 5 else None, ["", "总经理", "-2+3", "CEO, CTO"][n % 4],
                 ["lead", "customer", "subscriber"][n % 3], ["", "微信", "=src"][n % 3],
                 ["unknown", "granted", "withdrawn"][n % 3], owners[n % len(owners)],
                 [[], ["VIP"], ["=x", "b"], ["", "a"], ["a, b", 'q"'], [None, "n"]][n % 6],
                 json.dumps(custom, ensure_ascii=False), created, created.replace(year=2026, microsecond=n),
                 None if n % 4 == 0 else datetime(2025, 12, 31, 16, 0, n % 60, tzinfo=UTC)])
        await tx.execute_query(
            "INSERT INTO leads (name, company_name, title, email, phone, status, source, owner_id, tags, custom,"
            " last_activity_at) SELECT (ARRAY['李娜', '=lead', 'Lead, Inc.', 'q\"'])[1 + n % 4], '', '-t', '', '',"
            " (ARRAY['new', 'contacted', 'qualified'])[1 + n % 3], '', $1, ARRAY['a', '=b'],"
            " CASE WHEN n % 2 = 0 THEN '{\"channel\": \"-web\", \"met\": \"2026-01-02\"}'::jsonb ELSE '{}' END,"
            " CASE WHEN n % 3 = 0 THEN NULL ELSE now() END FROM generate_series(1, 30) AS n", [ws.identity_id])
        pipeline, stage = (await tx.execute_query_dict(
            "SELECT p.id AS pipeline, s.id AS stage FROM pipelines p JOIN stages s ON s.pipeline_id = p.id"
            " ORDER BY s.position LIMIT 1"))[0].values()
        await tx.execute_query("UPDATE stages SET name = '=Stage, 1' WHERE id = $1", [stage])
        for n, amount in enumerate(["0", "0.01", "1234.50", "9999999999999999.99", "100"]):
            await tx.execute_query(
                "INSERT INTO deals (name, amount, currency, expected_close, probability, pipeline_id, stage_id,"
                " company_id, owner_id, loss_reason, tags, closed_at) VALUES ($1, $2::numeric, $3, $4, $5, $6, $7,"
                " $8, $9, $10, $11, $12)",
                [["=1+1", "大单", "Deal, big", "-d", "d"][n], amount, ["CNY", "USD"][n % 2],
                 None if n % 2 else datetime(2026, 12, 31, tzinfo=UTC).date(), [None, 0, 100, 50, 10][n],
                 pipeline, stage, companies[n % 3] if n % 2 else None, ws.identity_id, "-lost" if n == 3 else "",
                 ["=t"] if n else [], datetime(2026, 6, 30, 23, 59, 59, tzinfo=UTC) if n % 2 else None])
        await tx.execute_query("ANALYZE contacts")
    return {"ws": ws, "member": member, "own": own, "no_email": no_email, "companies": companies}


# --- the same bytes ---------------------------------------------------------------------------


async def test_every_column_of_every_list_is_the_same_bytes(data: dict[str, Any]) -> None:
    actor = _actor(data["ws"])
    for object_type in ("contacts", "companies", "leads", "deals"):
        every = await _same(actor, object_type, all_columns=True)
        await _same(actor, object_type)  # the default columns
        assert every.startswith(b"\xef\xbb\xbf") and every.count(b"\r\n") > 2
    contacts = await _same(actor, "contacts", all_columns=True)
    # the awkward values made it, formula-safe, as the Python writer writes them
    assert b"\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"" in contacts and b",'-2+3," in contacts
    assert b"\"line\nbreak\"" in contacts and b"\"crlf\r\nbreak\"" in contacts and b",'\tTabbed," in contacts
    assert b"999-05-01 08:05:43" in contacts and b"2026-03-09 02:59:59," in contacts  # LMT, Shanghai, truncated
    assert b"'-minus-" in contacts  # a member's email starting with - is formula-safe too
    assert "北京星辰科技有限公司 张伟".encode() in contacts and b"1E+3" in contacts and b',"None, n",' in contacts


@pytest.mark.parametrize("sort", ["name", "-name", "last_activity_at", "-last_activity_at", "email", "-created_at",
                                  "custom.score", "-custom.nickname", "custom.since", "id", "owner_id"])
async def test_sorted_lists_are_the_same_bytes(data: dict[str, Any], sort: str) -> None:
    await _same(_actor(data["ws"]), "contacts", ListQuery(sort=sort), all_columns=True)


@pytest.mark.parametrize("filters, q", [
    ([("name", "contains", "北京")], ""), ([("title", "eq", "-2+3")], ""), ([("tags", "has", "VIP")], ""),
    ([("custom.tier", "eq", "金牌")], ""), ([("custom.vip", "eq", "true")], ""), ([("custom.score", "gt", "0")], ""),
    ([("owner_id", "eq", "me")], ""), ([("lifecycle_stage", "in", "lead|customer")], ""),
    ([("last_activity_at", "empty", "")], ""), ([("email", "notempty", ""), ("custom.interests", "has", "=cmd")], ""),
    ([], "北京"), ([], "x"), ([], "example"), ([], "O'Brien $1 \\"), ([("name", "eq", "no such name")], ""),
])
async def test_filtered_and_searched_lists_are_the_same_bytes(data: dict[str, Any], filters: list[Any],
                                                                q: str) -> None:
    await _same(_actor(data["ws"]), "contacts", ListQuery(filters=filters, q=q), all_columns=True)


@pytest.mark.parametrize("column", ["email", "name", "custom.nickname", "custom.interests", "last_activity_at"])
async def test_one_column_files_are_the_same_bytes(data: dict[str, Any], column: str) -> None:
    # one column: Python writes an empty value as "" and \. unquoted, PostgreSQL would not
    copied = await _same(_actor(data["ws"]), "contacts", ListQuery(columns=[column], sort="id"))
    if column == "email":
        assert b'\r\n""\r\n' in copied
    if column == "name":
        assert b"\r\n\\.\r\n" in copied


@pytest.mark.parametrize("time_zone", ["UTC", "America/New_York", "Asia/Kolkata"])
async def test_times_in_other_zones_are_the_same_bytes(data: dict[str, Any], time_zone: str) -> None:
    await _same(_actor(data["ws"]), "contacts", ListQuery(columns=["name", "created_at", "last_activity_at"]),
                time_zone=time_zone)


async def test_record_scope_hidden_fields_and_views_are_the_same_bytes(data: dict[str, Any]) -> None:
    ws = data["ws"]
    own: Member = data["own"]
    mine = await _same(_actor(ws, "custom-excopy-own", own.identity_id), "contacts", all_columns=True)
    assert 1 < mine.count(b"\r\n") < 40  # only the contacts this member owns
    no_email: Member = data["no_email"]
    hidden = await _same(_actor(ws, "custom-excopy-no-email", no_email.identity_id), "contacts", all_columns=True)
    assert b"c1@example.com" not in hidden and "昵称".encode() not in hidden and b",Name," in hidden
    async with client(headers=await owner_token(ws)) as c:
        view = await c.post("/api/v1/views", json={
            "object_type": "contacts", "name": "Some", "definition": {
                "filters": [["custom.vip", "eq", "true"]], "sort": "-custom.score",
                "columns": ["name", "custom.score", "custom.interests", "owner_id"]}})
    assert view.status_code == 201, view.text
    await _same(_actor(ws), "contacts", view_id=view.json()["id"])


async def test_a_column_hidden_after_the_plan_is_left_empty_as_python_leaves_it(data: dict[str, Any]) -> None:
    ws = data["ws"]
    member = await add_member(ws, "custom-excopy-later")
    async with tenant_scope(ws.tenant_id) as tx:
        await tx.execute_query(
            "INSERT INTO roles (key, name, grants, record_scope, hidden_fields) VALUES ('custom-excopy-later', 'Later',"
            " '{\"contacts\": [\"view\", \"export\"]}', '{\"contacts\": \"all\"}', '{}')")
    actor = _actor(ws, "custom-excopy-later", member.identity_id)
    plan = await plan_export(actor, "contacts", ListQuery(), fmt="csv")  # the default columns, email among them
    assert "email" in [c.name for c in plan.columns]
    # bad input: the role loses the email column between the plan and the rows
    async with tenant_scope(ws.tenant_id) as tx:
        await tx.execute_query("UPDATE roles SET hidden_fields = '{\"contacts\": [\"email\"]}'"
                               " WHERE key = 'custom-excopy-later'")
    python, copied, outcome = await _both_of(actor, plan)
    assert outcome.method == "copy" and copied == python, _diff(python, copied)
    rows = list(csv.reader(io.StringIO(copied.decode("utf-8-sig"), newline="")))
    assert rows[0][1] == "Email" and {r[1] for r in rows[1:]} == {""} and len(rows) == 121
    # a column asked for by name is refused instead, both ways
    named = await plan_export(_actor(ws), "contacts", ListQuery(columns=["name", "email"]), fmt="csv")
    with pytest.raises(PermissionDenied):
        await _both_of(actor, ExportPlan("contacts", named.query, named.columns, "csv"))


# --- what COPY leaves to Python ---------------------------------------------------------------


async def test_decimal_spelling_is_told_apart_exactly_as_python_spells_it(db: Services) -> None:
    """The check calls a number string unusual exactly when str(Decimal(s)) != s (a spelling Kith
    never stores, which COPY would print as it is and Python would not)."""
    rnd = random.Random(7)  # noqa: S311 - test data
    canonical = [str(Decimal(rnd.randint(-10**8, 10**8)).scaleb(rnd.randint(-12, 6))) for _ in range(300)]
    # bad input: spellings Decimal reads but writes otherwise, and some it does not read at all
    spelled = ["0", "-0", "12.30", "007", "1.", ".5", "0.000001", "0.0000001", "1E-7", "1E+3", "1.0E+3",
               "1.000E+3", "1E+0", "0E+3", "0E-7", "0E-3", "1e3", "+5", " 5", "1_000", "NaN", "Infinity", "1E-5",
               "0.0000000", "0.000000", "-0.00", "1E-06", "1E+03", "1.5E-7", "-1.5E-7", "10E+3", "0.0E+3", "", "--1"]
    cases = canonical + spelled
    assert any("E" in c for c in canonical) and any(c.startswith(("0.0", "-0.0")) for c in canonical)
    expected = []
    for text in cases:
        try:
            # NaN and Infinity read back the same, but clean_value never stores them: unusual too
            expected.append(str(Decimal(text)) != text or not Decimal(text).is_finite())
        except ArithmeticError:
            expected.append(True)
    column = ExportColumn("custom.k", "K", "number", custom=True)
    unusual = _custom_unusual(record_kind("contacts").spec, column)  # type: ignore[union-attr]
    ws = await make_workspace("excopy-dec")
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            f"SELECT {unusual} AS unusual FROM (SELECT n, jsonb_build_object('k', v) AS custom"
            " FROM unnest($1::text[]) WITH ORDINALITY AS t(v, n)) AS contacts ORDER BY n", [cases])
    found = [bool(r["unusual"]) for r in rows]
    assert [c for c, f, e in zip(cases, found, expected, strict=True) if f != e] == []


@pytest.mark.parametrize("kind, value, canonical", [
    # bad input, each a value Kith never stores, written straight to the table
    ("number", 1.5, False), ("number", "1.50", True), ("number", " 12", False), ("number", "1e3", False),
    ("number", "1E+3", True), ("number", True, False), ("currency", "-0.01", True), ("currency", [1], False),
    ("text", 5, False), ("text", ["a"], False), ("text", None, False), ("select", {"a": 1}, False),
    ("multi_select", ["a", 1], False), ("multi_select", "a", False), ("multi_select", ["a\\b", 'q"'], True),
    ("boolean", "yes", False), ("boolean", 0, False), ("date", "20240101", False), ("date", "2024-01-01", True),
])
async def test_custom_values_kith_never_stores_go_through_python(db: Services, kind: str, value: Any,
                                                                 canonical: bool) -> None:
    ws = await make_workspace("excopy-odd")
    async with tenant_scope(ws.tenant_id) as tx:
        await _custom_fields(tx, "contacts", [("odd", "Odd", kind, ["a", "a\\b", 'q"'] if "select" in kind else [])])
        await tx.execute_query("INSERT INTO contacts (name, custom) VALUES ('usual', '{}'), ('odd', $1::jsonb)",
                               [json.dumps({"odd": value})])
    query = ListQuery(columns=["name", "custom.odd"])
    python, copied, outcome = await _both(_actor(ws), "contacts", query)
    assert copied == python, _diff(python, copied)
    assert outcome.method == ("copy" if canonical else "python"), outcome
    if not canonical:
        assert "custom values" in outcome.reason
        # the check looks at the export's rows only: without the odd one, COPY writes it
        _, _, usual = await _both(_actor(ws), "contacts", ListQuery(filters=[("name", "eq", "usual")],
                                                                    columns=query.columns))
        assert usual.method == "copy"


async def test_a_date_that_does_not_exist_fails_both_ways(db: Services) -> None:
    # bad input: a custom date spelled right that no calendar has, written straight to the table
    ws = await make_workspace("excopy-date")
    async with tenant_scope(ws.tenant_id) as tx:
        await _custom_fields(tx, "contacts", [("met", "Met", "date", [])])
        await tx.execute_query("""INSERT INTO contacts (name, custom) VALUES ('x', '{"met": "2026-02-30"}')""")
    plan = await plan_export(_actor(ws), "contacts", ListQuery(columns=["name", "custom.met"]), fmt="csv")
    with pytest.raises(ValueError):
        await _both_of(_actor(ws), plan)  # the Python writer: date.fromisoformat
    with pytest.raises(Exception, match="out of range"):  # COPY: PostgreSQL's cast
        async for _ in export_chunks(_actor(ws), plan, ["Name", "Met"], SHANGHAI):
            pass
    assert await _audit(ws, "contacts.exported") == []


# --- the bytes as they pass -------------------------------------------------------------------


def test_line_ends_become_crlf_outside_quoted_values_only() -> None:
    data = b'1,"a\nb",c\n2,"x""\n""y",\n3,plain,\n4,"\r\nz",q\n'
    for size in (1, 2, 3, 5, 7, len(data)):  # every way the bytes may be cut into chunks
        lines = CsvLines(single_column=False)
        out = b"".join(lines.feed(data[i:i + size]) for i in range(0, len(data), size)) + lines.close()
        assert out == b'1,"a\nb",c\r\n2,"x""\n""y",\r\n3,plain,\r\n4,"\r\nz",q\r\n' and lines.rows == 4
    single = CsvLines(single_column=True)
    assert single.feed(b'"\\."\nx\n""\n') == b'\\.\r\nx\r\n""\r\n'


async def test_the_api_streams_the_copy_and_records_the_export(data: dict[str, Any]) -> None:
    ws = data["ws"]
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.tenants SET time_zone = $2 WHERE id = $1", [ws.tenant_id, SHANGHAI])
    async with client(headers=await owner_token(ws)) as c:
        resp = await c.get("/api/v1/exports/contacts", params={"columns": "all", "sort": "name"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    python, _, _ = await _both(_actor(ws), "contacts", ListQuery(sort="name"), all_columns=True)
    assert resp.content == python, _diff(python, resp.content)
    assert _open_spools() == 0  # the download went through a spool file, closed now
    exported = await _audit(ws, "contacts.exported")
    assert exported[-1]["rows"] == 120 and exported[-1]["columns"][:2] == ["id", "name"]
    # the pages it read wrote no read entries: the export's two entries record it
    assert await _audit(ws, "contacts.read_sensitive") == []


async def test_a_background_csv_export_is_the_same_file(data: dict[str, Any]) -> None:
    ws = data["ws"]
    async with client(headers=await owner_token(ws)) as c:
        resp = await c.post("/api/v1/exports/jobs/contacts", params={"columns": "all", "sort": "-custom.score"})
    assert resp.status_code == 202, resp.text
    queued = resp.json()
    outcome = await execute(ws.tenant_id, queued["id"], time_zone=SHANGHAI)
    python, _, _ = await _both(_actor(ws), "contacts", ListQuery(sort="-custom.score"), all_columns=True)
    written = export_path(ws.tenant_id, queued["id"], "csv").read_bytes()
    assert written == python, _diff(python, written)
    async with tenant_scope(ws.tenant_id) as tx:
        row = (await tx.execute_query_dict("SELECT * FROM export_files WHERE id = $1", [queued["id"]]))[0]
    assert outcome.status == "done" and outcome.rows == row["rows_done"] == row["rows_total"] == 120


class _Watch:
    """An export's progress as the job's progress task keeps it (rows, cancelled)."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.rows = 0
        self.cancelled = False
        self.seen: list[int] = []
        self.cancel_after = cancel_after


@pytest.fixture(scope="module")
async def many(db: Services) -> Workspace:
    ws = await make_workspace("excopy-many")
    async with tenant_scope(ws.tenant_id) as tx:
        await tx.execute_query(
            "INSERT INTO contacts (name, email, owner_id, tags) SELECT '联系人 ' || n, 'c' || n || '@example.com',"
            " $1, ARRAY['t' || n % 10] FROM generate_series(1, 30000) AS n", [ws.identity_id])
    return ws


@pytest.mark.parametrize("sort", ["name", "-id"])
async def test_many_pages_are_the_same_bytes(many: Workspace, sort: str) -> None:
    # 30,000 rows: the Python writer reads 15 pages by keyset, COPY reads them in one go
    copied = await _same(_actor(many), "contacts", ListQuery(sort=sort), all_columns=True)
    assert copied.count(b"\r\n") == 30001


async def test_each_row_once_where_python_and_postgresql_lower_case_apart(db: Services) -> None:
    """Sorted by a text field, pages are read by keyset on lower(name); Python's str.lower() and
    PostgreSQL's lower() disagree on a few letters (İ), and then the row-by-row writer may read
    a page boundary's rows twice. One COPY reads each row once, in the list's order."""
    ws = await make_workspace("excopy-lower")
    async with tenant_scope(ws.tenant_id) as tx:
        await tx.execute_query(
            "INSERT INTO contacts (name) SELECT (ARRAY['İstanbul', 'istanbul', 'ISTANBUL', 'ß', 'SS', 'ǅ', 'Σ', 'ς',"
            " 'ﬃ', 'ffi'])[1 + n % 10] FROM generate_series(1, 4500) AS n")
        ordered = await tx.execute_query_dict("SELECT id FROM contacts ORDER BY lower(name) DESC, id DESC")
    plan = await plan_export(_actor(ws), "contacts", ListQuery(sort="-name", columns=["id"]), fmt="csv")
    outcome = CopyOutcome()
    copied = b"".join([c async for c in export_chunks(_actor(ws), plan, ["ID"], "UTC", outcome=outcome)])
    assert outcome.method == "copy" and outcome.rows == 4500
    assert copied.decode("utf-8-sig").split("\r\n")[1:-1] == [str(r["id"]) for r in ordered]


async def test_progress_counts_rows_as_they_pass_and_cancel_stops_the_copy(many: Workspace) -> None:
    actor = _actor(many)
    plan = await plan_export(actor, "contacts", ListQuery(), fmt="csv", all_columns=True)
    labels = [c.label for c in plan.columns]
    watch = _Watch()
    outcome = CopyOutcome()
    async for _ in export_chunks(actor, plan, labels, "UTC", progress=watch, outcome=outcome):
        watch.seen.append(watch.rows)
    assert outcome.method == "copy" and watch.rows == outcome.rows == 30000
    assert len(watch.seen) > 2 and watch.seen == sorted(watch.seen) and 0 < watch.seen[1] < 30000
    before = len(await _audit(many, "contacts.exported"))
    # a cancel seen while the COPY runs: the chunks stop, nothing more is recorded
    watch = _Watch()
    chunks = 0
    async for _ in export_chunks(actor, plan, labels, "UTC", progress=watch):
        chunks += 1
        watch.cancelled = chunks == 2
    assert chunks == 2 and 0 < watch.rows < 30000  # the header, then one chunk of rows
    assert len(await _audit(many, "contacts.exported")) == before
    await _no_copy_left(many)


async def _no_copy_left(ws: Workspace) -> None:
    """No COPY of this workspace still runs, and the next export works (the connection is fine)."""
    for _ in range(50):
        async with platform_tx() as tx:
            running = await tx.execute_query_dict(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT%' AND state = 'active'"
                " AND pid <> pg_backend_pid()")
        if running[0]["n"] == 0:
            break
        await asyncio.sleep(0.1)
    assert running[0]["n"] == 0
    _, copied, outcome = await _both(_actor(ws), "contacts", ListQuery(columns=["name"], filters=[
        ("name", "eq", "联系人 7")]))
    assert outcome.method == "copy" and copied.endswith(b"\r\n\xe8\x81\x94\xe7\xb3\xbb\xe4\xba\xba 7\r\n")


async def test_a_dropped_download_stops_the_copy_and_records_nothing(many: Workspace) -> None:
    actor = _actor(many)
    plan = await plan_export(actor, "contacts", ListQuery(), fmt="csv", all_columns=True)
    before = len(await _audit(many, "contacts.exported"))
    # bad input: the client goes away after the first rows
    chunks = export_chunks(actor, plan, [c.label for c in plan.columns], "UTC", spool=True)
    got = [await anext(chunks), await anext(chunks)]
    assert got[0].startswith(b"\xef\xbb\xbf") and got[1] and _open_spools() == 1
    await chunks.aclose()  # type: ignore[attr-defined]
    assert len(await _audit(many, "contacts.exported")) == before
    assert _open_spools() == 0
    await _no_copy_left(many)
    # the whole file, read slowly through the spool, is still the same bytes
    outcome = CopyOutcome()
    whole = b""
    async for chunk in export_chunks(actor, plan, [c.label for c in plan.columns], "UTC", spool=True,
                                     outcome=outcome):
        whole += chunk
        await asyncio.sleep(0)
    python, _, _ = await _both_of(actor, plan, "UTC")
    assert outcome.method == "copy" and whole == python
    with contextlib.suppress(Exception):
        await chunks.aclose()  # type: ignore[attr-defined]
