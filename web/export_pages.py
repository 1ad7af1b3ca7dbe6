"""Downloading a list (or a saved view) as CSV or XLSX from its page: /t/<slug>/<list>/export
takes the list page's own query string plus format=csv|xlsx and streams the file."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kith.web.api.exports import EXPORT_TYPES, export_response
from kith.web.errors import ApiError, title_for
from kith.web.forms import render
from kith.web.i18n import gettext_for


def _export_page(object_type: str) -> Any:
    async def page(request: Request) -> Response:
        try:
            return await export_response(request, object_type)
        except ApiError as exc:  # PermissionDenied goes to the app's 403 page
            locale = str(request.state.caller.tenant.locale)
            message = gettext_for(locale, "This export cannot be made as asked:") + " " + exc.message
            return render(request, "error.html", {"status": exc.status, "title": title_for(exc.status),
                                                  "message": message}, status=exc.status)

    page.__name__ = f"{object_type}_export"
    return page


routes: list[Route] = [
    Route(f"/t/{{slug}}/{object_type}/export", _export_page(object_type), methods=["GET"])
    for object_type in EXPORT_TYPES
]
