"""Privacy through the real app: encryption at rest and key rotation, crypto-shredded audit
diffs, data-subject export, erasure and marketing consent; one browser walk."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from playwright.async_api import expect

from kith.platform import crypto
from kith.platform.audit.entries import AuditFilter, list_entries
from kith.platform.audit.subjects import ERASED
from kith.platform.audit.verify import verify_tenant
from kith.platform.cli.keys import rotate_keys
from kith.platform.config import load_settings, reset_settings, restored_environment
from kith.platform.db import connect_raw, platform_tx, tenant_scope
from kith.platform.identity.totp import secret_context, verify_second_factor

from .browser import chromium
from .conftest import Workspace, make_workspace
from .factories import add_member, owner_token
from .live_server import web_server
from .web_helpers import assert_error, client, csrf_from, form_post, login

KITH = Path(sys.executable).with_name("kith")


def _new_key(kid: str) -> str:
    return f"{kid}:{base64.b64encode(os.urandom(32)).decode()}"


async def kith(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed `kith` script, with the test session's environment."""
    return await asyncio.to_thread(
        subprocess.run, [str(KITH), *args], env=dict(os.environ), capture_output=True, text=True, timeout=180)


async def _create(headers: dict[str, str], **values: Any) -> dict[str, Any]:
    async with client(headers=headers) as c:
        resp = await c.post("/api/v1/contacts", json=values)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _raw_audit(ws: Workspace) -> list[dict[str, Any]]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict(
            "SELECT seq, action, object_id, diff::text AS diff FROM audit_log ORDER BY seq")
    return [dict(r) for r in rows]


async def _decrypted_audit(ws: Workspace, object_id: int) -> list[Any]:
    async with tenant_scope(ws.tenant_id) as tx:
        page = await list_entries(tx, AuditFilter(object_type="contacts", object_id=str(object_id)), limit=200)
    return list(reversed(page.items))


# --- encryption ---------------------------------------------------------------------------------


def test_encryption_round_trip_and_every_failure_is_named() -> None:
    ring = crypto.parse_keys(_new_key("a1") + "," + _new_key("a0"))
    token = crypto.encrypt("JBSWY3DPEHPK3PXP", "identities.totp_secret:7", ring)
    assert token.startswith("kc1:a1:") and "JBSWY3DP" not in token
    assert crypto.decrypt(token, "identities.totp_secret:7", ring) == "JBSWY3DPEHPK3PXP"
    # two encryptions of one value differ (random nonce)
    assert crypto.encrypt("same", "ctx", ring) != crypto.encrypt("same", "ctx", ring)

    with pytest.raises(crypto.DecryptionError, match="copied from another row"):
        crypto.decrypt(token, "identities.totp_secret:8", ring)  # moved to another row
    with pytest.raises(crypto.DecryptionError, match="does not authenticate"):
        crypto.decrypt(token, "identities.totp_pending_secret:7", ring)  # another column
    body = token.rsplit(":", 1)[1]
    flipped = token[: -len(body)] + ("A" if body[5] != "A" else "B").join([body[:5], body[6:]])
    with pytest.raises(crypto.DecryptionError, match="does not authenticate"):
        crypto.decrypt(flipped, "identities.totp_secret:7", ring)  # tampered
    same_id_other_key = crypto.parse_keys(_new_key("a1"))
    with pytest.raises(crypto.DecryptionError, match="does not authenticate"):
        crypto.decrypt(token, "identities.totp_secret:7", same_id_other_key)  # wrong key
    with pytest.raises(crypto.DecryptionError, match="'a1', which is not in KITH_ENCRYPTION_KEYS"):
        crypto.decrypt(token, "identities.totp_secret:7", crypto.parse_keys(_new_key("b1")))
    with pytest.raises(crypto.DecryptionError, match="not a Kith ciphertext"):
        crypto.decrypt("JBSWY3DPEHPK3PXP", "identities.totp_secret:7", ring)
    # legacy plain values are read as they are; tokens are decrypted
    assert crypto.reveal("JBSWY3DPEHPK3PXP", "x", ring) == "JBSWY3DPEHPK3PXP"
    assert crypto.needs_rotation("JBSWY3DPEHPK3PXP", ring) and not crypto.needs_rotation(token, ring)

    for bad, words in (("", "holds no key"), ("k1", "id:base64key"), ("k1:" + "QUJD", "must be 32 bytes"),
                       (_new_key("k1") + "," + _new_key("k1"), "twice"), ("bad id:QUJD", "id:base64key")):
        with pytest.raises(crypto.KeyringError, match=words):
            crypto.parse_keys(bad)


