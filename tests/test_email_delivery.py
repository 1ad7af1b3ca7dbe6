"""deliver() against a real SMTP server (aiosmtpd on loopback), and the dev outbox."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from kith.platform.config import reset_settings, restored_environment
from kith.platform.db import platform_tx
from kith.platform.email.delivery import EmailDeliveryError, deliver, queue_email
from kith.platform.email.models import OutboxEmail

from .conftest import Workspace


class SmtpSink:
    """aiosmtpd handler keeping every accepted message."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.logins: list[str | None] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope)
        self.logins.append(session.auth_data.login.decode() if session.auth_data else None)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_env(services: Any) -> Iterator[dict[str, str]]:
    """Point SMTP_* at loopback for one test; the environment and settings are restored after."""
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(free_port()), "SMTP_STARTTLS": "false",
           "SMTP_USERNAME": "", "SMTP_PASSWORD": ""}
    with restored_environment(*env):
        os.environ.update(env)
        reset_settings()
        yield env


def start_sink(port: int, **kwargs: Any) -> tuple[Controller, SmtpSink]:
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller, sink


async def queued(ws: Workspace, kind: str = "test") -> int:
    async with platform_tx() as tx:
        email_id = await queue_email(
            tx, tenant_id=ws.tenant_id, kind=kind, dedupe_key=f"{kind}:{secrets.token_hex(8)}",
            to=ws.email, subject="Your report", body_text="Three deals moved this week.\n",
        )
    assert email_id is not None
    return email_id


async def test_smtp_delivery_sends_once(workspace: Workspace, smtp_env: dict[str, str]) -> None:
    controller, sink = start_sink(int(smtp_env["SMTP_PORT"]))
    try:
        email_id = await queued(workspace)
        assert await deliver(email_id) == "sent"
        assert await deliver(email_id) == "already sent"  # a job that runs twice sends nothing more
    finally:
        controller.stop()

    assert len(sink.messages) == 1
    envelope = sink.messages[0]
    assert envelope.rcpt_tos == [workspace.email]
    message = message_from_bytes(envelope.original_content)
    assert message["To"] == workspace.email
    assert message["Subject"] == "Your report"
    assert message["Message-ID"].startswith(f"<outbox.{email_id}.")
    assert message.get_payload(decode=True).decode().replace("\r\n", "\n") == "Three deals moved this week.\n"
    row = await OutboxEmail.get(id=email_id)
    assert (row.status, row.error) == ("sent", "")
    assert row.sent_at is not None


async def test_smtp_login_when_username_given(workspace: Workspace, smtp_env: dict[str, str]) -> None:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"kith", b"s3cret")
        return AuthResult(success=ok, auth_data=data)

    os.environ.update({"SMTP_USERNAME": "kith", "SMTP_PASSWORD": "s3cret"})
    reset_settings()
    controller, sink = start_sink(
        int(smtp_env["SMTP_PORT"]), authenticator=authenticator, auth_require_tls=False
    )
    try:
        assert await deliver(await queued(workspace)) == "sent"
    finally:
        controller.stop()
    assert sink.logins == ["kith"]


async def test_refused_connection_marks_failed_then_retry_sends(
    workspace: Workspace, smtp_env: dict[str, str]
) -> None:
    port = smtp_env["SMTP_PORT"]  # nothing listens there yet
    email_id = await queued(workspace)
    with pytest.raises(EmailDeliveryError) as info:
        await deliver(email_id)
    row = await OutboxEmail.get(id=email_id)
    assert row.status == "failed"
    assert row.error.startswith(f"SMTP 127.0.0.1:{port}: SMTPConnectError:"), row.error
    assert str(info.value) == row.error
    assert row.sent_at is None

    # The failed attempt sent nothing, so the retry (arq re-running the job) may send.
    controller, sink = start_sink(int(port))
    try:
        assert await deliver(email_id) == "sent"
    finally:
        controller.stop()
    assert len(sink.messages) == 1
    row = await OutboxEmail.get(id=email_id)
    assert (row.status, row.error) == ("sent", "")


async def test_without_smtp_host_emails_land_in_dev_outbox(workspace: Workspace) -> None:
    email_id = await queued(workspace)
    assert await deliver(email_id) == "outbox"
    assert await deliver(email_id) == "already outbox"
    row = await OutboxEmail.get(id=email_id)
    assert row.status == "outbox" and row.tenant_id == workspace.tenant_id  # type: ignore[attr-defined]
    assert await deliver(10**12) == "missing"


async def test_queue_email_dedupes_on_key(workspace: Workspace) -> None:
    key = f"digest:{secrets.token_hex(8)}"
    ids = []
    for subject in ("first", "second"):
        async with platform_tx() as tx:
            ids.append(await queue_email(
                tx, tenant_id=workspace.tenant_id, kind="digest", dedupe_key=key,
                to=workspace.email, subject=subject, body_text="x",
            ))
    assert ids[0] is not None and ids[0] == ids[1]
    assert [r.subject for r in await OutboxEmail.filter(dedupe_key=key)] == ["first"]
