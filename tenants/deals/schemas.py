"""What deals, pipelines and stages look like on the way in and out (API and forms share these rules).

Amounts are Decimal, never float: a JSON number or a string is read through its text
(`str(value)`), so 0.1 stays exactly 0.1; NaN, infinities, negatives and more than two
decimals are refused with a message naming the field.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from kith.platform.tenancy.settings import currencies

# validation-context key: the workspace's default currency, used when a new deal names none
DEFAULT_CURRENCY = "default_currency"
# numeric(18, 2): at most 16 digits before the point
MAX_AMOUNT = Decimal("9999999999999999.99")
CENT = Decimal("0.01")
StageKind = Literal["open", "won", "lost"]


def currency_context(code: str | None) -> dict[str, str | None]:
    """The validation context that gives a new deal without a currency the workspace's `code`."""
    return {DEFAULT_CURRENCY: code}


def parse_amount(value: Any) -> Decimal:
    """A money amount from a JSON number, a string or a Decimal: exact, finite, >= 0, at most 2 decimals."""
    if isinstance(value, bool) or value is None:
        raise PydanticCustomError("amount_type", "must be a number such as 1234.50")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int | float | str):
        text = str(value).strip().replace(",", "") if isinstance(value, str) else str(value)
        if not text:
            raise PydanticCustomError("amount_type", "must be a number such as 1234.50")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise PydanticCustomError("amount_type", "must be a number such as 1234.50") from None
    else:
        raise PydanticCustomError("amount_type", "must be a number such as 1234.50")
    if not amount.is_finite():
        raise PydanticCustomError("amount_finite", "must be a finite number")
    if amount < 0:
        raise PydanticCustomError("amount_negative", "must be 0 or more")
    if amount > MAX_AMOUNT:
        raise PydanticCustomError("amount_too_large", "must be at most 9999999999999999.99")
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:  # 1.230 is 1.23; 1.234 is not a sum of money
        raise PydanticCustomError("amount_decimals", "may have at most 2 decimal places")
    return amount.quantize(CENT)


def money_text(value: Decimal | None) -> str | None:
    """An amount as the API writes it: a string with two decimals ("1234.50")."""
    return None if value is None else f"{Decimal(value).quantize(CENT):.2f}"


def parse_currency(value: str) -> str:
    code = value.strip().upper()
    if code not in currencies():
        raise PydanticCustomError(
            "currency", "'{value}' is not an ISO 4217 currency code (for example USD, EUR, CNY)",
            {"value": value[:10]})
    return code


def clean_tags(values: list[str]) -> list[str]:
    """Tags without surrounding spaces, empty entries and repeats (first spelling wins)."""
    seen: dict[str, str] = {}
    for raw in values:
        tag = raw.strip()
        if not tag:
            continue
        if len(tag) > 50:
            raise PydanticCustomError("tag_length", "each tag may have at most 50 characters")
        seen.setdefault(tag.lower(), tag)
    if len(seen) > 50:
        raise PydanticCustomError("tag_count", "at most 50 tags")
    return list(seen.values())


Name = Annotated[str, Field(min_length=1, max_length=200, description="What is being sold, any script.")]
Amount = Annotated[Decimal, Field(description="Decimal amount >= 0 with at most 2 decimals; a string or number.")]
Probability = Annotated[int, Field(ge=0, le=100)]
LossReason = Annotated[str, Field(max_length=500)]
Notes = Annotated[str, Field(max_length=20000)]
Id = Annotated[int, Field(ge=1)]


