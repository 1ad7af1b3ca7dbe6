"""Rows of the benchmark's tables, made from a seeded random.Random: the same seed, the same data.

About `chinese_share` of companies are Chinese (名称, city, +86 phones, CNY deals), and so are
their people; contacts without a company are Chinese in the same share. Each row is a tuple in
the order of its table's COLUMNS, ready for COPY. Ids are given explicitly so that contacts can
point at companies and deals at contacts without reading anything back.
"""

from __future__ import annotations

import random
import unicodedata
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from kith.tenants.bench import vocabulary as v

Row = tuple[Any, ...]

COMPANY_COLUMNS = ("id", "name", "domain", "industry", "size", "phone", "address", "city", "country", "notes",
                   "owner_id", "tags", "pooled_at", "claimed_at", "last_activity_at", "created_by_id",
                   "created_at", "updated_at")
CONTACT_COLUMNS = ("id", "name", "email", "phone", "company_name", "notes", "created_by_id", "created_at",
                   "updated_at", "owner_id", "marketing_consent", "company_id", "title", "lifecycle_stage", "source",
                   "tags", "last_activity_at")
DEAL_COLUMNS = ("id", "name", "amount", "currency", "expected_close", "pipeline_id", "stage_id", "company_id",
                "contact_id", "owner_id", "loss_reason", "closed_at", "tags", "created_by_id", "created_at",
                "updated_at")
ACTIVITY_COLUMNS = ("kind", "subject", "body", "occurred_at", "duration_minutes", "company_id", "contact_id",
                    "created_by_id", "created_at")
TASK_COLUMNS = ("title", "due_at", "status", "assignee_id", "company_id", "contact_id", "reminded_at",
                "completed_at", "created_by_id", "created_at", "updated_at")

HISTORY_SECONDS = 3 * 365 * 86400  # records were created over the last three years
POOL_SHARE = 0.08  # companies nobody owns: the public pool


@dataclass(frozen=True)
class Stage:
    id: int
    name: str
    kind: str  # open, won, lost


