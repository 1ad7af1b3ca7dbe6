"""Imports end to end through the service and the runner (the job's own code, run in-process):
GBK files with Chinese headers, rejected rows with reasons, duplicates skipped / updated /
created, the dry run writes nothing, undo, rollback whole on a bad file, cancel, record scope,
plan limits, permissions and tenant isolation."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import pytest

from kith.platform.access.actor import Actor
from kith.platform.access.rules import PermissionDenied
from kith.platform.billing.actions import change_plan_locally
from kith.platform.db import tenant_scope
from kith.tenants.imports import service
from kith.tenants.imports.runner import execute
from kith.tenants.records.refusals import RecordsRefusal

from .conftest import Workspace
from .factories import add_member


def owner(ws: Workspace) -> Actor:
    return Actor(kind="user", tenant_id=ws.tenant_id, role="owner", identity_id=ws.identity_id, label=ws.email)


def _write(tmp_path: Path, name: str, rows: list[list[str]], encoding: str = "gb18030") -> Path:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    path = tmp_path / name
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


async def _import(actor: Actor, path: Path, *, object_type: str = "contacts", key: str | None = None,
                  mode: str = "skip", check: bool = False, mapping: dict[int, str] | None = None) -> dict[str, Any]:
    item = await service.create_import(actor, object_type, path, path.name)
    item = await service.configure_import(
        actor, item["id"], mapping=mapping if mapping is not None else {int(k): v for k, v in item["mapping"].items()},
        match_key=item["match_key"] if key is None else key, on_duplicate=mode)
    await service.start_import(actor, item["id"], check_only=check, enqueue=False)
    await execute(actor.tenant_id, "CN", item["id"], "check" if check else "import")
    return await service.get_import(actor, item["id"])


async def _contacts(ws: Workspace) -> dict[str, dict[str, Any]]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict("SELECT * FROM contacts ORDER BY id")
    return {r["name"]: r for r in rows}


HEADER = ["姓名", "手机", "邮箱", "公司", "职位", "标签"]


async def test_gbk_file_with_chinese_headers_is_mapped_checked_and_imported(workspace: Workspace,
                                                                            tmp_path: Path) -> None:
    actor = owner(workspace)
    path = _write(tmp_path, "客户.csv", [
        HEADER,
        ["张伟", "138 0013 8000", "zhang.wei@example.cn", "北京星辰科技有限公司", "经理", "重点客户，北京"],
        ["李娜", "13900139000", "li.na@example.cn", "", "", ""],
        ["王芳", "12", "wang@example.cn", "", "", ""],              # bad input: a phone with 2 digits
        ["赵强", "", "not-an-email", "", "", ""],                   # bad input: an invalid email
        ["", "13700137000", "nobody@example.cn", "", "", ""],       # bad input: no name
    ])
    created = await service.create_import(actor, "contacts", path, path.name)
    assert created["encoding"] in ("gb18030", "gbk")
    assert created["mapping"] == {"0": "name", "1": "phone", "2": "email", "3": "company_name", "4": "title",
                                  "5": "tags"}
    assert created["match_key"] == "email"

    checked = await _import(actor, path, check=True)
    assert checked["status"] == "checked"
    assert checked["counts"]["rows"] == 5 and checked["counts"]["created"] == 2
    assert checked["counts"]["rejected"] == 3
    assert await _contacts(workspace) == {}  # a check writes nothing

    done = await _import(actor, path)
    assert done["status"] == "imported", done
    assert done["counts"]["created"] == 2 and done["counts"]["rejected"] == 3
    reasons = {r["line"]: r["reason"] for r in done["rejected_sample"]}
    assert "Phone" in reasons[4] and "Email" in reasons[5] and "Name" in reasons[6]
    contacts = await _contacts(workspace)
    assert contacts["张伟"]["phone"] == "+86 138 0013 8000"
    assert contacts["张伟"]["tags"] == ["重点客户", "北京"]
    assert contacts["张伟"]["owner_id"] == workspace.identity_id
    rejected = service.rejected_file(workspace.tenant_id, done["id"])
    assert rejected is not None
    text = rejected.read_text(encoding="utf-8-sig")
    assert "not-an-email" in text and "Reason" in text.splitlines()[0]
    async with tenant_scope(workspace.tenant_id) as tx:
        audit = await tx.execute_query_dict(
            "SELECT action FROM audit_log WHERE object_type = 'imports' AND object_id = $1", [str(done["id"])])
    assert "contacts.import" in {a["action"] for a in audit}


async def test_duplicates_skip_update_create_and_undo(workspace: Workspace, tmp_path: Path) -> None:
    actor = owner(workspace)
    first = _write(tmp_path, "first.csv", [HEADER, ["张伟", "", "zhang.wei@example.cn", "", "经理", ""],
                                           ["Ada Lovelace", "", "ada@example.com", "", "", ""]])
    assert (await _import(actor, first))["counts"]["created"] == 2
    again = _write(tmp_path, "again.csv", [
        HEADER,
        ["张伟", "13800138000", "ZHANG.WEI@example.cn", "", "", ""],  # an existing email, other case
        ["Grace Hopper", "", "grace@example.com", "", "", ""],
        ["Grace H.", "", "grace@example.com", "", "总监", ""],      # the same email twice in the file
    ])
    skipped = await _import(actor, again, mode="skip")
    assert skipped["counts"]["created"] == 1 and skipped["counts"]["skipped"] == 1
    assert skipped["counts"]["duplicates_in_file"] == 1
    contacts = await _contacts(workspace)
    assert "Grace Hopper" in contacts and "Grace H." not in contacts  # skipping: the first row wins
    assert contacts["张伟"]["phone"] == ""

    updated = await _import(actor, again, mode="update")
    assert updated["counts"]["updated"] == 2, updated["counts"]
    contacts = await _contacts(workspace)
    assert contacts["张伟"]["phone"] == "+86 138 0013 8000"
    assert contacts["张伟"]["title"] == "经理"  # an empty cell leaves the field as it was
    assert "Grace H." in contacts and contacts["Grace H."]["title"] == "总监"  # updating: the last row wins

    # someone edits a field the import changed: undo keeps their edit and restores the rest
    async with tenant_scope(workspace.tenant_id) as tx:
        await tx.execute_query("UPDATE contacts SET title = '首席执行官' WHERE name = 'Grace H.'")
    await service.undo_import(actor, updated["id"], enqueue=False)
    await execute(workspace.tenant_id, "CN", updated["id"], "undo")
    after = await service.get_import(actor, updated["id"])
    assert after["status"] == "undone" and after["can_undo"] is False
    contacts = await _contacts(workspace)
    assert contacts["张伟"]["phone"] == ""
    assert "Grace Hopper" in contacts and contacts["Grace Hopper"]["title"] == "首席执行官"

    created = await _import(actor, again, mode="create")
    assert created["counts"]["created"] == 3
    with pytest.raises(RecordsRefusal) as refused:
        await service.undo_import(actor, skipped["id"] + 1000)
    assert refused.value.status == 404


async def test_undo_removes_created_records(workspace: Workspace, tmp_path: Path) -> None:
    actor = owner(workspace)
    path = _write(tmp_path, "a.csv", [HEADER, ["甲", "", "a@example.cn", "", "", ""],
                                      ["乙", "", "b@example.cn", "", "", ""]])
    done = await _import(actor, path)
    await service.undo_import(actor, done["id"], enqueue=False)
    outcome = await execute(workspace.tenant_id, "CN", done["id"], "undo")
    assert outcome.status == "undone" and outcome.counts["removed"] == 2
    assert await _contacts(workspace) == {}
    with pytest.raises(RecordsRefusal) as refused:  # an undone import cannot be undone again
        await service.undo_import(actor, done["id"], enqueue=False)
    assert refused.value.status == 409


async def test_a_file_that_breaks_midway_is_rolled_back_whole(workspace: Workspace, tmp_path: Path) -> None:
    actor = owner(workspace)
    names = ("张伟", "王芳", "李娜", "刘洋", "陈静")
    good = "\n".join(f"{names[i % 5]}{i},1380013{i:04d},c{i}@example.cn,北京星辰科技有限公司" for i in range(30_000))
    # bad input: 30,000 good GBK rows (more than one batch), then bytes that are not GBK at all
    path = tmp_path / "broken.csv"
    path.write_bytes(("姓名,手机,邮箱,公司\n" + good + "\n").encode("gb18030") + b"\xff\xff\xff,1,x@example.cn,\n")
    done = await _import(actor, path)
    assert done["status"] == "failed"
    assert "30002" in done["error"] or "30,002" in done["error"], done["error"]
    assert "rolled back whole" in done["outcome"]
    assert await _contacts(workspace) == {}


async def test_cancel_rolls_back_and_a_second_delivery_runs_nothing(workspace: Workspace, tmp_path: Path) -> None:
    actor = owner(workspace)
    path = _write(tmp_path, "c.csv", [HEADER, ["甲", "", "a@example.cn", "", "", ""]])
    item = await service.create_import(actor, "contacts", path, path.name)
    await service.start_import(actor, item["id"], check_only=False, enqueue=False)
    async with tenant_scope(workspace.tenant_id) as tx:  # as if Cancel was pressed while it ran
        await tx.execute_query("UPDATE imports SET status = 'running', heartbeat_at = now(),"
                               " cancel_requested = true WHERE id = $1", [item["id"]])
    outcome = await execute(workspace.tenant_id, "CN", item["id"], "import")
    assert outcome.status == "cancelled"
    assert (await service.get_import(actor, item["id"]))["status"] == "cancelled"
    assert await _contacts(workspace) == {}
    # arq delivers at least once: the job arriving again finds nothing queued
    again = await execute(workspace.tenant_id, "CN", item["id"], "import")
    assert again.status == "cancelled" and "nothing to run" in again.message
    # a queued import is cancelled at once
    await service.start_import(actor, item["id"], check_only=False, enqueue=False)
    cancelled = await service.cancel_import(actor, item["id"])
    assert cancelled["status"] == "cancelled"


async def test_two_deliveries_at_once_run_the_import_once(workspace: Workspace, tmp_path: Path) -> None:
    actor = owner(workspace)
    rows = [["姓名", "邮箱", "公司"],
            *([f"张伟{i}", f"c{i}@example.cn", "北京星辰科技有限公司"] for i in range(25_000))]
    path = _write(tmp_path, "twice.csv", rows)
    item = await service.create_import(actor, "contacts", path, path.name)
    await service.start_import(actor, item["id"], check_only=False, enqueue=False)
    first, second = await asyncio.gather(execute(workspace.tenant_id, "CN", item["id"], "import"),
                                         execute(workspace.tenant_id, "CN", item["id"], "import"))
    assert sorted([first.status, second.status]) in (["imported", "running"], ["imported", "imported"])
    async with tenant_scope(workspace.tenant_id) as tx:
        count = (await tx.execute_query_dict("SELECT count(*) AS n FROM contacts"))[0]["n"]
    assert count == 25_000


async def test_scope_permissions_and_isolation(workspace: Workspace, other_workspace: Workspace,
                                               tmp_path: Path) -> None:
    actor = owner(workspace)
    path = _write(tmp_path, "s.csv", [HEADER, ["张伟", "", "zhang.wei@example.cn", "", "", ""]])
    await _import(actor, path)
    # a manager imports with team scope: the owner is in none of their teams
    manager = await add_member(workspace, "manager")
    manager_actor = Actor(kind="user", tenant_id=workspace.tenant_id, role="manager", identity_id=manager.identity_id,
                          label=manager.email)
    changed = _write(tmp_path, "s2.csv", [HEADER, ["张伟", "", "zhang.wei@example.cn", "", "销售总监", ""]])
    done = await _import(manager_actor, changed, mode="update")
    assert done["counts"]["out_of_scope"] == 1 and done["counts"]["updated"] == 0
    assert (await _contacts(workspace))["张伟"]["title"] == ""  # the owner's contact is out of the manager's scope

    read_only = await add_member(workspace, "read_only")
    viewer = Actor(kind="user", tenant_id=workspace.tenant_id, role="read_only", identity_id=read_only.identity_id,
                   label=read_only.email)
    with pytest.raises(PermissionDenied) as denied:
        await service.create_import(viewer, "contacts", path, path.name)
    assert "import" in str(denied.value)

    stranger = owner(other_workspace)
    with pytest.raises(RecordsRefusal) as hidden:
        await service.get_import(stranger, done["id"])
    assert hidden.value.status == 404
    assert await _contacts(other_workspace) == {}


async def test_plan_contact_limit_refuses_the_whole_import(workspace: Workspace, tmp_path: Path) -> None:
    actor = owner(workspace)
    await change_plan_locally(actor, "free", "monthly")  # 500 contacts
    rows = [["Name", "Email"], *([f"Person {i}", f"p{i}@example.com"] for i in range(501))]
    done = await _import(actor, _write(tmp_path, "big.csv", rows, encoding="utf-8"))
    assert done["status"] == "failed"
    assert "500" in done["error"] and "contacts" in done["error"]
    assert await _contacts(workspace) == {}


async def test_bad_mappings_are_refused_with_reasons(workspace: Workspace, tmp_path: Path) -> None:
    actor = owner(workspace)
    path = _write(tmp_path, "m.csv", [["Name", "Email"], ["Ada", "ada@example.com"]], encoding="utf-8")
    item = await service.create_import(actor, "contacts", path, path.name)
    for mapping, key, mode, fragment in (
        ({0: "name", 1: "favourite_colour"}, "", "skip", "not a field"),   # bad input: an unknown field
        ({0: "name", 1: "name"}, "", "skip", "already filled"),             # bad input: one field twice
        ({1: "email"}, "", "skip", "name"),                                 # bad input: no name column
        ({0: "name"}, "email", "skip", "needs a column"),                   # bad input: key not mapped
        ({0: "name", 1: "email"}, "", "update", "find them by"),            # bad input: update without key
        ({0: "name", 1: "email"}, "email", "merge", "one of"),              # bad input: unknown choice
    ):
        with pytest.raises(RecordsRefusal) as refused:
            await service.configure_import(actor, item["id"], mapping=mapping, match_key=key, on_duplicate=mode)
        assert refused.value.status == 422 and fragment in refused.value.message, refused.value.message
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(RecordsRefusal) as refused:  # bad input: an empty file
        await service.create_import(actor, "contacts", empty, "empty.csv")
    assert "empty" in refused.value.message


async def test_remembered_mapping_and_companies_and_leads(workspace: Workspace, tmp_path: Path) -> None:
    actor = owner(workspace)
    path = _write(tmp_path, "odd.csv", [["Who", "Mail"], ["Ada", "ada@example.com"]], encoding="utf-8")
    item = await service.create_import(actor, "contacts", path, path.name)
    await service.configure_import(actor, item["id"], mapping={0: "name", 1: "email"}, match_key="email",
                                   on_duplicate="update")
    again = await service.create_import(actor, "contacts", path, path.name)
    assert again["mapping"] == {"0": "name", "1": "email"} and again["mapping_source"] == "remembered"
    assert again["on_duplicate"] == "update"

    companies = _write(tmp_path, "公司.csv", [["公司名称", "网站", "城市"],
                                              ["北京星辰科技有限公司", "xingchen.cn", "北京"],
                                              ["上海云图", "yuntu.example.cn", "上海"]])
    done = await _import(actor, companies, object_type="companies")
    assert done["status"] == "imported" and done["counts"]["created"] == 2, done
    contacts = _write(tmp_path, "c.csv", [["姓名", "公司"], ["张伟", "北京星辰科技有限公司"]])
    await _import(actor, contacts)
    linked = (await _contacts(workspace))["张伟"]
    assert linked["company_id"] is not None  # linked to the company record of that name
    # undoing the companies import keeps a company a contact now works for
    await service.undo_import(actor, done["id"], enqueue=False)
    outcome = await execute(workspace.tenant_id, "CN", done["id"], "undo")
    assert outcome.counts == {"removed": 1, "kept": 1, "restored": 0}

    leads = _write(tmp_path, "leads.csv", [["First Name", "Last Name", "Email", "Lead Status"],
                                           ["Grace", "Hopper", "grace@example.com", "Working - Contacted"]],
                   encoding="utf-8")
    done = await _import(actor, leads, object_type="leads")
    assert done["status"] == "imported", done
    async with tenant_scope(workspace.tenant_id) as tx:
        lead = (await tx.execute_query_dict("SELECT name, status FROM leads"))[0]
    assert lead == {"name": "Grace Hopper", "status": "contacted"}


async def test_marketing_consent_is_recorded_with_its_source(workspace: Workspace, tmp_path: Path) -> None:
    actor = owner(workspace)
    path = _write(tmp_path, "consent.csv", [["姓名", "邮箱", "营销许可"], ["张伟", "zw@example.cn", "同意"],
                                             ["李娜", "ln@example.cn", ""]])
    done = await _import(actor, path)
    assert done["mapping"]["2"] == "marketing_consent"
    contacts = await _contacts(workspace)
    assert contacts["张伟"]["marketing_consent"] == "granted"
    assert contacts["张伟"]["consent_source"] == f"import #{done['id']}"
    assert contacts["李娜"]["marketing_consent"] == "unknown" and contacts["李娜"]["consent_source"] == ""
    withdrawn = _write(tmp_path, "withdrawn.csv", [["姓名", "邮箱", "营销许可"], ["张伟", "zw@example.cn", "退订"]])
    again = await _import(actor, withdrawn, mode="update")
    assert again["counts"]["updated"] == 1
    after = (await _contacts(workspace))["张伟"]
    assert after["marketing_consent"] == "withdrawn" and after["unsubscribed_at"] is not None
    async with tenant_scope(workspace.tenant_id) as tx:
        events = await tx.execute_query_dict(
            "SELECT state, source FROM consent_events WHERE contact_id = $1 ORDER BY id", [after["id"]])
    assert [(e["state"], e["source"]) for e in events] == [
        ("granted", f"import #{done['id']}"), ("withdrawn", f"import #{again['id']}")]
    # undo of the update restores consent as it was, with its source
    await service.undo_import(actor, again["id"], enqueue=False)
    await execute(workspace.tenant_id, "CN", again["id"], "undo")
    restored = (await _contacts(workspace))["张伟"]
    assert restored["marketing_consent"] == "granted" and restored["unsubscribed_at"] is None
