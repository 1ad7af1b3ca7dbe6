"""What the generic record features (custom fields admin, saved views, bulk changes) refuse,
with the HTTP status the API answers and a message per field the pages show alike."""

from __future__ import annotations

from typing import Self


class RecordsRefusal(Exception):
    """A refusal with a status (404, 409, 422), a stable code, a message a person can act on,
    `fields` ({field: message}) and, for bulk changes, the record that was refused."""

    def __init__(self, status: int, code: str, message: str, *, fields: dict[str, str] | None = None,
                 record_id: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.record_id = record_id


def invalid(field: str, message: str) -> RecordsRefusal:
    """422 for one field."""
    return RecordsRefusal(422, "invalid_input", message, fields={field: message})


class RecordError(Exception):
    """A domain's refusal a person can act on (leads, tickets): `status` (404, 409, 422), a stable
    `code`, a message and, for bad input, a message per field. Domains subclass it per case."""

    status = 422
    code = "invalid_input"

    def __init__(self, message: str, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}

    @classmethod
    def of(cls, fields: dict[str, str]) -> Self:
        """The refusal of input naming each bad field: {field: message}."""
        return cls("; ".join(f"{k}: {v}" for k, v in fields.items()), fields=fields)
