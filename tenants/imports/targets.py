"""What each kind of record takes from a file: its fields, how a cell becomes a value, and the
keys duplicates are found by.

A cell is cleaned by plain functions compiled once per import (`RowCleaner`), not by pydantic
models: an import cleans a million rows, and a model per row costs several times more. The rules
are the forms' and the API's own (the same email, phone, tag, domain, country and custom-field
checks), so a record imported is a record that could have been typed in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic_core import PydanticCustomError

from kith.tenants.companies.schemas import clean_country, clean_domain
from kith.tenants.contacts.schemas import LIFECYCLE_STAGES, MAX_TAG_LENGTH, MAX_TAGS, _clean_phone
from kith.tenants.records.custom import CustomField, clean_value

CUSTOM_PREFIX = "custom."
COMPANY_SIZES = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+")
LEAD_STATUSES = ("new", "contacted", "qualified", "unqualified")
CONSENT_STATES = ("granted", "withdrawn")
MAX_NAME = 200

Cleaner = Callable[[str], Any]


class CellError(ValueError):
    """A cell that cannot become its field's value; the message says why, for people."""


def _text(limit: int) -> Cleaner:
    def clean(value: str) -> str:
        if len(value) > limit:
            raise CellError(f"at most {limit} characters (this one has {len(value)})")
        return value
    return clean


# An ASCII address of the usual shape: email_validator would accept it and normalize it to itself
# with the domain lowercased. Anything else (non-ASCII, quoted local parts, odd dots, special-use
# domains) goes through email_validator itself, which costs ~30 µs a call.
_PLAIN_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}$")
# domains email_validator refuses as special-use (RFC 6761 and friends)
_SPECIAL_TLDS = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test", "internal", "home", "lan",
                           "corp", "intranet", "localdomain", "example"})


