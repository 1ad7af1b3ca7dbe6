"""Role-matrix fixtures for the segments and campaigns endpoints.

Each state-changing route needs a campaign in the state it acts on, so every walk gets its own:
a draft to start, one to schedule, a scheduled one to unschedule, a sending one to pause, a
paused one to resume, one to cancel, a draft to delete (PATHS sends each route to its own), all over a segment
that reaches one consenting contact owned by the member (own, team and all scopes reach it),
and a segment no campaign uses, to change and delete."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kith.platform.db import tenant_scope

from .conftest import Workspace
from .factories import Member
from .web_helpers import client

_n = itertools.count(1)
CONTENT = {"subject": "Matrix {{ first_name | default('there') }}", "text_body": "Hello {{ name }}",
           "from_name": "Matrix", "from_email": "matrix@example.com"}


def _later() -> str:
    return (datetime.now(UTC) + timedelta(days=30)).isoformat()


SAMPLE_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "SegmentIn": lambda: {"name": f"Matrix segment {next(_n)}", "definition": {"filters": ["name:eq:Nobody"]}},
    "SegmentPatch": lambda: {"name": f"Matrix segment renamed {next(_n)}"},
    "SegmentCountIn": lambda: {"definition": {"filters": ["lifecycle_stage:eq:customer"]}},
    "CampaignIn": lambda: {"name": f"Matrix campaign {next(_n)}"},
    "CampaignPatch": lambda: {"subject": "Checked by the role matrix"},
    "ScheduleIn": lambda: {"at": _later()},
}
PATHS = {f"POST /campaigns/{{campaign_id}}/{action}": f"/campaigns/{{{action}_campaign_id}}/{action}"
         for action in ("start", "schedule", "unschedule", "pause", "resume", "cancel")}
PATHS["DELETE /campaigns/{campaign_id}"] = "/campaigns/{delete_campaign_id}"


async def path_values(ws: Workspace, member: Member, owner_headers: dict[str, str]) -> dict[str, str]:
    k = next(_n)
    email = f"matrix-campaign-{k}@example.com"
    async with tenant_scope(ws.tenant_id) as tx:
        await tx.execute_query(
            "INSERT INTO contacts (name, email, marketing_consent, owner_id, created_by_id)"
            " VALUES ('Matrix recipient', $1, 'granted', $2, $2)", [email, member.identity_id])
    values: dict[str, str] = {}
    async with client(headers=owner_headers) as c:
        async def made(path: str, body: dict[str, Any]) -> int:
            resp = await c.post("/api/v1" + path, json=body)
            assert resp.status_code in (200, 201), resp.text
            return int(resp.json()["id"])

        reach = await made("/segments", {"name": f"Matrix reach {k}", "definition": {"filters": [f"email:eq:{email}"]}})
        values["segment_id"] = str(await made("/segments", {"name": f"Matrix free {k}"}))
        for name in ("campaign", "start", "schedule", "unschedule", "pause", "resume", "cancel", "delete"):
            campaign_id = await made("/campaigns", {"name": f"Matrix {name} {k}", "segment_id": reach, **CONTENT})
            key = "campaign_id" if name == "campaign" else f"{name}_campaign_id"
            values[key] = str(campaign_id)
        await made(f"/campaigns/{values['unschedule_campaign_id']}/schedule", {"at": _later()})
        for name in ("pause", "resume"):
            await made(f"/campaigns/{values[name + '_campaign_id']}/start", {})
        await made(f"/campaigns/{values['resume_campaign_id']}/pause", {})
    return values
