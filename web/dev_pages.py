"""The dev outbox: emails Kith would have sent, when no SMTP server is configured.

Only served when KITH_ENV is dev or test; a signed-in person sees the emails of the
workspaces they belong to and the ones addressed to them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from tortoise.expressions import Q

from kith.platform.config import get_settings
from kith.platform.db import platform_tx
from kith.platform.email.models import OutboxEmail
from kith.platform.identity.sessions import workspaces_of
from kith.web.forms import render


async def outbox(request: Request) -> Response:
    if not get_settings().is_dev:
        return render(request, "error.html", {"status": 404, "message": "Not found."}, status=404)
    identity = request.state.identity
    if identity is None:
        return RedirectResponse("/login?next=/dev/outbox", status_code=303)
    tenant_ids = [t.id for t in await workspaces_of(identity.id)]
    async with platform_tx() as tx:
        emails = await OutboxEmail.filter(
            Q(tenant_id__in=tenant_ids) | Q(to_address__iexact=identity.email)
        ).using_db(tx).order_by("-id").limit(100)
    return render(request, "outbox.html", {"emails": emails})


routes = [Route("/dev/outbox", outbox)]
