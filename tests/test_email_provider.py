"""A workspace's own email provider (Settings › Email sending, /api/v1/email-provider): saved with
its secrets encrypted, used by that workspace's campaigns and test sends alone, checked against a
live SMTP sink, a closed port and moto's SES, refused with each bad field named, allowed to owners
and admins only, audited without secrets, re-encrypted by `kith keys rotate`.

Bad input tried: port 0, port "abc", port 70000, an empty host, a host with smtp:// or a port in
it, a bad region, a malformed access key id, a secret with a space, a password without a user
name, a user name without a password, a new host with the stored password left blank, SES
without its secret, a new access key id with the stored secret left blank, an unknown kind, an
unknown field; and stored data gone bad: a secret encrypted under a key the keyring no longer has.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import ValidationError

from kith.platform import crypto
from kith.platform.access.rules import BUILT_IN_ROLE_KEYS
from kith.platform.cli.keys import rotate_keys
from kith.platform.config import reset_settings, restored_environment
from kith.platform.db import platform_tx, tenant_scope
from kith.tenants.campaigns import campaigns as campaign_service
from kith.tenants.campaigns.provider_settings import (
    EmailProviderIn,
    check_provider,
    load_provider_settings,
    provider_factory,
    save_provider_settings,
    secret_context,
)
from kith.tenants.campaigns.providers import OutboxProvider, OutgoingEmail, ProviderError, SesProvider, SmtpProvider
from kith.tenants.campaigns.sending import send_campaign
from kith.tenants.campaigns.template_service import send_test

from .conftest import Workspace, make_workspace
from .factories import add_member
from .live_server import free_port
from .test_backups_s3 import moto_server
from .test_campaign_providers import stored_by_moto
from .test_campaigns import _campaign, _contacts, owner
from .web_helpers import assert_error, client, csrf_from, form_post, login

PASSWORD = "s3cret pass phrase"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


class Sink:
    """An SMTP server that keeps what it is given."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 2.0.0 Ok: queued"

    @property
    def recipients(self) -> list[str]:
        return sorted(r for e in self.envelopes for r in e.rcpt_tos)


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"kith", PASSWORD.encode())
    return AuthResult(success=ok, handled=False, auth_data=data)  # aiosmtpd answers 535 when not ok


def _start(login: bool = False) -> tuple[Sink, int, Controller]:
    handler = Sink()
    port = free_port()
    extra: dict[str, Any] = {"authenticator": _authenticator, "auth_require_tls": False} if login else {}
    controller = Controller(handler, hostname="127.0.0.1", port=port, **extra)
    controller.start()
    return handler, port, controller


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler, port, controller = _start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def login_sink() -> Iterator[tuple[Sink, int]]:
    handler, port, controller = _start(login=True)
    try:
        yield handler, port
    finally:
        controller.stop()


def smtp_settings(port: int, **changes: Any) -> EmailProviderIn:
    values: dict[str, Any] = {"kind": "smtp", "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_starttls": False}
    values.update(changes)
    return EmailProviderIn(**values)


async def stored_row(ws: Workspace) -> dict[str, Any]:
    async with tenant_scope(ws.tenant_id) as tx:
        rows = await tx.execute_query_dict("SELECT * FROM email_provider")
    assert len(rows) == 1
    return rows[0]


async def audit_entries(ws: Workspace) -> list[dict[str, Any]]:
    async with tenant_scope(ws.tenant_id) as tx:
        return await tx.execute_query_dict(
            "SELECT actor_id, object_type, diff::text AS diff FROM audit_log WHERE action = 'email_provider.update'"
            " ORDER BY seq")


async def _campaign_to(ws: Workspace, emails: list[str]) -> int:
    await _contacts(ws, [(f"客户 {e}", e, "granted", "customer") for e in emails])
    made = await _campaign(ws)
    await campaign_service.start_campaign(owner(ws), made["id"])
    return int(made["id"])


# --- saving and loading -----------------------------------------------------------------------