def test_production_refuses_to_start_without_encryption_keys() -> None:
    names = ("KITH_ENV", "KITH_SECRET_KEY", "KITH_AUDIT_KEY", "KITH_ENCRYPTION_KEYS")
    with restored_environment(*names):
        os.environ.update({"KITH_ENV": "production", "KITH_SECRET_KEY": "s" * 40, "KITH_AUDIT_KEY": "a" * 40})
        os.environ.pop("KITH_ENCRYPTION_KEYS", None)
        with pytest.raises(RuntimeError, match="KITH_ENCRYPTION_KEYS must be set"):
            load_settings()
        os.environ["KITH_ENCRYPTION_KEYS"] = "k1:tooshort"
        with pytest.raises(crypto.KeyringError, match="32 bytes"):
            load_settings()
        os.environ["KITH_ENCRYPTION_KEYS"] = _new_key("k1")
        assert load_settings().encryption_keys.reveal().startswith("k1:")


# --- TOTP at rest, rotation ---------------------------------------------------------------------


async def _enrol_2fa(c: httpx.AsyncClient) -> str:
    page = await c.get("/account/security/2fa")
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text)
    assert secret, page.text[-500:]
    done = await c.post("/account/security/2fa", data={"code": pyotp.TOTP(secret.group(1)).now(),
                                                       "csrf_token": csrf_from(page.text)})
    assert done.status_code == 200, done.text[-800:]
    return secret.group(1)


async def _stored_secret(identity_id: int) -> str:
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict("SELECT totp_secret FROM public.identities WHERE id = $1", [identity_id])
    return str(rows[0]["totp_secret"])


async def _login_with_code(ws: Workspace, code: str) -> int:
    async with client() as c:
        first = await login(c, ws.email, ws.password)
        assert first.headers.get("location") == "/login/verify", first.status_code
        done = await form_post(c, "/login/verify", {"code": code})
        return done.status_code


def _use_keys(value: str) -> None:
    os.environ["KITH_ENCRYPTION_KEYS"] = value
    reset_settings()


async def _subject_key_prefixes(ws: Workspace) -> list[str]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict("SELECT wrapped_key FROM subject_keys")
    return [str(r["wrapped_key"]).split(":")[1] for r in rows]


