"""What the ticket actions refuse, each with the HTTP status it means and the fields it concerns."""

from __future__ import annotations

from kith.tenants.records.refusals import RecordError


class TicketError(RecordError):
    """A refusal of the ticket actions (see RecordError)."""


class TicketInvalid(TicketError, ValueError):
    """Input that passed the schema but not the workspace's rules (an agent who is not a member, a
    contact or company the actor cannot see, a custom field value)."""


class TicketNotFound(TicketError, LookupError):
    """No such ticket in this workspace, or not one the actor may see (the same answer)."""

    status = 404
    code = "not_found"

    def __init__(self, message: str = "There is no such ticket.") -> None:
        super().__init__(message)


class TicketClosed(TicketError):
    """A closed ticket takes no replies: reopen it first (its history stays as it was closed)."""

    status = 409
    code = "ticket_closed"

    def __init__(self) -> None:
        super().__init__("This ticket is closed: reopen it (status open) before replying.")
