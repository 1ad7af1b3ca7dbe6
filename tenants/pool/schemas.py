"""The pool's inputs and outputs (API and forms share these rules)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_CLAIM_LIMIT = 100_000


class ReleaseIn(BaseModel):
    """Returning a record to the public pool."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: Annotated[str, Field(max_length=200, description="Why it goes back (shown on its timeline).")] = ""


class PoolRulesIn(BaseModel):
    """The workspace's pool rules. Both fields are replaced as given."""

    model_config = ConfigDict(extra="forbid")

    reclaim_days: int | None = Field(
        default=None, ge=1, le=3650,
        description="Owned companies and leads nobody followed up within this many days go back to the pool; "
                    "null: never.")
    claim_limits: dict[str, int] = Field(
        default_factory=dict,
        description="Per role key (built-in or custom): how many records of each type (companies, leads) a member "
                    "may hold after claiming them from the pool. A role not named has no limit; 0 forbids claiming.")

    @field_validator("claim_limits")
    @classmethod
    def _limits(cls, value: dict[str, Any]) -> dict[str, int]:
        for key, limit in value.items():
            if not 0 <= limit <= MAX_CLAIM_LIMIT:
                raise ValueError(f"the limit of {key} must be 0 to {MAX_CLAIM_LIMIT}")
        return value


class RoleLimit(BaseModel):
    key: str
    name: str
    limit: int | None = Field(default=None, description="null: no limit")


class PoolRulesOut(BaseModel):
    """The pool rules, with every role of the workspace and its claim limit."""

    reclaim_days: int | None = None
    claim_limits: dict[str, int]
    roles: list[RoleLimit]
    updated_at: datetime


class ClaimOut(BaseModel):
    """A record's place after a claim or a return: its owner (null: in the pool) and the times."""

    object_type: str
    id: int
    owner_id: int | None = None
    claimed_at: datetime | None = None
    pooled_at: datetime | None = None
    held: int = Field(description="How many records of this type the caller now holds from the pool.")
    limit: int | None = Field(default=None, description="The caller's claim limit for this type (null: none).")


class PoolItem(BaseModel):
    """A record in the pool (fields hidden from the caller's role are absent)."""

    model_config = ConfigDict(extra="allow")

    id: int
    name: str | None = None
    pooled_at: datetime | None = None


class PoolPage(BaseModel):
    """One page of the pool, newest first; pass next_cursor as `cursor` for the next page."""

    items: list[PoolItem]
    next_cursor: str | None = None
    held: int
    limit: int | None = None
    reclaim_days: int | None = None