async def test_totp_secrets_are_encrypted_and_rotation_reencrypts_everything(db: object) -> None:
    ws = await make_workspace("rot")
    headers = await owner_token(ws)
    contact = await _create(headers, name="Rotated Person", email="rotated@example.com", phone="+44 20 7946 0001")
    async with client(headers=headers) as c:
        assert (await c.patch(f"/api/v1/contacts/{contact['id']}", json={"notes": "secret note"})).status_code == 200
    async with client() as c:
        await login(c, ws.email, ws.password)
        secret = await _enrol_2fa(c)
    stored = await _stored_secret(ws.identity_id)
    assert stored.startswith("kc1:") and secret not in stored  # encrypted at rest

    # a legacy row, written before encryption existed: still read, and rotation encrypts it
    legacy = await make_workspace("rot-legacy")
    plain = pyotp.random_base32()
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.identities SET totp_secret = $2, totp_enabled_at = now() WHERE id = $1",
                               [legacy.identity_id, plain])
    assert await verify_second_factor(legacy.identity_id, pyotp.TOTP(plain).now()) == "totp"

    original = crypto.keyring().describe()
    new = _new_key(f"rot{secrets.token_hex(3)}")
    new_id = new.split(":", 1)[0]
    with restored_environment("KITH_ENCRYPTION_KEYS"):
        _use_keys(f"{new},{original}")
        # interrupted after its first batch (as by Ctrl-C): what committed stays, the rest is resumed
        seen: list[str] = []

        def interrupt(line: str) -> None:
            seen.append(line)
            if "re-encrypted" in line and "/" in line:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            await rotate_keys(batch=1, say=interrupt)
        async with platform_tx() as tx:
            rows = await tx.execute_query_dict(
                "SELECT count(*) FILTER (WHERE starts_with(totp_secret, $1)) AS done,"
                " count(*) FILTER (WHERE totp_secret IS NOT NULL AND NOT starts_with(totp_secret, $1)) AS left_"
                " FROM public.identities", [f"kc1:{new_id}:"])
        assert rows[0]["done"] == 1 and rows[0]["left_"] >= 1, rows

        report = await rotate_keys(batch=50, say=seen.append)
        assert not report.failed and report.rotated >= 2 and report.primary == new_id
        assert any("to re-encrypt" in line for line in seen) and any(" re-encrypted" in line for line in seen)
        again = await rotate_keys(say=seen.append)
        assert again.rotated == 0 and again.current == report.current + report.rotated  # idempotent
        assert set(await _subject_key_prefixes(ws)) == {new_id}
        assert (await _stored_secret(legacy.identity_id)).startswith(f"kc1:{new_id}:")

        # the old key removed: everything still reads with the new key alone
        _use_keys(new)
        assert await _login_with_code(ws, pyotp.TOTP(secret).at(time.time() + 30)) == 303
        assert await verify_second_factor(legacy.identity_id, pyotp.TOTP(plain).at(
            time.time() + 30)) == "totp"
        entries = await _decrypted_audit(ws, contact["id"])
        by_action = {e.action: e for e in entries}
        assert by_action["contact.create"].diff["email"] == [None, "rotated@example.com"]
        assert by_action["contact.update"].diff["notes"] == ["", "secret note"]
        # and with the old key alone nothing opens: the failure says which key is missing
        _use_keys(original)
        with pytest.raises(crypto.DecryptionError, match=f"'{new_id}', which is not in KITH_ENCRYPTION_KEYS"):
            crypto.decrypt(await _stored_secret(ws.identity_id), secret_context("totp_secret", ws.identity_id))

        # rotate back through the real command, so the rest of the suite keeps its key
        _use_keys(f"{original},{new}")
        done = await kith("keys", "rotate")
        assert done.returncode == 0, done.stderr
        assert "re-encrypting with key 'dev'" in done.stdout and "done:" in done.stdout
        assert re.search(r"done: [\d,]+ values re-encrypted, [\d,]+ already under key 'dev'", done.stdout)
        assert set(await _subject_key_prefixes(ws)) == {crypto.DEV_KEY_ID}


# --- crypto-shredding, export, erasure ----------------------------------------------------------