async def test_settings_are_saved_with_the_secrets_encrypted_and_read_without_them(
        workspace: Workspace, sink: tuple[Sink, int]) -> None:
    actor = owner(workspace)
    _, port = sink
    assert (await load_provider_settings(workspace.tenant_id)).kind == "platform"  # no row: the platform's

    saved = await save_provider_settings(actor, smtp_settings(port, smtp_username="kith", smtp_password=PASSWORD))
    assert (saved.kind, saved.smtp_host, saved.smtp_port, saved.smtp_username) == ("smtp", "127.0.0.1", port, "kith")
    assert saved.smtp_password_set and not saved.smtp_starttls and saved.updated_by_id == workspace.identity_id
    assert PASSWORD not in repr(saved) and not hasattr(saved, "smtp_password")
    row = await stored_row(workspace)
    token = row["smtp_password"]
    assert token.startswith("kc1:") and PASSWORD not in token
    assert crypto.decrypt(token, secret_context("smtp_password", workspace.tenant_id)) == PASSWORD

    # the password left blank ("unchanged") keeps the stored one; the same password typed again changes nothing
    kept = await save_provider_settings(actor, smtp_settings(port, smtp_username="kith", smtp_password="",
                                                             smtp_starttls=True))
    assert kept.smtp_password_set and kept.smtp_starttls
    await save_provider_settings(actor, smtp_settings(port, smtp_username="kith", smtp_password=PASSWORD,
                                                      smtp_starttls=True))
    assert (await stored_row(workspace))["smtp_password"] == token

    # switching to SES clears the SMTP settings and password; the SES secret is encrypted too
    ses = await save_provider_settings(actor, EmailProviderIn(
        kind="ses", ses_region="EU-WEST-1 ", ses_access_key_id=KEY_ID, ses_secret_access_key=SECRET_KEY))
    assert (ses.kind, ses.ses_region, ses.ses_access_key_id, ses.ses_secret_access_key_set) == (
        "ses", "eu-west-1", KEY_ID, True)
    row = await stored_row(workspace)
    assert row["smtp_password"] is None and row["smtp_host"] == "" and row["smtp_username"] == ""
    assert row["ses_secret_access_key"].startswith("kc1:") and SECRET_KEY not in row["ses_secret_access_key"]

    # the platform's email again: every setting and secret of the workspace's own provider is gone
    back = await save_provider_settings(actor, EmailProviderIn(kind="platform"))
    assert (back.kind, back.ses_region, back.ses_secret_access_key_set) == ("platform", "", False)
    row = await stored_row(workspace)
    assert row["ses_secret_access_key"] is None and row["ses_access_key_id"] == ""
    assert isinstance((await provider_factory(workspace.tenant_id))(), OutboxProvider)


async def test_a_secret_bound_to_one_workspace_does_not_open_in_another(workspace: Workspace,
                                                                        other_workspace: Workspace) -> None:
    await save_provider_settings(owner(workspace), smtp_settings(2525, smtp_username="kith", smtp_password=PASSWORD))
    token = (await stored_row(workspace))["smtp_password"]
    with pytest.raises(crypto.DecryptionError):  # the ciphertext is bound to its workspace
        crypto.decrypt(token, secret_context("smtp_password", other_workspace.tenant_id))


# --- bad input --------------------------------------------------------------------------------

