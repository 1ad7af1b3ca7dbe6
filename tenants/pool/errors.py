"""What the pool refuses, with the HTTP status it means."""

from __future__ import annotations


class PoolError(Exception):
    """A refusal a person can act on: `status`, a stable `code`, a message and, for bad input, a
    message per field."""

    def __init__(self, status: int, code: str, message: str, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}


def not_found(noun: str) -> PoolError:
    return PoolError(404, "not_found", f"There is no such {noun}.")
