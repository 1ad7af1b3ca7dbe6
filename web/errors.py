"""Errors that say what is wrong: JSON for programs, a page for people."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

_STATUS_TITLES = {400: "Bad request", 401: "Not signed in", 402: "Plan limit reached", 403: "Forbidden",
                  404: "Not found", 429: "Too many attempts",
                  405: "Method not allowed", 409: "Conflict", 422: "Invalid input", 503: "Unavailable"}


class ApiError(Exception):
    """An error with an HTTP status, a stable code and a message a person can act on."""

    def __init__(self, status: int, code: str, message: str, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}

    def payload(self) -> dict[str, Any]:
        error: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        return {"error": error}


def title_for(status: int) -> str:
    return _STATUS_TITLES.get(status, "Error")


def validation_fields(exc: ValidationError) -> dict[str, str]:
    """Pydantic errors as {field: message}, in words a person understands."""
    fields: dict[str, str] = {}
    for err in exc.errors():
        name = ".".join(str(part) for part in err["loc"]) or "body"
        kind = err["type"]
        if kind == "missing":
            message = "This field is required."
        elif kind == "extra_forbidden":
            message = "Unknown field."
        elif kind == "string_too_short" and err.get("ctx", {}).get("min_length") == 1:
            message = "This field cannot be empty."
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            message = message[:1].upper() + message[1:]
        fields.setdefault(name, message)
    return fields