async def test_bad_input_names_the_field_and_changes_nothing(workspace: Workspace) -> None:
    headers = {"Authorization": f"Bearer {(await _owner_token(workspace))}"}
    smtp = {"kind": "smtp", "smtp_host": "mail.example.com", "smtp_port": 587, "smtp_username": "kith",
            "smtp_password": PASSWORD}
    ses = {"kind": "ses", "ses_region": "us-east-1", "ses_access_key_id": KEY_ID, "ses_secret_access_key": SECRET_KEY}
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        ("port 0", {**smtp, "smtp_port": 0}, "smtp_port", "from 1 to 65535"),
        ("port abc", {**smtp, "smtp_port": "abc"}, "smtp_port", "from 1 to 65535"),
        ("port 70000", {**smtp, "smtp_port": 70000}, "smtp_port", "from 1 to 65535"),
        ("an empty host", {**smtp, "smtp_host": "  "}, "smtp_host", "host name of your SMTP server"),
        ("a URL for a host", {**smtp, "smtp_host": "smtp://mail.example.com"}, "smtp_host", "without smtp://"),
        ("a host with its port", {**smtp, "smtp_host": "mail.example.com:587"}, "smtp_host", "without a port"),
        ("a password without a user name", {**smtp, "smtp_username": ""}, "smtp_username", "give the user name"),
        ("a user name without a password", {**smtp, "smtp_password": ""}, "smtp_password", "password for this user"),
        ("a bad region", {**ses, "ses_region": "Frankfurt"}, "ses_region", "like us-east-1"),
        ("a region with spaces", {**ses, "ses_region": "us east 1"}, "ses_region", "like us-east-1"),
        ("a malformed access key id", {**ses, "ses_access_key_id": "akia-lower"}, "ses_access_key_id",
         "capital letters and digits"),
        ("a secret with a space", {**ses, "ses_secret_access_key": "abc def"}, "ses_secret_access_key",
         "cannot contain spaces"),
        ("SES without its secret", {**ses, "ses_secret_access_key": ""}, "ses_secret_access_key",
         "secret access key that belongs"),
        ("SES without a region", {**ses, "ses_region": ""}, "ses_region", "AWS region"),
        ("an unknown kind", {"kind": "sendgrid"}, "kind", "platform"),
        ("an unknown field", {"kind": "platform", "api_key": "x"}, "api_key", "Unknown field"),
    ]
    async with client(headers=headers) as c:
        for what, body, field, words in cases:
            refused = assert_error(await c.put("/api/v1/email-provider", json=body), 422, "invalid_input")
            assert field in refused["fields"], (what, refused)
            assert words.lower() in refused["fields"][field].lower(), (what, refused["fields"][field])
        assert (await c.get("/api/v1/email-provider")).json()["kind"] == "platform"  # nothing was saved
        async with tenant_scope(workspace.tenant_id) as tx:
            assert await tx.execute_query_dict("SELECT * FROM email_provider") == []
        assert await audit_entries(workspace) == []

        # saved, then the host changed with the password left blank: the stored password is not sent elsewhere
        assert (await c.put("/api/v1/email-provider", json=smtp)).status_code == 200
        token = (await stored_row(workspace))["smtp_password"]
        moved = assert_error(await c.put("/api/v1/email-provider", json={**smtp, "smtp_host": "evil.example.net",
                                                                          "smtp_password": ""}), 422)
        assert "only sent to the server it was given for" in moved["fields"]["smtp_password"]
        # the same host, the password blank: kept (and never returned)
        kept = await c.put("/api/v1/email-provider", json={**smtp, "smtp_port": 2525, "smtp_password": None})
        assert kept.status_code == 200 and kept.json()["smtp_password_set"] is True
        assert "smtp_password" not in kept.json() and PASSWORD not in kept.text and "kc1:" not in kept.text
        assert (await stored_row(workspace))["smtp_password"] == token
        assert (await stored_row(workspace))["smtp_host"] == "mail.example.com"

        # SES saved, then another access key id with the secret left blank: the stored secret is not its secret
        assert (await c.put("/api/v1/email-provider", json=ses)).status_code == 200
        other_key = assert_error(await c.put("/api/v1/email-provider", json={
            **ses, "ses_access_key_id": "AKIAI44QH8DHBEXAMPLE", "ses_secret_access_key": ""}), 422)
        assert "belongs to this access key ID" in other_key["fields"]["ses_secret_access_key"]
        region = await c.put("/api/v1/email-provider", json={**ses, "ses_region": "ap-southeast-1",
                                                             "ses_secret_access_key": ""})
        assert region.status_code == 200 and region.json()["ses_secret_access_key_set"] is True


async def _owner_token(ws: Workspace) -> str:
    from kith.platform.identity.tokens import create_api_token

    _, raw = await create_api_token(tenant_id=ws.tenant_id, identity_id=ws.identity_id, name="tests")
    return raw


