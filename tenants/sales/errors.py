"""What the sales actions refuse, in words the API (422/409/404) and the pages show alike."""

from __future__ import annotations


class SalesError(Exception):
    """Base of the refusals below; `fields` maps a field (e.g. "lines.0.product_id") to its message."""

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class InvalidInput(SalesError):
    """Input that is well-formed but wrong given the workspace's data (422)."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(" ".join(fields.values()), fields)


class Conflict(SalesError):
    """A change the record's state refuses: a taken number, a status that cannot follow (409)."""


class NotFound(LookupError):
    """No such record in this workspace, or not one the actor may see (the same answer)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"There is no such {what}.")
        self.what = what
        self.message = f"There is no such {what}."
