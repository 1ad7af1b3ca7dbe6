"""Role-matrix fixtures for the email templates endpoints (campaigns, issue 6).

Every built-in role views templates (a catalogue); owners, admins and managers create, change,
delete and test-send them. A test send from an allowed role goes to that member's own address
in the dev outbox."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from .conftest import Workspace
from .factories import Member
from .web_helpers import client

_n = itertools.count(1)

SAMPLE_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "EmailTemplateIn": lambda: {"name": f"Matrix template {next(_n)}", "subject": "你好 {{ first_name }}",
                                "html_body": "<p>{{ name | default('朋友') }}</p>"},
    "EmailTemplatePatch": lambda: {"subject": "Checked by the role matrix {{ name }}"},
    "EmailTemplatePreviewIn": lambda: {},
}


async def path_values(ws: Workspace, member: Member, owner_headers: dict[str, str]) -> dict[str, str]:
    async with client(headers=owner_headers) as c:
        made = await c.post("/api/v1/email-templates", json={
            "name": f"Matrix fixture template {next(_n)}", "subject": "Matrix {{ first_name }}",
            "text_body": "Hello {{ name }}"})
        assert made.status_code == 201, made.text
    return {"template_id": str(made.json()["id"])}