async def test_the_page_shows_bad_fields_translated_and_never_a_password(workspace: Workspace,
                                                                        sink: tuple[Sink, int]) -> None:
    _, port = sink
    page = f"/t/{workspace.slug}/settings/email"
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        got = await c.get(page)
        assert got.status_code == 200 and "Email sending" in got.text and "the dev outbox" in got.text
        assert f'href="{page}" aria-current="page"' in got.text  # in the settings menu

        # bad input: port "abc" and an empty host, in one submit; the SES fields (not chosen) are not read
        bad = await form_post(c, page, {"kind": "smtp", "smtp_host": "127.0.0.1", "smtp_port": "abc",
                                        "ses_region": "not a region", "action": "save"})
        assert bad.status_code == 422
        assert re.search(r'data-field="smtp_port">The port must be a whole number from 1 to 65535', bad.text)
        assert 'data-field="ses_region"' not in bad.text and 'value="abc"' in bad.text
        empty = await form_post(c, page, {"kind": "smtp", "smtp_host": "", "smtp_port": "25", "action": "save"})
        assert empty.status_code == 422
        assert 'data-field="smtp_host">Give the host name of your SMTP server' in empty.text

        saved = await form_post(c, page, {"kind": "smtp", "smtp_host": "127.0.0.1", "smtp_port": str(port),
                                          "smtp_username": "kith", "smtp_password": PASSWORD, "action": "save"})
        assert saved.status_code == 303 and saved.headers["location"] == f"{page}?saved=1"
        shown = await c.get(f"{page}?saved=1")
        assert "Settings saved." in shown.text and "unchanged — leave blank to keep" in shown.text
        assert PASSWORD not in shown.text and "kc1:" not in shown.text
        assert 'name="smtp_password" value=""' in shown.text
        assert (await load_provider_settings(workspace.tenant_id)).smtp_starttls is False  # unticked box

    # the workspace in Chinese: labels and the field's message are translated
    async with platform_tx() as tx:
        await tx.execute_query("UPDATE public.tenants SET locale = 'zh-CN' WHERE id = $1", [workspace.tenant_id])
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        bad = await form_post(c, page, {"kind": "smtp", "smtp_host": "127.0.0.1", "smtp_port": "0", "action": "save"})
        assert bad.status_code == 422 and "邮件发送" in bad.text and "检查连接" in bad.text
        assert 'data-field="smtp_port">端口必须是 1 到 65535 之间的整数。' in bad.text


# --- sending: each workspace through its own server -------------------------------------------

async def test_each_workspace_sends_through_its_own_smtp_server(db: object) -> None:
    first, second, third = [await make_workspace(p) for p in ("mail-a", "mail-b", "mail-c")]
    sink_a, port_a, controller_a = _start()
    sink_b, port_b, controller_b = _start(login=True)
    try:
        await save_provider_settings(owner(first), smtp_settings(port_a))
        await save_provider_settings(owner(second), smtp_settings(port_b, smtp_username="kith",
                                                                  smtp_password=PASSWORD))
        campaigns = {}
        for ws, letter in ((first, "a"), (second, "b"), (third, "c")):
            campaigns[ws.slug] = await _campaign_to(ws, [f"{letter}{i}@example.org" for i in range(3)])
        for ws in (first, second, third):
            report = await send_campaign(ws.tenant_id, campaigns[ws.slug], seconds=30, senders=2)
            assert (report.sent, report.finished) == (3, True), report
    finally:
        controller_a.stop()
        controller_b.stop()
    # each workspace's mail reached its own server, and only its own
    assert sink_a.recipients == ["a0@example.org", "a1@example.org", "a2@example.org"]
    assert sink_b.recipients == ["b0@example.org", "b1@example.org", "b2@example.org"]
    # the workspace without settings used the platform's email: the dev outbox in tests
    async with platform_tx() as tx:
        rows = await tx.execute_query_dict(
            "SELECT tenant_id, to_address FROM public.outbox_emails WHERE kind = 'campaign' AND tenant_id = ANY($1)"
            " ORDER BY to_address", [[first.tenant_id, second.tenant_id, third.tenant_id]])
    assert [(r["tenant_id"], r["to_address"]) for r in rows] == [
        (third.tenant_id, f"c{i}@example.org") for i in range(3)]


async def test_a_test_send_uses_the_workspaces_own_server(workspace: Workspace, sink: tuple[Sink, int]) -> None:
    handler, port = sink
    await save_provider_settings(owner(workspace), smtp_settings(port))
    sent = await send_test(owner(workspace), content=("测试 {{ first_name }}", "<p>你好</p>", ""))
    assert sent.provider == "smtp" and handler.recipients == [workspace.email]