async def test_audit_diffs_are_encrypted_export_then_erase_keeps_the_chain(db: object) -> None:
    ws = await make_workspace("dsar")
    other = await make_workspace("dsar-other")
    headers = await owner_token(ws)
    contact = await _create(headers, name="王芳 Wang Fang", email="wang.fang@example.cn", phone="+86 138 0013 8000",
                            company_name="Northwind", notes="met at the fair", marketing_consent="granted",
                            consent_source="web form")
    cid = contact["id"]
    async with client(headers=headers) as c:
        patched = await c.patch(f"/api/v1/contacts/{cid}", json={"phone": "+86 138 0013 8001"})
        assert patched.status_code == 200, patched.text
    async with platform_tx() as tx:
        for tenant_id, status, address in ((ws.tenant_id, "sent", "Wang Fang <wang.fang@example.cn>"),
                                           (ws.tenant_id, "pending", "WANG.FANG@example.cn"),
                                           (other.tenant_id, "sent", "wang.fang@example.cn")):
            await tx.execute_query(
                "INSERT INTO public.outbox_emails (tenant_id, kind, dedupe_key, to_address, subject, body_text, status)"
                " VALUES ($1, 'campaign', $2, $3, 'Spring offer', 'Dear Wang Fang, ...', $4)",
                [tenant_id, f"test-{secrets.token_hex(6)}", address, status])

    # personal values are ciphertext in the table, clear text through the log's readers
    raw = [r for r in await _raw_audit(ws) if r["object_id"] == str(cid) and r["action"].startswith("contact.")]
    assert raw and not any("wang.fang" in r["diff"] or "Northwind" in r["diff"] or "8000" in r["diff"] for r in raw)
    async with client(headers=headers) as c:
        listed = await c.get("/api/v1/audit", params={"object_type": "contacts", "object_id": str(cid),
                                                      "action": "contact.update"})
    assert listed.json()["items"][0]["diff"]["phone"] == ["+86 138 0013 8000", "+86 138 0013 8001"]

    # the data-subject export
    async with client(headers=headers) as c:
        resp = await c.get(f"/api/v1/contacts/{cid}/export")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-disposition"] == f'attachment; filename="contact-{cid}.json"'
    export = resp.json()
    assert export["format"] == "kith.contact-export/1" and export["contact"]["name"] == "王芳 Wang Fang"
    assert export["contact"]["phone"] == "+86 138 0013 8001" and export["fields_withheld"] == []
    assert export["consent"]["marketing_consent"] == "granted"
    assert [(h["state"], h["source"]) for h in export["consent"]["history"]] == [("granted", "web form")]
    actions = [e["action"] for e in export["audit_entries"]]
    assert actions[:2] == ["contact.create", "contact.update"]
    assert export["audit_entries"][0]["diff"]["email"] == [None, "wang.fang@example.cn"]
    assert sorted(e["status"] for e in export["emails"]) == ["pending", "sent"]  # this workspace's only
    exported = [r for r in await _raw_audit(ws) if r["action"] == "contact.export"]
    assert len(exported) == 1 and "wang" not in exported[0]["diff"].lower() and "8001" not in exported[0]["diff"]

    # erasure
    async with client(headers=headers) as c:
        erased = await c.post(f"/api/v1/contacts/{cid}/erase")
        assert erased.status_code == 200, erased.text
        body = erased.json()
        assert body["name"] == f"Erased contact {cid}" and body["email"] == "" and body["phone"] == ""
        assert body["marketing_consent"] == "unknown" and body["erased_at"]
        found = await c.get("/api/v1/contacts", params={"q": "wang"})
        assert found.json()["items"] == []
        after = await c.get(f"/api/v1/contacts/{cid}/export")
    entries = await _decrypted_audit(ws, cid)
    create = next(e for e in entries if e.action == "contact.create")
    assert create.diff["email"] == [None, ERASED] and create.diff["name"] == [None, ERASED]
    erase = next(e for e in entries if e.action == "contact.erase")
    assert erase.diff["subject_key_destroyed"] is True and erase.diff["emails_removed"] == 1
    assert erase.diff["emails_scrubbed"] == 1 and erase.diff["consent_events_removed"] == 1
    assert "email" in erase.diff["cleared"]
    erase_raw = next(r for r in await _raw_audit(ws) if r["action"] == "contact.erase")
    assert "wang" not in erase_raw["diff"].lower() and "Northwind" not in erase_raw["diff"]
    export_after = after.json()
    assert export_after["consent"]["history"] == [] and export_after["emails"] == []
    assert all(ERASED in json.dumps(e["diff"]) for e in export_after["audit_entries"]
               if e["action"] in ("contact.create", "contact.update"))

    async with platform_tx() as tx:
        mine = await tx.execute_query_dict(
            "SELECT to_address, subject, body_text FROM public.outbox_emails"
            " WHERE tenant_id = $1 AND kind = 'campaign'", [ws.tenant_id])
        theirs = await tx.execute_query_dict(
            "SELECT to_address FROM public.outbox_emails WHERE tenant_id = $1 AND kind = 'campaign'", [other.tenant_id])
    assert [dict(r) for r in mine] == [{"to_address": "", "subject": "[erased]", "body_text": "[erased]"}]
    assert [r["to_address"] for r in theirs] == ["wang.fang@example.cn"]  # another workspace's record is its own

    # the chain still verifies, in process and through the command
    conn = await connect_raw()
    try:
        assert (await verify_tenant(conn, ws.tenant_id)).ok
    finally:
        await conn.close()
    verified = await kith("audit", "verify", "--tenant", ws.slug)
    assert verified.returncode == 0 and "is intact" in verified.stdout, (verified.stdout, verified.stderr)


