"""Who is acting: a person through the web or a token, a job, or a support operator.

Every action and query inside a tenant takes an Actor; the permission engine and the
audit log read from it. The web builds one from the request, jobs from their arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ActorKind = Literal["user", "token", "job", "operator", "system"]


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    tenant_id: int
    role: str  # role key: a built-in role ("owner", "admin", ...) or a custom role's key
    identity_id: int | None = None
    label: str = ""  # what an auditor reads: an email, a job name, an operator's name
    token_id: int | None = None
    ip: str = ""
    user_agent: str = ""
    request_id: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def system(cls, tenant_id: int, label: str) -> Actor:
        """Kith itself (migrations, demo data, retention jobs): every permission, audited as 'system'."""
        return cls(kind="system", tenant_id=tenant_id, role="owner", label=label)