async def test_a_secret_no_key_opens_pauses_the_campaign_saying_what_to_do(workspace: Workspace) -> None:
    await save_provider_settings(owner(workspace), smtp_settings(2525, smtp_username="kith", smtp_password=PASSWORD))
    # stored data gone bad: the password encrypted under a key the keyring does not have
    lost = crypto.parse_keys(f"lost:{base64.b64encode(os.urandom(32)).decode()}")
    context = secret_context("smtp_password", workspace.tenant_id)
    async with tenant_scope(workspace.tenant_id) as tx:
        await tx.execute_query("UPDATE email_provider SET smtp_password = $1",
                               [crypto.encrypt(PASSWORD, context, lost)])
    try:
        campaign_id = await _campaign_to(workspace, ["ada@example.org"])
        report = await send_campaign(workspace.tenant_id, campaign_id, seconds=10, senders=1)
        assert report.sent == 0 and "cannot be decrypted" in report.stopped
        paused = await campaign_service.get_campaign(owner(workspace), campaign_id)
        assert paused["status"] == "paused" and "enter it again in Settings › Email sending" in paused["paused_reason"]
        checked = await check_provider(owner(workspace))
        assert not checked.ok and "cannot be decrypted" in checked.message
    finally:
        # the way out the message gives (and `kith keys rotate` elsewhere in the suite finds nothing unreadable)
        await save_provider_settings(owner(workspace), smtp_settings(2525, smtp_username="kith",
                                                                     smtp_password=PASSWORD))
    assert (await check_provider(owner(workspace))).message.startswith("the mail server at 127.0.0.1:2525")
    await save_provider_settings(owner(workspace), EmailProviderIn(kind="platform"))


# --- Check connection -------------------------------------------------------------------------

async def test_check_connection_reports_the_servers_words(workspace: Workspace, login_sink: tuple[Sink, int]) -> None:
    _, port = login_sink
    actor = owner(workspace)
    outbox = await check_provider(actor)  # the platform's email in tests: the dev outbox
    assert outbox.ok and outbox.kind == "outbox" and "/dev/outbox" in outbox.message

    await save_provider_settings(actor, smtp_settings(port, smtp_username="kith", smtp_password=PASSWORD))
    ok = await check_provider(actor)
    assert ok.ok and ok.kind == "smtp", ok
    assert ok.message.startswith(f"Connected to 127.0.0.1:{port}, signed in as kith")

    # settings being edited are checked without being saved: a wrong password, then a closed port
    wrong = await check_provider(actor, smtp_settings(port, smtp_username="kith", smtp_password="wrong"))
    assert not wrong.ok and f"127.0.0.1:{port} refused the login of 'kith': 535" in wrong.message
    assert "SMTP_USERNAME" not in wrong.message  # the workspace's fields, not the platform's variables
    closed = free_port()
    down = await check_provider(actor, smtp_settings(closed))
    assert not down.ok and f"the mail server at 127.0.0.1:{closed} refused the connection" in down.message
    assert not down.message.endswith("will retry")
    tls = await check_provider(actor, smtp_settings(port, smtp_username="kith", smtp_starttls=True))
    assert not tls.ok and "STARTTLS" in tls.message  # asked for, not offered by the sink
    assert (await stored_row(workspace))["smtp_port"] == port and (await check_provider(actor)).ok

    # the API checks what is saved
    async with client(headers={"Authorization": f"Bearer {await _owner_token(workspace)}"}) as c:
        answer = await c.post("/api/v1/email-provider/check")
    assert answer.status_code == 200 and answer.json()["ok"] is True and answer.json()["kind"] == "smtp"


