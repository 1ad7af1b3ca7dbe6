"""Account events (sign-ins, password and 2FA changes, revocations) into the audit log.

Identity events belong to a person, not to one workspace; the audit module writes them
to the audit log of every workspace the person belongs to. They are recorded after the
change has committed: the audit entries live in tenant schemas, and a tenant scope cannot
be entered inside the platform transaction that made the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kith.platform.audit.log import record_identity_event


@dataclass(frozen=True)
class ClientInfo:
    """Where a request came from, as the audit log records it."""

    ip: str = ""
    user_agent: str = ""
    request_id: str = ""


async def record_account_event(
    identity_id: int | None,
    action: str,
    client: ClientInfo,
    *,
    email: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Audit one account event (action names like "login.failure", "2fa.enable")."""
    await record_identity_event(
        identity_id,
        action,
        email=email,
        ip=client.ip,
        user_agent=client.user_agent,
        request_id=client.request_id,
        detail=detail or {},
    )
