"""What the company actions refuse, in words the API and the pages pass on."""

from __future__ import annotations


class CompanyNotFound(LookupError):
    """No such company in this workspace, or not one the actor may see (the same answer)."""


class InvalidFields(ValueError):
    """Input that passed the schema but not the workspace's rules (an owner who is not a member,
    a company the actor cannot see, a custom field value): {field: message}, shown as a 422."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))


class CompanyHasContacts(Exception):
    """Deleting a company that still has contacts needs a decision: unlink them or delete them."""

    code = "company_has_contacts"

    def __init__(self, company_id: int, count: int) -> None:
        self.company_id = company_id
        self.count = count
        noun = "contact" if count == 1 else "contacts"
        super().__init__(
            f"This company has {count} {noun}. Say what to do with them: contacts=unlink keeps them without a "
            f"company, contacts=delete deletes them too.")


_NOUNS = {"deals": ("deal", "deals"), "orders": ("order", "orders"),
          "contacts_of_others": ("contact you may not change", "contacts you may not change")}


class CompanyInUse(Exception):
    """A company that other records still need (deals, orders), or whose contacts the actor may not
    change, is not deleted: nothing is orphaned silently. `blockers` counts each kind."""

    code = "company_in_use"

    def __init__(self, company_id: int, blockers: dict[str, int]) -> None:
        self.company_id = company_id
        self.blockers = blockers
        parts = [f"{count} {_NOUNS.get(kind, (kind, kind))[count != 1]}" for kind, count in blockers.items()]
        super().__init__(
            "This company cannot be deleted: it still has " + " and ".join(parts)
            + ". Move or delete them first.")