async def test_private_addresses_are_refused_where_the_platform_says_so(workspace: Workspace,
                                                                        sink: tuple[Sink, int]) -> None:
    handler, port = sink
    actor = owner(workspace)
    await save_provider_settings(actor, smtp_settings(port, smtp_host="localhost"))  # allowed in tests
    with restored_environment("KITH_WORKSPACE_SMTP_PRIVATE"):
        os.environ["KITH_WORKSPACE_SMTP_PRIVATE"] = "false"  # as production's default
        reset_settings()
        try:
            # bad input: the platform's own network, as an address and as a name that resolves to it
            for host in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "192.168.0.25", "100.64.0.1"):
                with pytest.raises(ValidationError, match="private and local addresses are not allowed"):
                    smtp_settings(port, smtp_host=host)
            async with client(headers={"Authorization": f"Bearer {await _owner_token(workspace)}"}) as c:
                refused = assert_error(await c.put("/api/v1/email-provider", json={
                    "kind": "smtp", "smtp_host": "10.1.2.3", "smtp_port": 25}), 422, "invalid_input")
            assert "private and local addresses" in refused["fields"]["smtp_host"]
            assert (await stored_row(workspace))["smtp_host"] == "localhost"  # unchanged
            checked = await check_provider(actor)
            assert not checked.ok and "the mail server localhost resolves to" in checked.message
            assert "is not a public address" in checked.message
            factory = await provider_factory(workspace.tenant_id)
            provider = factory()
            with pytest.raises(ProviderError, match="not a public address"):
                await provider.send(OutgoingEmail(to="ada@example.org", from_email="news@shop.example.com",
                                                  from_name="", reply_to="", subject="Hi", html="", text="Hi",
                                                  headers={}, message_id="<c1.r1.1@kith>"))
            assert handler.envelopes == [] and provider.connections == 0  # never connected
        finally:
            reset_settings()
    assert (await check_provider(actor)).ok  # allowed again (tests, dev)


async def test_the_platforms_email_is_named_and_checked(workspace: Workspace, sink: tuple[Sink, int]) -> None:
    _, port = sink
    names = ("SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_STARTTLS", "KITH_SES_REGION")
    with restored_environment(*names):
        os.environ.update({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_USERNAME": "",
                           "SMTP_STARTTLS": "false"})
        os.environ.pop("KITH_SES_REGION", None)
        reset_settings()
        found = await load_provider_settings(workspace.tenant_id)
        assert (found.kind, found.platform_kind, found.platform_where) == ("platform", "smtp", f"127.0.0.1:{port}")
        checked = await check_provider(owner(workspace))
        assert checked.ok and checked.message.startswith(f"Connected to 127.0.0.1:{port}")
        async with client() as c:
            await login(c, workspace.email, workspace.password)
            page = await c.get(f"/t/{workspace.slug}/settings/email")
        assert f"Currently the SMTP server 127.0.0.1:{port}." in page.text
        os.environ["KITH_SES_REGION"] = "eu-west-1"
        reset_settings()
        assert (await load_provider_settings(workspace.tenant_id)).platform_where == "eu-west-1"


async def test_the_page_checks_the_form_and_shows_the_answer(workspace: Workspace, sink: tuple[Sink, int]) -> None:
    _, port = sink
    page = f"/t/{workspace.slug}/settings/email"
    closed = free_port()
    async with client() as c:
        await login(c, workspace.email, workspace.password)
        ok = await form_post(c, page, {"kind": "smtp", "smtp_host": "127.0.0.1", "smtp_port": str(port),
                                       "action": "check"})
        assert ok.status_code == 200 and 'data-check="ok"' in ok.text and "The connection works." in ok.text
        assert f"Connected to 127.0.0.1:{port}" in ok.text and f'value="{port}"' in ok.text
        failed = await form_post(c, page, {"kind": "smtp", "smtp_host": "127.0.0.1", "smtp_port": str(closed),
                                           "action": "check"})
        assert 'data-check="failed"' in failed.text and f"127.0.0.1:{closed}" in failed.text
    assert (await load_provider_settings(workspace.tenant_id)).kind == "platform"  # a check saves nothing


# --- Amazon SES (moto) ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ses_endpoint() -> Iterator[str]:
    with restored_environment("KITH_SES_ENDPOINT_URL"), moto_server() as endpoint:
        os.environ["KITH_SES_ENDPOINT_URL"] = endpoint  # the platform's endpoint: where workspaces' SES is reached
        reset_settings()
        boto3.client("ses", endpoint_url=endpoint, region_name="eu-west-1", aws_access_key_id=KEY_ID,
                     aws_secret_access_key=SECRET_KEY).verify_email_identity(EmailAddress="news@example.com")
        yield endpoint