class _DealRules(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("amount", mode="before", check_fields=False)
    @classmethod
    def _amount(cls, value: Any) -> Any:
        return None if value is None else parse_amount(value)

    @field_validator("currency", check_fields=False)
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        return None if value is None else parse_currency(value)

    @field_validator("tags", check_fields=False)
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else clean_tags(value)


class DealIn(_DealRules):
    """A new deal. Without pipeline_id it goes to the default pipeline, without stage_id to that
    pipeline's first open stage; without currency it takes the workspace's default currency."""

    name: Name
    amount: Amount = Decimal("0.00")
    currency: str | None = Field(default=None, description="ISO 4217 code; default: the workspace's currency.")
    expected_close: date | None = None
    probability: Probability | None = Field(default=None, description="Overrides the stage's probability.")
    pipeline_id: Id | None = None
    stage_id: Id | None = None
    company_id: Id | None = None
    contact_id: Id | None = None
    owner_id: Id | None = Field(default=None, description="An active member; default: the caller.")
    loss_reason: LossReason = ""
    notes: Notes = ""
    tags: list[str] = []
    custom: dict[str, Any] = {}

    @model_validator(mode="after")
    def _default_currency(self, info: ValidationInfo) -> DealIn:
        if self.currency is None and isinstance(info.context, dict):
            code = info.context.get(DEFAULT_CURRENCY)
            if isinstance(code, str) and code:
                self.currency = code
        return self


class DealPatch(_DealRules):
    """A partial update: only the fields given change; null clears the optional ones. A new
    stage_id moves the deal (recorded in its stage history, loss_reason needed for a lost stage)."""

    name: Name | None = None
    amount: Amount | None = None
    currency: str | None = None
    expected_close: date | None = None
    probability: Probability | None = None
    pipeline_id: Id | None = None
    stage_id: Id | None = None
    company_id: Id | None = None
    contact_id: Id | None = None
    owner_id: Id | None = None
    loss_reason: LossReason | None = None
    notes: Notes | None = None
    tags: list[str] | None = None
    custom: dict[str, Any] | None = None

    @field_validator("name", "amount", "currency", "pipeline_id", "stage_id", "loss_reason", "notes", "tags",
                     "custom")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # these columns have no empty value: null is not a change they can take (leave the field out)
        if value is None:
            raise PydanticCustomError("not_null", "cannot be null; leave the field out to keep its value")
        return value


class DealOut(BaseModel):
    """A deal as the API returns it. A field the caller's role may not see is absent."""

    id: int
    name: str | None = None
    amount: str | None = Field(default=None, description="Decimal as a string with 2 decimals: \"1234.50\".")
    currency: str | None = None
    expected_close: date | None = None
    probability: int | None = None
    pipeline_id: int | None = None
    stage_id: int | None = None
    stage_name: str | None = None
    stage_kind: StageKind | None = None
    company_id: int | None = None
    company_name: str | None = None
    contact_id: int | None = None
    owner_id: int | None = None
    loss_reason: str | None = None
    notes: str | None = None
    tags: list[str] | None = None
    custom: dict[str, Any] | None = None
    closed_at: datetime | None = None
    last_activity_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @field_validator("amount", mode="before")
    @classmethod
    def _amount(cls, value: Any) -> Any:
        return money_text(value) if isinstance(value, Decimal | int) else value


class DealPage(BaseModel):
    """One page of deals; pass next_cursor as `cursor` for the next page."""

    items: list[DealOut]
    next_cursor: str | None = None
    columns: list[str] = []


class MoveIn(BaseModel):
    """Move a deal to another stage of its pipeline; a lost stage needs a loss_reason."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    stage_id: Id
    loss_reason: LossReason | None = None


class StageChangeOut(BaseModel):
    """One stage change of a deal: from where, to where, who and when."""

    id: int
    from_stage_id: int | None
    from_stage_name: str | None
    to_stage_id: int | None
    to_stage_name: str | None
    changed_by_id: int | None
    changed_by: str | None = Field(default=None, description="The person's name or email.")
    changed_at: datetime


class StageHistory(BaseModel):
    items: list[StageChangeOut]


StageName = Annotated[str, Field(min_length=1, max_length=80)]
PipelineName = Annotated[str, Field(min_length=1, max_length=80)]


class StageIn(BaseModel):
    """A new stage. position: its place among the pipeline's stages (0 = first; default: last)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: StageName
    probability: Probability = 0
    kind: StageKind = "open"
    position: Annotated[int, Field(ge=0)] | None = None


class StagePatch(BaseModel):
    """Change a stage: rename, move to another position, change probability or kind."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: StageName | None = None
    probability: Probability | None = None
    kind: StageKind | None = None
    position: Annotated[int, Field(ge=0)] | None = None


class StageOut(BaseModel):
    id: int
    pipeline_id: int
    name: str
    position: int
    probability: int
    kind: StageKind
    deal_count: int | None = Field(default=None, description="How many deals sit in the stage (all owners).")


class PipelineIn(BaseModel):
    """A new pipeline. Without stages it starts with New (open, 10%), Won and Lost; stages given
    must include at least one open, one won and one lost stage."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: PipelineName
    stages: list[StageIn] | None = None


class PipelinePatch(BaseModel):
    """Rename a pipeline, move it (position: 0 = first) or make it the default."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: PipelineName | None = None
    position: Annotated[int, Field(ge=0)] | None = None
    is_default: Literal[True] | None = Field(default=None, description="true makes this the default pipeline.")


class PipelineOut(BaseModel):
    id: int
    name: str
    position: int
    is_default: bool
    stages: list[StageOut]
    deal_count: int | None = None


class PipelineList(BaseModel):
    items: list[PipelineOut]


class CurrencyTotal(BaseModel):
    """Figures in one currency (amounts are never added across currencies)."""

    currency: str
    count: int
    total: str
    weighted: str = Field(description="Sum of amount x probability (the deal's, else its stage's) / 100.")


class BoardCard(BaseModel):
    id: int
    name: str | None = None
    amount: str | None = None
    currency: str | None = None
    company_id: int | None = None
    company_name: str | None = None
    owner_id: int | None = None
    owner_name: str | None = None
    expected_close: date | None = None
    probability: int | None = None


class BoardColumn(BaseModel):
    stage: StageOut
    count: int = Field(description="Deals of this stage in the caller's scope (all of them, not only the cards).")
    totals: list[CurrencyTotal]
    cards: list[BoardCard]
    more: int = Field(description="Deals not shown as cards (beyond the per-column limit).")


class BoardOut(BaseModel):
    pipeline: PipelineOut
    columns: list[BoardColumn]
    weighted: list[CurrencyTotal] = Field(description="The weighted pipeline: open deals only, per currency.")


class ForecastBucket(BaseModel):
    key: str = Field(description="'overdue', 'YYYY-MM' (this month and the next 11), 'later' or 'none' (no date).")
    totals: list[CurrencyTotal]


class WonMonth(BaseModel):
    month: str = Field(description="YYYY-MM, the month the deal was won (workspace time zone).")
    totals: list[CurrencyTotal]


class ForecastOut(BaseModel):
    today: date
    open: list[ForecastBucket] = Field(description="Open deals by expected close month.")
    won: list[WonMonth] = Field(description="Won deals by the month they closed: the last 12 months.")
