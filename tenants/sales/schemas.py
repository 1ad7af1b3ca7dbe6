"""Products, orders and sales targets on the way in and out (the API and the forms share these rules).

Money is Decimal with at most two decimal places (quantities three), never float; the API
writes Decimals as strings ("1234.50") and accepts strings or JSON numbers.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from kith.platform.tenancy.settings import currencies

Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=2, description='Decimal string, e.g. "19.99".')]
Quantity = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=3, description='Greater than 0, e.g. "2.5".')]
Percent = Annotated[Decimal, Field(ge=0, le=100, max_digits=5, decimal_places=2, description="0 to 100.")]
OrderStatus = Literal["draft", "confirmed", "fulfilled", "cancelled"]
PeriodKind = Literal["month", "quarter"]
Measure = Literal["won_deals", "orders"]
Notes = Annotated[str, Field(max_length=5000)]


def clean_currency(value: str) -> str:
    code = value.strip().upper()
    if code not in currencies():
        raise PydanticCustomError("currency", "must be an ISO 4217 currency code such as USD, EUR or CNY")
    return code


Currency = Annotated[str, AfterValidator(clean_currency),
                     Field(description="ISO 4217 code (e.g. USD, CNY); default: the workspace's currency.")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# ---- products --------------------------------------------------------------------------------

Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^\S(.*\S)?$", description="Unique (any case).")]
ProductName = Annotated[str, Field(min_length=1, max_length=200, description="Any script (e.g. 云服务器).")]


class ProductIn(_In):
    """A new product of the catalogue."""

    sku: Sku
    name: ProductName
    description: Notes = ""
    unit_price: Money
    currency: Currency | None = None
    active: bool = True


class ProductPatch(_In):
    """A partial update of a product: only the fields given change."""

    sku: Sku | None = None
    name: ProductName | None = None
    description: Notes | None = None
    unit_price: Money | None = None
    currency: Currency | None = None
    active: bool | None = None


class ProductOut(BaseModel):
    """A product. A field the caller's role may not see is absent."""

    id: int
    sku: str | None = None
    name: str | None = None
    description: str | None = None
    unit_price: Decimal | None = None
    currency: str
    active: bool | None = None
    created_at: datetime
    updated_at: datetime


class ProductPage(BaseModel):
    """Products by SKU; pass next_cursor as `cursor` for the next page."""

    items: list[ProductOut]
    next_cursor: str | None = None


# ---- orders ----------------------------------------------------------------------------------


class OrderLineIn(_In):
    """One line. With a product, description and unit_price default to the product's."""

    product_id: int | None = None
    description: Annotated[str, Field(max_length=500)] = ""
    quantity: Quantity
    unit_price: Money | None = None
    discount_percent: Percent = Decimal(0)


OrderNumber = Annotated[str, Field(min_length=1, max_length=40, description='Unique; default "SO-000123".')]
Lines = Annotated[list[OrderLineIn], Field(max_length=200)]


class OrderIn(_In):
    """A new order (a draft unless `status` says otherwise is not offered: orders start as drafts)."""

    number: OrderNumber | None = None
    company_id: int | None = None
    contact_id: int | None = Field(default=None, description="A contact with a company fills company_id.")
    deal_id: int | None = None
    owner_id: int | None = Field(default=None, description="Default: the caller.")
    currency: Currency | None = None
    order_date: date | None = Field(default=None, description="Default: today.")
    notes: Notes = ""
    lines: Lines = []


class OrderPatch(_In):
    """A partial update. Lines and currency change only while the order is a draft; `lines`
    replaces every line."""

    number: OrderNumber | None = None
    company_id: int | None = None
    contact_id: int | None = None
    deal_id: int | None = None
    owner_id: int | None = None
    currency: Currency | None = None
    order_date: date | None = None
    notes: Notes | None = None
    lines: Lines | None = None


class OrderStatusIn(_In):
    """draft -> confirmed -> fulfilled; draft or confirmed -> cancelled."""

    status: OrderStatus


class OrderLineOut(BaseModel):
    id: int
    position: int
    product_id: int | None
    product_sku: str | None = None
    description: str
    quantity: Decimal
    unit_price: Decimal | None = None
    discount_percent: Decimal
    line_total: Decimal | None = None


class OrderOut(BaseModel):
    """An order with its totals (computed by Kith from the lines). `lines` comes with one order,
    not in lists."""

    id: int
    number: str | None = None
    company_id: int | None
    company_name: str | None = None
    contact_id: int | None
    deal_id: int | None
    owner_id: int | None
    status: OrderStatus | None = None
    currency: str
    order_date: date
    subtotal: Decimal | None = None
    discount_total: Decimal | None = None
    total: Decimal | None = None
    notes: str | None = None
    created_at: datetime
    updated_at: datetime
    lines: list[OrderLineOut] | None = None


class OrderPage(BaseModel):
    """Orders, newest order_date first; pass next_cursor as `cursor` for the next page."""

    items: list[OrderOut]
    next_cursor: str | None = None


# ---- sales targets ---------------------------------------------------------------------------


class TargetIn(_In):
    """A quota for a member (identity_id) or a team (team_id), for one month or quarter."""

    identity_id: int | None = None
    team_id: int | None = None
    period_kind: PeriodKind
    period_start: date = Field(description="The first day of the month or quarter.")
    measure: Measure = "won_deals"
    amount: Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=2)]
    currency: Currency | None = None

    @field_validator("period_start")
    @classmethod
    def _first_day(cls, value: date, info: ValidationInfo) -> date:
        kind = info.data.get("period_kind")
        if kind == "month" and value.day != 1:
            raise PydanticCustomError("period_start", "a month's target starts on the first day of the month")
        if kind == "quarter" and (value.day != 1 or value.month not in (1, 4, 7, 10)):
            raise PydanticCustomError(
                "period_start", "a quarter's target starts on 1 January, 1 April, 1 July or 1 October")
        return value


class TargetPatch(_In):
    """Change a target's amount, currency or measure."""

    amount: Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=2)] | None = None
    currency: Currency | None = None
    measure: Measure | None = None


class NotCounted(BaseModel):
    """A won deal or an order in the period that the target's currency leaves out."""

    kind: Literal["deal", "order"]
    id: int
    name: str
    amount: Decimal
    currency: str


class TargetOut(BaseModel):
    """A target with its attainment: `achieved` (a Decimal string) and `percent` of `amount`."""

    id: int
    identity_id: int | None
    team_id: int | None
    holder_name: str = Field(description="The member's name or the team's name.")
    period_kind: PeriodKind
    period_start: date
    period_end: date = Field(description="The last day of the period.")
    measure: Measure
    amount: Decimal
    currency: str
    achieved: Decimal
    percent: Decimal = Field(description="achieved / amount x 100, one decimal place.")
    counted: int = Field(description="How many deals or orders make up `achieved`.")
    not_counted: list[NotCounted]
    created_at: datetime


class TargetList(BaseModel):
    """The targets of one period the caller may see."""

    period_kind: PeriodKind
    period_start: date
    period_end: date
    items: list[TargetOut]