async def test_ses_settings_are_checked_and_used_with_the_workspaces_own_key(workspace: Workspace,
                                                                             ses_endpoint: str) -> None:
    actor = owner(workspace)
    await save_provider_settings(actor, EmailProviderIn(kind="ses", ses_region="eu-west-1", ses_access_key_id=KEY_ID,
                                                        ses_secret_access_key=SECRET_KEY))
    provider = (await provider_factory(workspace.tenant_id))()
    assert isinstance(provider, SesProvider)
    credentials = provider.client._request_signer._credentials  # the workspace's key, not boto3's chain
    assert (credentials.access_key, credentials.secret_key) == (KEY_ID, SECRET_KEY)
    await provider.close()

    checked = await check_provider(actor)
    assert checked.ok and checked.kind == "ses", checked
    assert checked.message == f"{ses_endpoint} accepted the credentials. Verified: news@example.com."

    campaign_id = await _campaign_to(workspace, ["ada@example.org", "grace@example.org"])
    report = await send_campaign(workspace.tenant_id, campaign_id, seconds=30, senders=2)
    assert (report.sent, report.finished) == (2, True), report
    async with tenant_scope(workspace.tenant_id) as tx:
        ids = [r["message_id"] for r in await tx.execute_query_dict(
            "SELECT message_id FROM campaign_recipients WHERE campaign_id = $1", [campaign_id])]
    stored = stored_by_moto(ses_endpoint)
    assert set(ids) <= set(stored)  # SES's own message ids, kept by moto
    # moto lists a raw message's To header and its envelope recipient: one address per email
    assert sorted(set(stored[i]["destinations"]).pop() for i in ids) == ["ada@example.org", "grace@example.org"]
    assert all(len(set(stored[i]["destinations"])) == 1 for i in ids)


async def test_ses_credentials_refused_are_reported(workspace: Workspace) -> None:
    data = EmailProviderIn(kind="ses", ses_region="eu-west-1", ses_access_key_id=KEY_ID,
                           ses_secret_access_key=SECRET_KEY)
    with restored_environment("KITH_SES_ENDPOINT_URL"), moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as strict:
        os.environ["KITH_SES_ENDPOINT_URL"] = strict  # moto checking credentials: this key is not one of its users
        reset_settings()
        refused = await check_provider(owner(workspace), data)
    assert not refused.ok and refused.message.startswith(f"{strict} refused Kith's AWS credentials (HTTP 403)")
    assert "the access key in Settings › Email sending" in refused.message
    assert "ses:ListEmailIdentities" in refused.message and SECRET_KEY not in refused.message
    dead = f"http://127.0.0.1:{free_port()}"
    with restored_environment("KITH_SES_ENDPOINT_URL"):
        os.environ["KITH_SES_ENDPOINT_URL"] = dead
        reset_settings()
        unreachable = await check_provider(owner(workspace), data)
    assert not unreachable.ok and unreachable.message.startswith(f"cannot reach {dead} (")


# --- permissions and audit --------------------------------------------------------------------

async def test_only_settings_managers_reach_the_page_and_the_api(workspace: Workspace) -> None:
    calls = (("GET", "/api/v1/email-provider", None), ("PUT", "/api/v1/email-provider", {"kind": "platform"}),
             ("POST", "/api/v1/email-provider/check", None))
    allowed = []
    for role in BUILT_IN_ROLE_KEYS:
        member = await add_member(workspace, role)
        async with client(headers=member.headers) as c:
            answers = [await c.request(method, path, json=body) for method, path, body in calls]
        if all(a.status_code == 200 for a in answers):
            allowed.append(role)
            continue
        for answer in answers:
            denied = assert_error(answer, 403, "permission_denied")
            assert denied["permission"] == "workspace: manage_settings"
    assert allowed == ["owner", "admin"]
    sales = await add_member(workspace, "sales")
    page = f"/t/{workspace.slug}/settings/email"
    async with client() as c:
        await login(c, sales.email, sales.password)
        assert (await c.get(page)).status_code == 403
        contacts = await c.get(f"/t/{workspace.slug}/contacts")
        refused = await c.post(page, data={"kind": "smtp", "smtp_host": "evil.example.net", "smtp_port": "25",
                                           "action": "save", "csrf_token": csrf_from(contacts.text)})
        assert refused.status_code == 403
    assert (await load_provider_settings(workspace.tenant_id)).kind == "platform"


