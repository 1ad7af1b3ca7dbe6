"""Logs and Sentry: JSON lines with the bound context; Sentry events tagged and scrubbed.

Sentry is the real sentry-sdk sending to a loopback HTTP endpoint; logging is checked in
a subprocess, so this test process's logging configuration stays pytest's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sentry_sdk

from kith.platform.config import Secret, get_settings
from kith.platform.observability import (
    bind_context,
    clear_context,
    init_sentry,
    redact,
    scrub_event,
    shutdown_sentry,
)
from tests.conftest import Services


class SentrySink:
    """A loopback stand-in for Sentry's ingest endpoint: keeps every envelope it gets."""

    def __init__(self) -> None:
        self.envelopes: list[bytes] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding:
                    raise AssertionError(f"unexpected Content-Encoding {encoding!r}")
                sink.envelopes.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def events(self) -> list[dict[str, Any]]:
        found = []
        for raw in self.envelopes:
            lines = raw.split(b"\n")
            # envelope header, then (item header, payload) pairs
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    found.append(json.loads(payload))
        return found


@pytest.fixture
def sentry_sink() -> Iterator[SentrySink]:
    sink = SentrySink()
    sink.thread.start()
    try:
        yield sink
    finally:
        shutdown_sentry()
        clear_context()
        sink.server.shutdown()
        sink.server.server_close()


def test_sentry_event_is_tagged_and_scrubbed(services: Services, sentry_sink: SentrySink) -> None:
    settings = dataclasses.replace(
        get_settings(), sentry_dsn=Secret(f"http://public@127.0.0.1:{sentry_sink.port}/1")
    )
    assert init_sentry(settings, "test") is True
    # Built from parts so the literal values never appear in this file's source lines,
    # which Sentry sends as the frame's context.
    email = "alice.jones" + "@" + "example.com"
    phone = "+1 415 " + "555 " + "0100"
    bind_context(tenant="acme", request_id="r-1")
    try:
        raise ValueError(f"could not import contact {email}, phone {phone}")
    except ValueError as exc:
        sentry_sdk.capture_exception(exc)
    sentry_sdk.flush(timeout=5)

    events = sentry_sink.events()
    assert len(events) == 1, sentry_sink.envelopes
    event = events[0]
    assert event["tags"]["tenant"] == "acme"
    assert event["tags"]["request_id"] == "r-1"
    assert event["tags"]["component"] == "test"
    assert event["exception"]["values"][0]["value"] == "could not import contact [email], phone [phone]"
    raw = b"".join(sentry_sink.envelopes).decode()
    for secret in (email, phone, "555 0100", "4155550100"):
        assert secret not in raw


async def test_concurrent_tasks_keep_their_own_sentry_tags(
    services: Services, sentry_sink: SentrySink
) -> None:
    settings = dataclasses.replace(
        get_settings(), sentry_dsn=Secret(f"http://public@127.0.0.1:{sentry_sink.port}/1")
    )
    assert init_sentry(settings, "worker")
    both_bound = asyncio.Barrier(2)

    async def job(slug: str) -> None:
        bind_context(tenant=slug, job="report")
        await both_bound.wait()  # the other task has bound its tenant by now
        sentry_sdk.capture_message(f"failed for {slug}")

    await asyncio.gather(asyncio.create_task(job("acme")), asyncio.create_task(job("globex")))
    sentry_sdk.flush(timeout=5)
    tags = sorted((e["message"], e["tags"]["tenant"]) for e in sentry_sink.events())
    assert tags == [("failed for acme", "acme"), ("failed for globex", "globex")]


def test_sentry_is_off_without_dsn(services: Services) -> None:
    assert get_settings().sentry_dsn.reveal() == ""
    assert init_sentry(get_settings(), "test") is False
    assert not sentry_sdk.get_client().is_active()


def test_scrub_event_drops_request_secrets_and_user_details() -> None:
    event: Any = {
        "request": {
            "url": "http://kith.test/t/acme/contacts?q=bob%40example.com",
            "query_string": "q=bob%40example.com",
            "headers": {"Authorization": "Bearer abc", "Cookie": "kith_session=xyz", "User-Agent": "ua"},
            "cookies": {"kith_session": "xyz"},
            "data": {"email": "bob@example.com"},
            "env": {"REMOTE_ADDR": "203.0.113.9"},
        },
        "user": {"id": "7", "email": "bob@example.com", "ip_address": "203.0.113.9", "username": "bob"},
        "breadcrumbs": {
            "values": [{"message": "mail to bob@example.com", "data": {"to": "+44 20 7946 0958"}}]
        },
        "logentry": {"message": "failed for %s", "params": ["bob@example.com"]},
    }
    scrubbed: Any = scrub_event(event, {})
    assert scrubbed["request"]["headers"] == {"User-Agent": "ua"}
    assert "cookies" not in scrubbed["request"] and "data" not in scrubbed["request"]
    assert "env" not in scrubbed["request"]
    assert scrubbed["request"]["query_string"] == "q=[email]"
    assert scrubbed["user"] == {"id": "7"}
    assert scrubbed["breadcrumbs"]["values"][0] == {"message": "mail to [email]", "data": {"to": "[phone]"}}
    assert scrubbed["logentry"]["params"] == ["[email]"]
    assert "bob" not in json.dumps(scrubbed).replace('"id": "7"', "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to a.b+c@mail.example.org today", "write to [email] today"),
        ("call (415) 555-0100 or 020 7946 0958", "call [phone] or [phone]"),
        ("tenant 12 is suspended", "tenant 12 is suspended"),
        ("at 2024-05-01 12:00:00", "at 2024-05-01 12:00:00"),
        ("connect to 10.0.0.12:5432 failed", "connect to 10.0.0.12:5432 failed"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


_LOGGING_SCRIPT = """
import logging
from kith.platform.config import get_settings
from kith.platform.observability import bind_context, configure_logging, get_logger
settings = get_settings()
configure_logging(settings, "web")
configure_logging(settings, "web")  # idempotent: still one handler, one line per event
bind_context(tenant="acme", request_id="r-1")
get_logger("kith.web").info("request", method="GET", path="/t/acme/contacts", status=200, duration_ms=1.5)
logging.getLogger("uvicorn.error").warning("from the standard library %s", "too")
get_logger("kith.web").debug("below the level")
"""


def test_json_logging_has_bound_context(services: Services) -> None:
    env = {**os.environ, "KITH_LOG_FORMAT": "json", "KITH_LOG_LEVEL": "info"}
    out = subprocess.run(
        [sys.executable, "-c", _LOGGING_SCRIPT],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out
    request, stdlib = (json.loads(line) for line in lines)
    assert request["event"] == "request"
    assert request["tenant"] == "acme" and request["request_id"] == "r-1"
    assert request["component"] == "web" and request["level"] == "info"
    assert (request["method"], request["path"], request["status"]) == ("GET", "/t/acme/contacts", 200)
    assert stdlib["event"] == "from the standard library too"
    assert stdlib["logger"] == "uvicorn.error" and stdlib["level"] == "warning"
    assert stdlib["tenant"] == "acme" and stdlib["request_id"] == "r-1"
