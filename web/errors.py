"""Errors that say what is wrong: JSON for programs, a page for people."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kith.web.i18n import DEFAULT_LOCALE, gettext_for

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


def _template(message: str, ctx: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The message with its context values put back as {name} fields, and those values.

    Pydantic's error list gives the formatted message and its context but not the template, and the
    catalog needs the template (one entry for "at most {max_length} characters", not one per number)."""
    values = {k: str(v) for k, v in ctx.items() if isinstance(v, str | int) and str(v)}
    for key, value in sorted(values.items(), key=lambda kv: -len(kv[1])):
        message = message.replace(value, "{" + key + "}", 1)
    return message, values


def _translated(message: str, ctx: dict[str, Any], locale: str) -> str:
    if locale == DEFAULT_LOCALE:
        return message
    template, values = _template(message, ctx)
    found = gettext_for(locale, template)
    if found == template:  # not in the catalog: English beats a half-translated sentence
        return message
    try:
        return found.format(**values)
    except (KeyError, IndexError, ValueError):
        return message


def validation_fields(exc: ValidationError, locale: str = DEFAULT_LOCALE) -> dict[str, str]:
    """Pydantic errors as {field: message}, in words a person understands, in `locale` where the
    UI catalog has the message (the API passes no locale: its messages stay English)."""
    fields: dict[str, str] = {}
    for err in exc.errors():
        name = ".".join(str(part) for part in err["loc"]) or "body"
        kind = err["type"]
        ctx: dict[str, Any] = dict(err.get("ctx") or {})
        if kind == "missing":
            message = "This field is required."
        elif kind == "extra_forbidden":
            message = "Unknown field."
        elif kind == "string_too_short" and ctx.get("min_length") == 1:
            message = "This field cannot be empty."
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            message = message[:1].upper() + message[1:]
        fields.setdefault(name, _translated(message, ctx, locale))
    return fields