async def test_export_applies_hidden_fields_and_record_scope(db: object) -> None:
    ws = await make_workspace("dsar-scope")
    owner = await owner_token(ws)
    async with client(headers=owner) as c:
        role = await c.post("/api/v1/roles", json={
            "name": "Exporter", "grants": {"contacts": ["view", "create", "edit", "export"]},
            "record_scope": {"contacts": "own"}, "hidden_fields": {"contacts": ["phone", "marketing_consent"]}})
        assert role.status_code == 201, role.text
    exporter = await add_member(ws, role.json()["key"])
    sales = await add_member(ws, "sales")
    theirs = await _create(owner, name="Owner's contact", phone="+44 20 7946 0002")
    async with client(headers=exporter.headers) as c:
        mine = await c.post("/api/v1/contacts", json={"name": "Mine", "email": "mine@example.com"})
        assert mine.status_code == 201
        refused = await c.post("/api/v1/contacts", json={"name": "x", "marketing_consent": "granted"})
        assert_error(refused, 403, "permission_denied")
    async with client(headers=owner) as c:
        await c.patch(f"/api/v1/contacts/{mine.json()['id']}",
                      json={"phone": "+44 20 7946 0003", "marketing_consent": "granted"})
    async with client(headers=exporter.headers) as c:
        resp = await c.get(f"/api/v1/contacts/{mine.json()['id']}/export")
        assert resp.status_code == 200, resp.text
        export = resp.json()
        assert "phone" not in export["contact"] and "marketing_consent" not in export["contact"]
        assert export["consent"] is None and export["fields_withheld"] == ["consent_at", "consent_source",
                                                                           "marketing_consent", "phone",
                                                                           "unsubscribed_at"]
        assert "7946 0003" not in resp.text and "granted" not in resp.text  # not even in audit diffs
        assert_error(await c.get(f"/api/v1/contacts/{theirs['id']}/export"), 404, "not_found")  # not in scope
        assert_error(await c.get("/api/v1/contacts/999999999/export"), 404)
    async with client(headers=sales.headers) as c:
        denied = assert_error(await c.get(f"/api/v1/contacts/{theirs['id']}/export"), 403, "permission_denied")
        assert denied["permission"] == "contacts: export"