def clean_email(value: str) -> str:
    if len(value) > 200:
        raise CellError("an email address has at most 200 characters")
    if _PLAIN_EMAIL.match(value) and len(value.split("@", 1)[0]) <= 64:
        local, domain = value.rsplit("@", 1)
        if domain.rsplit(".", 1)[1].lower() not in _SPECIAL_TLDS:
            return f"{local}@{domain.lower()}"
    try:
        return str(validate_email(value, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise CellError(f"not a valid email address: {exc}") from None


def _phone(region: str | None) -> Cleaner:
    def clean(value: str) -> str:
        try:
            return _clean_phone(value, region)
        except PydanticCustomError as exc:
            raise CellError(str(exc)) from None
    return clean


_TAG_SPLIT = re.compile(r"[,;，；、|]")


def clean_tags(value: str) -> list[str]:
    tags: list[str] = []
    seen: set[str] = set()
    for raw in _TAG_SPLIT.split(value):
        tag = raw.strip()
        if not tag:
            continue
        if len(tag) > MAX_TAG_LENGTH:
            raise CellError(f"each tag has at most {MAX_TAG_LENGTH} characters")
        if tag.casefold() not in seen:
            seen.add(tag.casefold())
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise CellError(f"at most {MAX_TAGS} tags")
    return tags


def _choice(choices: Sequence[str], aliases: dict[str, str]) -> Cleaner:
    """A value among `choices`, written as the key, its words ("closed won") or an alias
    (other CRMs' spellings, Chinese labels), ignoring case."""
    known = {c.casefold(): c for c in choices}
    known.update({c.replace("_", " ").casefold(): c for c in choices})
    known.update({k.casefold(): v for k, v in aliases.items()})

    def clean(value: str) -> str:
        found = known.get(value.casefold()) or known.get(re.sub(r"[\s_-]+", "", value.casefold()))
        if found is None:
            raise CellError(f"'{value}' is not one of {', '.join(choices)}")
        return found
    return clean


_LIFECYCLE_ALIASES = {
    "订阅者": "subscriber", "线索": "lead", "潜在客户": "lead", "合格线索": "qualified", "商机": "opportunity",
    "客户": "customer", "推广者": "evangelist", "其他": "other",
    # HubSpot's internal values and labels
    "marketingqualifiedlead": "qualified", "salesqualifiedlead": "qualified", "marketing qualified lead": "qualified",
    "sales qualified lead": "qualified", "mql": "qualified", "sql": "qualified",
}
_LEAD_STATUS_ALIASES = {
    "新建": "new", "新线索": "new", "已联系": "contacted", "合格": "qualified", "不合格": "unqualified",
    "open": "new", "open - not contacted": "new", "working - contacted": "contacted",
    "closed - converted": "qualified", "closed - not converted": "unqualified", "attempted to contact": "contacted",
    "in progress": "contacted", "unqualified lead": "unqualified",
}
_CONSENT_ALIASES = {
    "yes": "granted", "y": "granted", "true": "granted", "1": "granted", "opt-in": "granted", "opted in": "granted",
    "subscribed": "granted", "同意": "granted", "是": "granted", "已同意": "granted",
    "no": "withdrawn", "n": "withdrawn", "false": "withdrawn", "0": "withdrawn", "opt-out": "withdrawn",
    "opted out": "withdrawn", "unsubscribed": "withdrawn", "拒绝": "withdrawn", "否": "withdrawn",
    "退订": "withdrawn", "已退订": "withdrawn",
}


def _domain(value: str) -> str:
    try:
        return clean_domain(value)
    except PydanticCustomError as exc:
        raise CellError(str(exc)) from None


def _country(value: str) -> str:
    try:
        return clean_country(value)
    except PydanticCustomError as exc:
        raise CellError(str(exc)) from None


@dataclass(frozen=True)
class TargetField:
    """A field a column can be mapped to. `column` is the table column it fills ("" for the parts
    of a name); `make` builds the cleaner, given the workspace's default phone region."""

    name: str
    label: str
    column: str
    make: Callable[[str | None], Cleaner]
    sensitive_as: str = ""  # the permission field that guards it (field-level rules), default: name


@dataclass(frozen=True)
class MatchKey:
    """How a staged row finds an existing record: SQL over the table (alias `r`) and over the
    staging table (alias `s`) that must be equal, and the table's index that serves it."""

    name: str
    label: str
    field: str  # the target field the key needs mapped
    record_sql: str
    staged_sql: str


@dataclass(frozen=True)
class ImportTarget:
    object_type: str
    table: str
    fields: tuple[TargetField, ...]
    keys: tuple[MatchKey, ...]
    has_consent: bool = False
    links_company: bool = False  # company_name finds the company record by its name
    extra_columns: dict[str, str] = field(default_factory=dict)

    def field(self, name: str) -> TargetField | None:
        return next((f for f in self.fields if f.name == name), None)

    def key(self, name: str) -> MatchKey | None:
        return next((k for k in self.keys if k.name == name), None)

    @property
    def columns(self) -> list[str]:
        """The table columns an import can fill, in a fixed order (name first)."""
        seen: list[str] = []
        for f in self.fields:
            if f.column and f.column not in seen:
                seen.append(f.column)
        return seen


def _static(cleaner: Cleaner) -> Callable[[str | None], Cleaner]:
    return lambda _region: cleaner


_NAME = TargetField("name", "Name", "name", _static(_text(MAX_NAME)))
_FIRST = TargetField("first_name", "First name", "", _static(_text(MAX_NAME)), sensitive_as="name")
_LAST = TargetField("last_name", "Last name", "", _static(_text(MAX_NAME)), sensitive_as="name")
_EMAIL = TargetField("email", "Email", "email", _static(clean_email))
_PHONE = TargetField("phone", "Phone", "phone", _phone)
_COMPANY_NAME = TargetField("company_name", "Company", "company_name", _static(_text(200)))
_TITLE = TargetField("title", "Job title", "title", _static(_text(200)))
_SOURCE = TargetField("source", "Source", "source", _static(_text(100)))
_TAGS = TargetField("tags", "Tags", "tags", _static(clean_tags))
_NOTES = TargetField("notes", "Notes", "notes", _static(_text(5000)))

# Keys: the expressions of the tables' own indexes (contacts_email_idx, ..._phone_digits_idx,
# ..._name_id_idx; companies_domain_idx, companies_name_id_idx), so each lookup is an index scan.
_EMAIL_KEY = MatchKey("email", "Email", "email", "lower(r.email)", "lower(s.email)")
_PHONE_KEY = MatchKey("phone", "Phone", "phone", "regexp_replace(r.phone, '[^0-9]', '', 'g')",
                      "regexp_replace(s.phone, '[^0-9]', '', 'g')")
_NAME_KEY = MatchKey("name", "Name", "name", "lower(r.name)", "lower(s.name)")

CONTACTS = ImportTarget(
    object_type="contacts", table="contacts",
    fields=(_NAME, _FIRST, _LAST, _EMAIL, _PHONE, _COMPANY_NAME, _TITLE,
            TargetField("lifecycle_stage", "Lifecycle stage", "lifecycle_stage",
                        _static(_choice(LIFECYCLE_STAGES, _LIFECYCLE_ALIASES))),
            _SOURCE, _TAGS, _NOTES,
            TargetField("marketing_consent", "Marketing consent", "marketing_consent",
                        _static(_choice(CONSENT_STATES, _CONSENT_ALIASES)))),
    keys=(_EMAIL_KEY, _PHONE_KEY, _NAME_KEY),
    has_consent=True, links_company=True,
)
COMPANIES = ImportTarget(
    object_type="companies", table="companies",
    fields=(_NAME, TargetField("domain", "Domain", "domain", _static(_domain)),
            TargetField("industry", "Industry", "industry", _static(_text(100))),
            TargetField("size", "Size", "size", _static(_choice(COMPANY_SIZES, {}))),
            _PHONE, TargetField("address", "Address", "address", _static(_text(500))),
            TargetField("city", "City", "city", _static(_text(100))),
            TargetField("country", "Country", "country", _static(_country)), _NOTES, _TAGS),
    keys=(MatchKey("domain", "Domain", "domain", "lower(r.domain)", "lower(s.domain)"), _NAME_KEY),
)
LEADS = ImportTarget(
    object_type="leads", table="leads",
    fields=(_NAME, _FIRST, _LAST, _COMPANY_NAME, _TITLE, _EMAIL, _PHONE,
            TargetField("status", "Status", "status", _static(_choice(LEAD_STATUSES, _LEAD_STATUS_ALIASES))),
            _SOURCE, _NOTES, _TAGS),
    keys=(_EMAIL_KEY, _PHONE_KEY, _NAME_KEY),
)
TARGETS: dict[str, ImportTarget] = {t.object_type: t for t in (CONTACTS, COMPANIES, LEADS)}


def join_name(first: str, last: str) -> str:
    """A full name from its parts: family name first without a space when both are CJK (张 + 伟 ->
    张伟), "First Last" otherwise."""
    if first and last and _is_cjk(first) and _is_cjk(last):
        return last + first
    return " ".join(p for p in (first, last) if p)


def _is_cjk(text: str) -> bool:
    return all("\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\u3400" <= ch <= "\u4dbf"
               for ch in text)


class RowCleaner:
    """Turns one file row into the staged values of a record, or a reason to reject it.

    `mapping` is column index -> target field. The staged row is (line, *columns, custom json)
    in `target.columns` order, None where the file gave nothing (an update leaves such fields as
    they are; a new record takes the column's default)."""

    def __init__(self, target: ImportTarget, mapping: dict[int, str], custom: Sequence[CustomField],
                 region: str | None, width: int) -> None:
        self.target = target
        self.width = width
        self.columns = target.columns
        position = {c: i for i, c in enumerate(self.columns)}
        self.plain: list[tuple[int, int, str, Cleaner]] = []
        self.custom: list[tuple[int, CustomField]] = []
        self.first = self.last = -1
        by_key = {c.key: c for c in custom}
        for index, name in sorted(mapping.items()):
            if name.startswith(CUSTOM_PREFIX):
                self.custom.append((index, by_key[name[len(CUSTOM_PREFIX):]]))
            elif name == "first_name":
                self.first = index
            elif name == "last_name":
                self.last = index
            else:
                spec = target.field(name)
                assert spec is not None, name  # checked when the mapping was saved
                self.plain.append((index, position[spec.column], spec.label, spec.make(region)))
        mapped_custom = {c.key for _, c in self.custom}
        self.required_custom = [c for c in custom if c.required and c.key not in mapped_custom]
        self.name_at = position["name"]
        self.name_mapped = "name" in mapping.values()

    def clean(self, cells: list[str]) -> tuple[Any, ...] | str:
        """The staged values (without the line number), or the reason the row is rejected."""
        if len(cells) > self.width and any(c.strip() for c in cells[self.width:]):
            return f"the row has {len(cells)} cells but the header has {self.width} columns"
        values: list[Any] = [None] * len(self.columns)
        size = len(cells)
        for index, at, label, cleaner in self.plain:
            raw = cells[index].strip() if index < size else ""
            if not raw:
                continue
            try:
                values[at] = cleaner(raw)
            except CellError as exc:
                return f"{label}: {exc}"
        if not self.name_mapped:
            first = cells[self.first].strip() if 0 <= self.first < size else ""
            last = cells[self.last].strip() if 0 <= self.last < size else ""
            joined = join_name(first, last)
            if len(joined) > MAX_NAME:
                return f"Name: at most {MAX_NAME} characters"
            values[self.name_at] = joined or None
        if values[self.name_at] is None:
            return "Name: required, and empty in this row"
        custom: dict[str, Any] = {}
        for index, definition in self.custom:
            raw = cells[index].strip() if index < size else ""
            try:
                cleaned = clean_value(definition, _custom_input(definition, raw))
            except ValueError as exc:
                return f"{definition.label}: {exc}"
            if cleaned in (None, []):
                if definition.required:
                    return f"{definition.label}: required, and empty in this row"
                continue
            custom[definition.key] = cleaned
        for definition in self.required_custom:
            return f"{definition.label}: required, and the file has no column for it"
        return (*values, json.dumps(custom, ensure_ascii=False) if custom else None)


_DATE_FORMATS = (re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$"),)


def _custom_input(definition: CustomField, raw: str) -> Any:
    """A cell as the custom field's checker takes it: lists split for multi-select, dates in
    common written forms (2026/11/3, 2026.11.03, 2026年11月3日) as ISO, number separators dropped."""
    if not raw:
        return None
    if definition.kind == "multi_select":
        return [p.strip() for p in _TAG_SPLIT.split(raw) if p.strip()]
    if definition.kind == "date":
        for pattern in _DATE_FORMATS:
            found = pattern.match(raw)
            if found:
                year, month, day = found.groups()
                return f"{int(year):04d}-{int(month):02d}-{int(day):02d}"
        return raw.split("T")[0].split(" ")[0] if re.match(r"^\d{4}-\d{2}-\d{2}[T ]", raw) else raw
    if definition.kind in ("number", "currency"):
        return re.sub(r"^[¥￥$€£]|[,\s]", "", raw)
    return raw