def _ascii(text: str) -> str:
    """An email-safe form of a Western name part: O'Brien -> obrien, Müller -> muller."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


_WEST_FIRST_ASCII = tuple(_ascii(n) for n in v.WEST_FIRST)
_WEST_LAST_ASCII = tuple(_ascii(n) for n in v.WEST_LAST)


class DataMaker:
    """Makes companies, then contacts (which need the companies), then deals, activities and tasks.

    It remembers a few facts per company and contact (owner, place, language) in compact arrays so
    later tables stay consistent with earlier ones: a contact works where its company is, a deal is
    in its company's currency and belongs to its contact's owner.
    """

    def __init__(self, *, seed: int, member_ids: Sequence[int], stages: Sequence[Stage], pipeline_id: int,
                 now: datetime, chinese_share: float = 0.3) -> None:
        if not member_ids:
            raise ValueError("the benchmark needs at least one member to own records")
        self.rnd = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
        self.members = tuple(member_ids)
        self.stages = tuple(stages)
        self.stage_weights = [v.STAGE_WEIGHTS.get(s.name, 5) for s in stages]
        self.pipeline_id = pipeline_id
        self.now = now
        self.today = now.date()
        self.chinese_share = chinese_share
        # per company, by id - first_company_id: place (>= 0: index in CN_CITIES; < 0: -1 - index in
        # WEST_CITIES), owner (0 = the pool), short name for deal names, domain and full name
        self.first_company_id = 1
        self.company_place = array("h")
        self.company_owner = array("q")
        self.company_short: list[str] = []
        self.company_domain: list[str] = []
        self.company_name: list[str] = []
        # per contact, by id - first_contact_id: company id (0 = none), owner, Chinese or not
        self.first_contact_id = 1
        self.contact_company = array("q")
        self.contact_owner = array("q")
        self.contact_cn = bytearray()
        self._domains: dict[str, int] = {}

    # --- shared helpers -------------------------------------------------------------------------

    def _past(self) -> datetime:
        return self.now - timedelta(seconds=self.rnd.randrange(HISTORY_SECONDS))

    def _later(self, after: datetime) -> datetime:
        span = int((self.now - after).total_seconds())
        return after + timedelta(seconds=self.rnd.randrange(span + 1)) if span > 0 else after

    def _tags(self) -> list[str]:
        count = self.rnd.choices((0, 1, 2, 3), (45, 30, 18, 7))[0]
        return self.rnd.sample(v.TAGS, count) if count else []

    def _digits(self, n: int) -> str:
        return str(self.rnd.randrange(10 ** n)).zfill(n)

    def _west_phone(self, city: int) -> str:
        return v.WEST_CITIES[city][3].format(d1=self._digits(1), d2=self._digits(2), d3=self._digits(3),
                                             d4=self._digits(4))

    def _cn_mobile(self) -> str:
        return f"+86 {self.rnd.choice(v.CN_MOBILE_PREFIXES)} {self._digits(4)} {self._digits(4)}"

    def _member(self) -> int:
        return self.rnd.choice(self.members)

    def _unique_domain(self, domain: str) -> str:
        seen = self._domains.get(domain, 0)
        self._domains[domain] = seen + 1
        if not seen:
            return domain
        stem, _, tld = domain.partition(".")
        return f"{stem}{seen + 1}.{tld}"

    # --- companies ------------------------------------------------------------------------------

    def companies(self, first_id: int, count: int) -> list[Row]:
        """Companies with ids first_id .. first_id + count - 1 (call once per batch, in order)."""
        if not self.company_name:
            self.first_company_id = first_id
        rnd = self.rnd
        rows: list[Row] = []
        for company_id in range(first_id, first_id + count):
            if rnd.random() < self.chinese_share:
                row, place, short = self._chinese_company(company_id)
            else:
                row, place, short = self._western_company(company_id)
            rows.append(row)
            self.company_place.append(place)
            self.company_owner.append(row[10] or 0)
            self.company_short.append(short)
            self.company_domain.append(row[2])
            self.company_name.append(row[1])
        return rows

    def _company_common(self) -> tuple[int | None, datetime | None, datetime | None, datetime, datetime,
                                       datetime | None]:
        created = self._past()
        pooled = self.rnd.random() < POOL_SHARE
        owner = None if pooled else self._member()
        pooled_at = self._later(created) if pooled else None
        claimed_at = None if pooled else created
        last_activity = self._later(created) if self.rnd.random() < 0.6 else None
        return owner, pooled_at, claimed_at, created, self._later(created), last_activity

    def _chinese_company(self, company_id: int) -> tuple[Row, int, str]:
        rnd = self.rnd
        city = rnd.randrange(len(v.CN_CITIES))
        city_name, _, area = v.CN_CITIES[city]
        brand, brand_py = rnd.choice(v.CN_BRANDS)
        if rnd.random() < 0.7:
            second, second_py = rnd.choice(v.CN_BRANDS)
            if second != brand:
                brand, brand_py = brand + second, brand_py + second_py
        word, word_py, industry = rnd.choice(v.CN_INDUSTRIES)
        name = f"{city_name}{brand}{word}{rnd.choice(v.CN_SUFFIXES)}"
        domain = self._unique_domain(f"{brand_py}-{word_py}.example")
        local = self._digits(8)
        phone = f"+86 {area} {local[:4]} {local[4:]}"
        address = (f"{city_name}市{rnd.choice(v.CN_DISTRICTS)}{rnd.choice(v.CN_ROADS)}"
                   f"{rnd.randrange(1, 999)}号")
        owner, pooled_at, claimed_at, created, updated, last_activity = self._company_common()
        notes = rnd.choice(v.CN_NOTES) if rnd.random() < 0.2 else ""
        row = (company_id, name, domain, industry, rnd.choices(v.COMPANY_SIZES, v.COMPANY_SIZE_WEIGHTS)[0], phone,
               address, city_name, "CN", notes, owner, self._tags(), pooled_at, claimed_at, last_activity, owner,
               created, updated)
        return row, city, f"{brand}{word}"

    def _western_company(self, company_id: int) -> tuple[Row, int, str]:
        rnd = self.rnd
        city = rnd.randrange(len(v.WEST_CITIES))
        city_name, country, _, _ = v.WEST_CITIES[city]
        brand = rnd.choice(v.WEST_BRANDS)
        word, industry = rnd.choice(v.WEST_INDUSTRIES)
        name = f"{brand} {word} {rnd.choice(v.WEST_SUFFIXES)}"
        domain = self._unique_domain(f"{_ascii(brand)}-{_ascii(word)}.example")
        address = f"{rnd.randrange(1, 2000)} {rnd.choice(v.WEST_STREETS)}, {city_name}"
        owner, pooled_at, claimed_at, created, updated, last_activity = self._company_common()
        notes = rnd.choice(v.WEST_NOTES) if rnd.random() < 0.2 else ""
        row = (company_id, name, domain, industry, rnd.choices(v.COMPANY_SIZES, v.COMPANY_SIZE_WEIGHTS)[0],
               self._west_phone(city), address, city_name, country, notes, owner, self._tags(), pooled_at,
               claimed_at, last_activity, owner, created, updated)
        return row, -1 - city, brand

    # --- contacts -------------------------------------------------------------------------------

    def contacts(self, first_id: int, count: int) -> list[Row]:
        """Contacts with ids first_id .. first_id + count - 1; 85% work at one of the companies."""
        if not self.company_name:
            raise RuntimeError("make the companies first: contacts point at them")
        if not self.contact_owner:
            self.first_contact_id = first_id
        rnd = self.rnd
        n_companies = len(self.company_name)
        rows: list[Row] = []
        for contact_id in range(first_id, first_id + count):
            index = rnd.randrange(n_companies) if rnd.random() < 0.85 else -1
            if index >= 0:
                place = self.company_place[index]
                chinese = (place >= 0) == (rnd.random() < 0.95)  # a few people abroad, either way
                company_id = self.first_company_id + index
                company_name = self.company_name[index]
                mail_domain = self.company_domain[index]
                company_owner = self.company_owner[index]
                owner = company_owner if company_owner and rnd.random() < 0.7 else self._member()
            else:
                chinese = rnd.random() < self.chinese_share
                place = rnd.randrange(len(v.CN_CITIES)) if chinese else -1 - rnd.randrange(len(v.WEST_CITIES))
                company_id, company_name = None, ""
                mail_domain = rnd.choice(v.CN_FREE_MAIL if chinese else v.WEST_FREE_MAIL)
                owner = self._member()
            if chinese:
                surname, surname_py = rnd.choice(v.CN_SURNAMES)
                given, given_py = rnd.choice(v.CN_GIVEN)
                name = surname + given
                user = f"{surname_py}.{given_py}"
                title = rnd.choice(v.CN_TITLES)
                notes = rnd.choice(v.CN_NOTES) if rnd.random() < 0.25 else ""
            else:
                first = rnd.randrange(len(v.WEST_FIRST))
                last = rnd.randrange(len(v.WEST_LAST))
                name = f"{v.WEST_FIRST[first]} {v.WEST_LAST[last]}"
                user = f"{_WEST_FIRST_ASCII[first]}.{_WEST_LAST_ASCII[last]}"
                title = rnd.choice(v.WEST_TITLES)
                notes = rnd.choice(v.WEST_NOTES) if rnd.random() < 0.25 else ""
            if rnd.random() < 0.6:
                user += str(rnd.randrange(1, 1000))
            email = f"{user}@{mail_domain}" if rnd.random() < 0.95 else ""
            roll = rnd.random()
            if roll < 0.1:
                phone = ""
            elif place >= 0:
                phone = self._cn_mobile()
            else:
                phone = self._west_phone(-1 - place)
            created = self._past()
            rows.append((
                contact_id, name, email, phone, company_name, notes, owner, created, self._later(created), owner,
                rnd.choices(v.CONSENT, v.CONSENT_WEIGHTS)[0], company_id, title if rnd.random() < 0.8 else "",
                rnd.choices(v.LIFECYCLE_STAGES, v.LIFECYCLE_WEIGHTS)[0], rnd.choice(v.SOURCES), self._tags(),
                self._later(created) if rnd.random() < 0.4 else None,
            ))
            self.contact_company.append(company_id or 0)
            self.contact_owner.append(owner)
            self.contact_cn.append(1 if chinese else 0)
        return rows

    def _random_contact(self) -> int:
        return self.rnd.randrange(len(self.contact_owner))

    # --- deals ----------------------------------------------------------------------------------

    def deals(self, first_id: int, count: int) -> list[Row]:
        """Deals spread over the default pipeline's stages, for a contact and its company."""
        if not self.contact_owner:
            raise RuntimeError("make the contacts first: deals point at them")
        rnd = self.rnd
        rows: list[Row] = []
        stages = rnd.choices(self.stages, self.stage_weights, k=count)
        for deal_id, stage in zip(range(first_id, first_id + count), stages, strict=True):
            index = self._random_contact()
            contact_id = self.first_contact_id + index
            company_id = self.contact_company[index] or None
            if company_id is not None:
                company_index = company_id - self.first_company_id
                place = self.company_place[company_index]
                short = self.company_short[company_index]
            else:
                place = 0 if self.contact_cn[index] else -1
                short = ""
            if place >= 0:
                currency = "CNY" if rnd.random() < 0.9 else "USD"
                word = rnd.choice(v.CN_DEAL_WORDS)
                name = f"{short} {word}" if short else word
            else:
                currency = v.WEST_CITIES[-1 - place][2] if rnd.random() < 0.9 else "USD"
                word = rnd.choice(v.WEST_DEAL_WORDS)
                name = f"{short} - {word} {self.today.year + rnd.randrange(-1, 2)}" if short else word
            created = self._past()
            closed = self._later(created) if stage.kind != "open" else None
            rows.append((
                deal_id, name, Decimal(rnd.randrange(50_000, 200_000_000, 50)).scaleb(-2), currency,
                self.today + timedelta(days=rnd.randrange(-180, 271)), self.pipeline_id, stage.id, company_id,
                contact_id, self.contact_owner[index], rnd.choice(v.LOSS_REASONS) if stage.kind == "lost" else "",
                closed, self._tags(), self.contact_owner[index], created, closed or self._later(created),
            ))
        return rows

    # --- the timeline and tasks -----------------------------------------------------------------

    def activities(self, count: int) -> list[Row]:
        """Calls, meetings, emails and notes on random contacts (and their companies)."""
        rnd = self.rnd
        rows: list[Row] = []
        for _ in range(count):
            index = self._random_contact()
            chinese = self.contact_cn[index]
            kind = rnd.choice(v.ACTIVITY_KINDS)
            subject = rnd.choice(v.CN_ACTIVITY_SUBJECTS if chinese else v.WEST_ACTIVITY_SUBJECTS)
            body = rnd.choice(v.CN_NOTES if chinese else v.WEST_NOTES)
            occurred = self._past()
            rows.append((kind, subject, body, occurred, rnd.randrange(5, 120) if kind in ("call", "meeting") else None,
                         self.contact_company[index] or None, self.first_contact_id + index,
                         self.contact_owner[index], occurred))
        return rows

    def tasks(self, count: int) -> list[Row]:
        """Follow-ups for random contacts, assigned to their owners; a third are done."""
        rnd = self.rnd
        rows: list[Row] = []
        for _ in range(count):
            index = self._random_contact()
            chinese = self.contact_cn[index]
            created = self._past()
            due = created + timedelta(days=rnd.randrange(1, 60))
            done = rnd.random() < 0.33
            completed = self._later(created) if done else None
            # an open task already due was reminded when it fell due: loading the benchmark must not
            # queue a reminder email for every one of them
            reminded = due if not done and due <= self.now else None
            rows.append((rnd.choice(v.CN_TASK_TITLES if chinese else v.WEST_TASK_TITLES), due,
                         "done" if done else "open", self.contact_owner[index],
                         self.contact_company[index] or None, self.first_contact_id + index, reminded, completed,
                         self.contact_owner[index], created, completed or created))
        return rows