async def test_the_audit_entry_names_changed_fields_never_secrets(workspace: Workspace) -> None:
    actor = owner(workspace)
    await save_provider_settings(actor, smtp_settings(2525, smtp_username="kith", smtp_password=PASSWORD))
    await save_provider_settings(actor, smtp_settings(2525, smtp_username="kith", smtp_password=""))  # no change
    await save_provider_settings(actor, smtp_settings(2526, smtp_username="kith", smtp_password="n3w password"))
    await save_provider_settings(actor, EmailProviderIn(kind="ses", ses_region="us-east-1", ses_access_key_id=KEY_ID,
                                                        ses_secret_access_key=SECRET_KEY))
    entries = await audit_entries(workspace)
    assert len(entries) == 3 and {e["object_type"] for e in entries} == {"email_provider"}
    assert {e["actor_id"] for e in entries} == {str(workspace.identity_id)}
    for entry in entries:
        for secret in (PASSWORD, "n3w password", SECRET_KEY, "kc1:"):
            assert secret not in entry["diff"], entry
    first, second, third = (json.loads(e["diff"]) for e in entries)
    assert first["kind"] == ["platform", "smtp"] and first["smtp_host"] == ["", "127.0.0.1"]
    assert first["smtp_password"] == [None, "new value"]
    assert second == {"smtp_port": [2525, 2526], "smtp_password": ["set", "new value"]}
    assert third["kind"] == ["smtp", "ses"] and third["smtp_password"] == ["set", None]
    assert third["ses_secret_access_key"] == [None, "new value"] and third["ses_access_key_id"] == ["", KEY_ID]


# --- key rotation -----------------------------------------------------------------------------

async def test_key_rotation_reencrypts_the_providers_secrets(db: object) -> None:
    port = 2525  # nothing is sent: only what is stored matters
    other = await make_workspace("rot-mail")
    await save_provider_settings(owner(other), EmailProviderIn(kind="ses", ses_region="us-east-1",
                                                               ses_access_key_id=KEY_ID,
                                                               ses_secret_access_key=SECRET_KEY))
    login_ws = await make_workspace("rot-login")
    await save_provider_settings(owner(login_ws), smtp_settings(port, smtp_username="kith", smtp_password=PASSWORD))
    original = crypto.keyring().describe()
    new_id = f"mail{secrets.token_hex(3)}"
    new = f"{new_id}:{base64.b64encode(os.urandom(32)).decode()}"
    with restored_environment("KITH_ENCRYPTION_KEYS"):
        os.environ["KITH_ENCRYPTION_KEYS"] = f"{new},{original}"
        reset_settings()
        seen: list[str] = []
        report = await rotate_keys(say=seen.append)
        assert not report.failed
        assert any(f"t_{other.tenant_id} ({other.slug}) email_provider: 1 re-encrypted" == line for line in seen)
        assert (await stored_row(other))["ses_secret_access_key"].startswith(f"kc1:{new_id}:")
        assert (await stored_row(login_ws))["smtp_password"].startswith(f"kc1:{new_id}:")
        assert (await rotate_keys(say=seen.append)).rotated == 0  # idempotent
        os.environ["KITH_ENCRYPTION_KEYS"] = new  # the old key removed: the secrets still open
        reset_settings()
        provider = (await provider_factory(login_ws.tenant_id))()
        assert isinstance(provider, SmtpProvider) and provider._password == PASSWORD
        # back under the suite's key, so later tests read what they write
        os.environ["KITH_ENCRYPTION_KEYS"] = f"{original},{new}"
        reset_settings()
        assert not (await rotate_keys(say=seen.append)).failed
    assert (await stored_row(login_ws))["smtp_password"].startswith(f"kc1:{crypto.keyring().primary}:")
