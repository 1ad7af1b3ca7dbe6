"""Factories for people in a workspace: a member with a given role, signed in through a token."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from kith.platform.db import platform_tx
from kith.platform.identity.models import Identity
from kith.platform.identity.passwords import hash_password
from kith.platform.identity.tokens import create_api_token

from .conftest import Workspace

_counter = itertools.count(1)
PASSWORD = "member horse battery staple"
# hashing is deliberately slow; one hash serves every member the tests make
_PASSWORD_HASH: list[str] = []


@dataclass(frozen=True)
class Member:
    identity_id: int
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def add_member(ws: Workspace, role: str) -> Member:
    """A new person in `ws` holding `role` (any key: built-in, custom, or one that does not
    exist), with an API token. The membership is written directly, as an invitation would, and the
    email is verified, as accepting an invitation does."""
    if not _PASSWORD_HASH:
        _PASSWORD_HASH.append(hash_password(PASSWORD))
    email = f"{role.replace('_', '-')}-{next(_counter)}-{secrets.token_hex(3)}@{ws.slug}.example.com"
    async with platform_tx() as tx:
        identity = await Identity.create(email=email, display_name=email.split("@")[0],
                                         password_hash=_PASSWORD_HASH[0], email_verified_at=datetime.now(UTC),
                                         using_db=tx)
        await tx.execute_query(
            "INSERT INTO public.memberships (tenant_id, identity_id, role) VALUES ($1, $2, $3)",
            [ws.tenant_id, identity.id, role],
        )
    _, raw = await create_api_token(tenant_id=ws.tenant_id, identity_id=identity.id, name="tests")
    return Member(identity.id, email, PASSWORD, raw)


async def owner_token(ws: Workspace) -> dict[str, str]:
    """Authorization headers for the workspace's owner."""
    _, raw = await create_api_token(tenant_id=ws.tenant_id, identity_id=ws.identity_id, name="tests")
    return {"Authorization": f"Bearer {raw}"}