async def test_consent_changes_are_recorded_and_bad_input_changes_nothing(db: object) -> None:
    ws = await make_workspace("consent")
    headers = await owner_token(ws)
    contact = await _create(headers, name="Consent Person", email="consent@example.com", marketing_consent="granted")
    cid = contact["id"]
    assert contact["consent_source"] == "api" and contact["consent_at"] and contact["unsubscribed_at"] is None
    async with client(headers=headers) as c:
        withdrawn = await c.patch(f"/api/v1/contacts/{cid}", json={"marketing_consent": "withdrawn",
                                                                   "consent_source": "unsubscribe link"})
        assert withdrawn.status_code == 200, withdrawn.text
        assert withdrawn.json()["consent_source"] == "unsubscribe link" and withdrawn.json()["unsubscribed_at"]
        before_audit = len(await _raw_audit(ws))
        bad = await c.patch(f"/api/v1/contacts/{cid}", json={"marketing_consent": "maybe"})
        assert_error(bad, 422, "invalid_input")
        assert "marketing_consent" in bad.json()["error"]["fields"]
        assert_error(await c.post(f"/api/v1/contacts/{cid + 100000}/erase"), 404, "not_found")
        assert_error(await c.post("/api/v1/contacts/abc/erase"), 404, "not_found")
        assert len(await _raw_audit(ws)) == before_audit  # nothing written
        unchanged = (await c.get(f"/api/v1/contacts/{cid}")).json()
        assert unchanged["marketing_consent"] == "withdrawn" and unchanged["name"] == "Consent Person"

    # the contact form, as a person
    async with client() as c:
        await login(c, ws.email, ws.password)
        edit = f"/t/{ws.slug}/contacts/{cid}/edit"
        page = await c.get(edit)
        assert 'name="marketing_consent"' in page.text and "from unsubscribe link" in page.text
        saved = await form_post(c, edit, {"name": "Consent Person", "email": "consent@example.com",
                                          "marketing_consent": "granted"})
        assert saved.status_code == 303, saved.text[-500:]
        wrong = await form_post(c, edit, {"name": "Consent Person", "marketing_consent": "maybe"})
        assert wrong.status_code == 422 and 'data-field="marketing_consent"' in wrong.text
        listing = await c.get(f"/t/{ws.slug}/contacts")
        assert "consent-granted" in listing.text

    async with tenant_scope(ws.tenant_id) as tx:
        events = await tx.execute_query_dict(
            "SELECT state, source, at, actor_kind, actor FROM consent_events WHERE contact_id = $1 ORDER BY id", [cid])
    assert [(e["state"], e["source"], e["actor_kind"]) for e in events] == [
        ("granted", "api", "token"), ("withdrawn", "unsubscribe link", "token"), ("granted", "web form", "user")]
    assert events[-1]["actor"] == ws.email and all(e["at"].tzinfo is not None for e in events)
    updates = [e for e in await _decrypted_audit(ws, cid) if e.action == "contact.update"]
    assert updates[0].diff["marketing_consent"] == ["granted", "withdrawn"]
    assert updates[0].diff["consent_source"] == ["api", "unsubscribe link"]


async def test_export_and_erase_from_the_contact_page_in_a_browser(db: object, tmp_path: Path) -> None:
    ws = await make_workspace("dsar-browser")
    contact = await _create(await owner_token(ws), name="Emily Carter", email="emily@northwind.example.com",
                            marketing_consent="granted")
    cid = contact["id"]
    with web_server() as base:
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(f"{base}/login")
            await page.fill("input[name=email]", ws.email)
            await page.fill("input[name=password]", ws.password)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/t/{ws.slug}/contacts")
            await expect(page.locator(f"tr[data-record-id='{cid}'] .badge")).to_have_text("marketing ok")
            await page.locator(f"tr[data-record-id='{cid}'] td.name a").click()
            await page.click("a:has-text('Edit')")
            async with page.expect_download() as download_info:
                await page.click("button:has-text('Export data (JSON)')")
            download = await download_info.value
            assert download.suggested_filename == f"contact-{cid}.json"
            saved = tmp_path / "export.json"
            await download.save_as(saved)
            exported = json.loads(saved.read_text(encoding="utf-8"))
            assert exported["contact"]["email"] == "emily@northwind.example.com"

            await page.click("text=Erase this person…")
            await expect(page.locator("h1")).to_have_text("Erase contact")
            await page.click("button:has-text('Erase permanently')")
            await expect(page.locator("[role=status]")).to_have_text("Contact erased.")
            await expect(page.locator(f"tr[data-record-id='{cid}'] td.name")).to_have_text(
                f"Erased contact {cid}")
    actions = [e.action for e in await _decrypted_audit(ws, cid)]
    assert "contact.export" in actions and actions[-1] == "contact.erase"
