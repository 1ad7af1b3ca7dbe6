"""What the lead actions refuse, each with the HTTP status it means and the fields it concerns."""

from __future__ import annotations

from kith.tenants.records.refusals import RecordError


class LeadError(RecordError):
    """A refusal of the lead actions (see RecordError)."""


class LeadInvalid(LeadError, ValueError):
    """Input that passed the schema but not the workspace's rules (an owner who is not a member, a company
    the actor cannot see, a custom field value, a status change of a converted lead)."""


class LeadNotFound(LeadError, LookupError):
    """No such lead in this workspace, or not one the actor may see (the same answer)."""

    status = 404
    code = "not_found"

    def __init__(self, message: str = "There is no such lead.") -> None:
        super().__init__(message)


class LeadAlreadyConverted(LeadError):
    """Converting a lead twice: the first conversion's records stay the only ones."""

    status = 409
    code = "already_converted"

    def __init__(self, lead_id: int, contact_id: int | None) -> None:
        super().__init__(f"Lead {lead_id} was already converted"
                         + (f" (into contact {contact_id})." if contact_id else "."))
        self.contact_id = contact_id


class LeadInPool(LeadError):
    """A change to a lead nobody owns: it is visible to every member, but changed only once claimed."""

    status = 409
    code = "in_pool"

    def __init__(self) -> None:
        super().__init__("This lead is in the public pool: claim it before changing it.")
