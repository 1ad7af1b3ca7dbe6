"""What the generic record features (custom fields admin, saved views, bulk changes) refuse,
with the HTTP status the API answers and a message per field the pages show alike."""

from __future__ import annotations


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
