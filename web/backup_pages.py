"""The workspace's Backups settings page (/t/<slug>/settings/backups; manage_settings, checked by
the actions in kith.platform.backups.workspace): its backups, the latest runs with their progress,
the schedule its plan gives, and "Back up now".

While a run is queued or running the response carries a `Refresh` header, so the browser reloads
the page every few seconds and shows the progress without any JavaScript; it stops once the run
has finished.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.platform.backups.runs import BackupBusy, BackupRun
from kith.platform.backups.workspace import backups_overview, request_backup
from kith.platform.config import get_settings
from kith.web.api.backups import enqueue_started
from kith.web.edge import actor_of
from kith.web.forms import read_form, render

REFRESH_SECONDS = 3


def size_text(size: int | None) -> str:
    """Bytes for people: 512 B, 12.3 KB, 4.5 MB, 1.2 GB."""
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def _path(request: Request) -> str:
    return f"/t/{request.state.caller.tenant.slug}/settings/backups"


async def _page(request: Request, *, busy: BackupRun | None = None, status: int = 200) -> Response:
    overview = await backups_overview(actor_of(request))
    started = request.query_params.get("started", "")
    response = render(request, "backups/page.html", {
        "overview": overview, "busy": busy, "size_text": size_text,
        "keep_on_demand": get_settings().backup_keep_manual,
        "started": started if started.isdigit() else "", "refresh_seconds": REFRESH_SECONDS,
    }, status=status)
    if overview.active is not None:
        # a navigation to the page itself (GET), also after the refused POST that rendered this one
        response.headers["Refresh"] = f"{REFRESH_SECONDS}; url={_path(request)}"
    return response


async def backups_page(request: Request) -> Response:
    if request.method == "GET":
        return await _page(request)
    await read_form(request)
    try:
        run = await request_backup(actor_of(request))
    except BackupBusy as exc:
        return await _page(request, busy=exc.run, status=409)
    await enqueue_started(run)
    return RedirectResponse(f"{_path(request)}?started={run.id}", status_code=303)


routes = [
    Route("/t/{slug}/settings/backups", backups_page, methods=["GET", "POST"]),
]
