"""Custom fields: tenant admins add typed fields to companies, contacts, leads and deals.

Definitions are rows of `custom_fields`; values live in each record's `custom` jsonb column
under the field's key, stored in a form PostgreSQL can filter and sort on (see the list
engine): text, long text, URL and select as strings; number and currency as decimal strings
(never floats); date as "YYYY-MM-DD"; boolean as true/false; multi-select as a list of
strings. `clean_custom_values` is the one place that checks a value against its definition.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from tortoise.backends.base.client import BaseDBAsyncClient

OBJECT_TYPES = ("companies", "contacts", "leads", "deals", "tickets")
KINDS = ("text", "long_text", "number", "currency", "date", "select", "multi_select", "boolean", "url")
TEXT_LIMITS = {"text": 500, "long_text": 20000, "url": 2000}
# numeric(18, 2)-sized: a custom number beyond it could never be summed safely
MAX_NUMBER = Decimal("1e15")


@dataclass(frozen=True)
class CustomField:
    id: int
    object_type: str
    key: str
    label: str
    kind: str
    options: tuple[str, ...]
    required: bool
    position: int


class CustomFieldError(ValueError):
    """Values that do not fit their fields; `errors` maps "custom.<key>" to a message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


def field_from_row(row: Mapping[str, Any]) -> CustomField:
    options = row["options"]
    if isinstance(options, str):
        options = json.loads(options)
    return CustomField(id=int(row["id"]), object_type=row["object_type"], key=row["key"], label=row["label"],
                       kind=row["kind"], options=tuple(options or ()), required=bool(row["required"]),
                       position=int(row["position"]))


async def load_custom_fields(tx: BaseDBAsyncClient, object_type: str) -> list[CustomField]:
    """The custom fields of `object_type` in this tenant, in their display order."""
    rows = await tx.execute_query_dict(
        "SELECT * FROM custom_fields WHERE object_type = $1 ORDER BY position, id", [object_type])
    return [field_from_row(r) for r in rows]


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or isinstance(value, float):
        # a float has already lost the exact value the person typed; "12.30" as text keeps it
        raise ValueError("write the number as a string or an integer, e.g. \"12.30\"")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not number.is_finite():
        raise ValueError("not a finite number")
    if abs(number) >= MAX_NUMBER:
        raise ValueError("too large")
    return number


def clean_value(definition: CustomField, value: Any) -> Any:
    """`value` as stored for `definition`, or ValueError naming what is wrong. None and "" mean empty."""
    kind = definition.kind
    if kind == "multi_select":
        items = value if isinstance(value, list) else [] if value in (None, "") else [value]
        if not all(isinstance(v, str) for v in items):
            raise ValueError("choose from the field's options")
        unknown = [v for v in items if v not in definition.options]
        if unknown:
            raise ValueError(f"not among the options: {', '.join(unknown)}")
        return [o for o in definition.options if o in items]  # the options' order, no repeats
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise ValueError("must be true or false")
    if kind in ("number", "currency"):
        number = _decimal(value)
        if kind == "currency":
            if number.as_tuple().exponent < -2:  # type: ignore[operator]
                raise ValueError("an amount has at most 2 decimals")
            number = number.quantize(Decimal("0.01"))
        return str(number)
    if not isinstance(value, str):
        raise ValueError("must be text")
    text = value.strip()
    if kind == "date":
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            raise ValueError("must be a date like 2026-11-23") from None
    if kind == "select":
        if text not in definition.options:
            raise ValueError(f"not among the options: {text}")
        return text
    if len(text) > TEXT_LIMITS[kind]:
        raise ValueError(f"at most {TEXT_LIMITS[kind]} characters")
    if kind == "url":
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be a web address starting with http:// or https://")
    return text


def clean_custom_values(
    definitions: Sequence[CustomField], values: Mapping[str, Any] | None, *, partial: bool,
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The `custom` column's new content: `values` checked against `definitions`.

    With partial=False (a new record) every required field needs a value. With partial=True
    (an update) only the keys given change, merged into `current`; a required field cannot be
    emptied. Unknown keys are refused rather than dropped, so a typo never loses data silently.
    Empty values are removed from the stored dict (so "is empty" filters find them).
    """
    given = dict(values or {})
    by_key = {d.key: d for d in definitions}
    errors: dict[str, str] = {}
    for key in given:
        if key not in by_key:
            errors[f"custom.{key}"] = "there is no such custom field"
    result: dict[str, Any] = dict(current or {}) if partial else {}
    for key, raw in given.items():
        definition = by_key.get(key)
        if definition is None:
            continue
        try:
            cleaned = clean_value(definition, raw)
        except ValueError as exc:
            errors[f"custom.{key}"] = str(exc)
            continue
        if cleaned is None or cleaned == []:
            result.pop(key, None)
        else:
            result[key] = cleaned
    for definition in definitions:
        checked = definition.key in given or not partial
        if definition.required and checked and f"custom.{definition.key}" not in errors and \
                definition.key not in result:
            errors[f"custom.{definition.key}"] = "this field is required"
    if errors:
        raise CustomFieldError(errors)
    return result
