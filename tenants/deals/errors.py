"""Refusals of the deals domain, each with the HTTP status it means and the fields it concerns.

They are RecordsRefusals, so the generic bulk changes (kith.tenants.records) report a refused
deal the way they report any other record.
"""

from __future__ import annotations

from kith.tenants.records.refusals import RecordsRefusal


class DealError(RecordsRefusal):
    """A refusal a person can act on: a status (404, 409, 422), a stable code, a message and, for
    bad input, {field: message}."""

    default_status = 422
    default_code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None, fields: dict[str, str] | None = None) -> None:
        super().__init__(self.default_status, self.default_code, message,
                         fields=fields if fields is not None else ({field: message} if field else None))


class DealInvalid(DealError, ValueError):
    """Input that breaks a rule of deals (a stage of another pipeline, a lost stage without a reason)."""


class DealConflict(DealError):
    """The change conflicts with the records as they are (a pipeline that still has deals)."""

    default_status = 409
    default_code = "conflict"


class DealNotFound(DealError, LookupError):
    """No such deal in this workspace, or not one the actor may see (the same answer)."""

    default_status = 404
    default_code = "not_found"

    def __init__(self, message: str = "There is no such deal.") -> None:
        super().__init__(message)


class PipelineNotFound(DealError, LookupError):
    default_status = 404
    default_code = "not_found"

    def __init__(self, message: str = "There is no such pipeline.") -> None:
        super().__init__(message)


class StageNotFound(DealError, LookupError):
    default_status = 404
    default_code = "not_found"

    def __init__(self, message: str = "There is no such stage.") -> None:
        super().__init__(message)
