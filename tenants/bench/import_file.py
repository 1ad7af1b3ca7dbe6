"""The import benchmark's CSV file: contacts as a Chinese office exports them, GBK-encoded.

Twelve columns with Chinese headers (姓名, 手机, 邮箱, 公司, 职位, 城市, 来源, 标签, 备注,
生命周期阶段, 营销许可, 部门); 城市 and 部门 have no contact field to go to, so an import leaves
them out, as people's files often carry columns nobody maps. About 30% of the people are Chinese
(name, +86 mobile, Chinese company, title and department), the rest Western, made from the CRM
benchmark's vocabulary.

Each row is one of three kinds, drawn with a seeded random.Random:
- invalid (`invalid_share`, 5%): a bad email, a phone with letters, an empty name or a lifecycle
  stage that is none of the known ones; the import must reject it;
- duplicate (`duplicate_share`, 10%): the email of an existing contact of the workspace (some in
  upper case: duplicates are found ignoring case); the import must skip it;
- new: a fresh contact whose email no one else in the file or the workspace has.

New addresses are under example.com (reserved for examples by RFC 2606, so nothing can reach a
real person) and have the usual shape of real ones; the existing contacts' addresses end in the
`.example` top-level domain, as the CRM benchmark makes them.

The file is written row by row through a GBK text stream: memory stays flat whatever `rows`.
"""

from __future__ import annotations

import csv
import random
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kith.tenants.bench import vocabulary as v

HEADERS = ("姓名", "手机", "邮箱", "公司", "职位", "城市", "来源", "标签", "备注", "生命周期阶段", "营销许可", "部门")
ENCODING = "gbk"
INVALID_KINDS = ("email", "phone", "name", "stage")
CN_DEPARTMENTS = ("销售部", "市场部", "采购部", "技术部", "财务部", "行政部", "运营部", "客服部", "总经办")
WEST_DEPARTMENTS = ("Sales", "Marketing", "Purchasing", "Engineering", "Finance", "Operations", "Support")
LIFECYCLE_LABELS = {"subscriber": "订阅者", "lead": "线索", "qualified": "合格线索", "opportunity": "商机",
                    "customer": "客户", "evangelist": "推广者", "other": "其他"}
CONSENT_WORDS = ("同意", "是", "yes", "granted", "否", "no", "withdrawn")
FREE_MAIL = ("mail.example.com", "inbox.example.com", "example.net", "example.org")
COMPANIES = 2_000  # distinct companies the people work at
PROGRESS_EVERY = 100_000
_WEST_PHONES = {city[0]: city[3] for city in v.WEST_CITIES}  # city -> its phone pattern
Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def _ascii(text: str) -> str:
    """An email-safe form of a Western name part: O'Brien -> obrien, Müller -> muller."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


@dataclass(frozen=True)
class _Company:
    name: str
    domain: str
    city: str
    chinese: bool


@dataclass
class ImportFile:
    """What was written: the file's promises, counted as they were kept."""

    path: Path
    rows: int = 0
    size_bytes: int = 0
    invalid: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INVALID_KINDS, 0))
    duplicates: int = 0
    chinese_names: int = 0
    seconds: float = 0.0

    @property
    def invalid_rows(self) -> int:
        return sum(self.invalid.values())

    @property
    def new_rows(self) -> int:
        """Rows that must become new contacts."""
        return self.rows - self.invalid_rows - self.duplicates


class ImportFileMaker:
    """Makes the rows of the benchmark's CSV file; see the module docstring."""

    def __init__(self, existing_emails: Sequence[str], *, seed: int = 1, chinese_share: float = 0.3,
                 invalid_share: float = 0.05, duplicate_share: float = 0.10) -> None:
        self.rnd = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
        self.chinese_share = chinese_share
        self.invalid_share = invalid_share
        # without existing contacts there is nothing to duplicate
        self.duplicate_share = duplicate_share if existing_emails else 0.0
        # each existing address is used once before any is used again (the file may want more
        # duplicates than the workspace has addresses)
        self.existing = list(existing_emails)
        self.rnd.shuffle(self.existing)
        self.next_existing = 0
        self.companies = [self._company() for _ in range(COMPANIES)]

    def _company(self) -> _Company:
        rnd = self.rnd
        if rnd.random() < self.chinese_share:
            city, _, _ = rnd.choice(v.CN_CITIES)
            brand, brand_py = rnd.choice(v.CN_BRANDS)
            word, word_py, _ = rnd.choice(v.CN_INDUSTRIES)
            return _Company(f"{city}{brand}{word}{rnd.choice(v.CN_SUFFIXES)}", f"{brand_py}-{word_py}.example.com",
                            city, True)
        city_name = rnd.choice(v.WEST_CITIES)[0]
        brand = rnd.choice(v.WEST_BRANDS)
        word, _ = rnd.choice(v.WEST_INDUSTRIES)
        return _Company(f"{brand} {word} {rnd.choice(v.WEST_SUFFIXES)}",
                        f"{_ascii(brand)}-{_ascii(word)}.example.com", city_name, False)

    def _digits(self, n: int) -> str:
        return str(self.rnd.randrange(10 ** n)).zfill(n)

    def _cn_mobile(self) -> str:
        prefix, a, b = self.rnd.choice(v.CN_MOBILE_PREFIXES), self._digits(4), self._digits(4)
        style = self.rnd.randrange(3)
        if style == 0:
            return f"+86 {prefix} {a} {b}"
        if style == 1:
            return f"+86{prefix}{a}{b}"
        return f"+86-{prefix}-{a}-{b}"

    def _tags(self, chinese: bool) -> str:
        count = self.rnd.choices((0, 1, 2, 3), (45, 30, 18, 7))[0]
        return ("，" if chinese else ", ").join(self.rnd.sample(v.TAGS, count)) if count else ""

    def row(self, number: int) -> tuple[list[str], str]:
        """The cells of data row `number` (from 1) and its kind: "new", "duplicate" or an invalid kind."""
        rnd = self.rnd
        roll = rnd.random()
        kind = ("invalid" if roll < self.invalid_share
                else "duplicate" if roll < self.invalid_share + self.duplicate_share else "new")
        company = rnd.choice(self.companies) if rnd.random() < 0.85 else None
        chinese = company.chinese if company is not None else rnd.random() < self.chinese_share
        if chinese:
            surname, surname_py = rnd.choice(v.CN_SURNAMES)
            given, given_py = rnd.choice(v.CN_GIVEN)
            name, user = surname + given, f"{surname_py}.{given_py}"
            city = company.city if company is not None else rnd.choice(v.CN_CITIES)[0]
            phone = self._cn_mobile()
            title, department = rnd.choice(v.CN_TITLES), rnd.choice(CN_DEPARTMENTS)
            notes = rnd.choice(v.CN_NOTES) if rnd.random() < 0.2 else ""
        else:
            first, last = rnd.choice(v.WEST_FIRST), rnd.choice(v.WEST_LAST)
            name, user = f"{first} {last}", f"{_ascii(first)}.{_ascii(last)}"
            city = company.city if company is not None else rnd.choice(v.WEST_CITIES)[0]
            phone = _WEST_PHONES[city].format(d1=self._digits(1), d2=self._digits(2), d3=self._digits(3),
                                              d4=self._digits(4))
            title, department = rnd.choice(v.WEST_TITLES), rnd.choice(WEST_DEPARTMENTS)
            notes = rnd.choice(v.WEST_NOTES) if rnd.random() < 0.2 else ""
        domain = company.domain if company is not None else rnd.choice(FREE_MAIL)
        # the row number makes the address unique: no name part ends in a digit
        email = f"{user}{number}@{domain}"
        if kind == "duplicate":
            email = self.existing[self.next_existing % len(self.existing)]
            self.next_existing += 1
            if rnd.random() < 0.1:
                email = email.upper()
        if rnd.random() < 0.1:
            phone = ""
        stage = rnd.choices(v.LIFECYCLE_STAGES, v.LIFECYCLE_WEIGHTS)[0]
        cells = [name, phone, email, company.name if company is not None else "",
                 title if rnd.random() < 0.8 else "", city, rnd.choice(v.SOURCES), self._tags(chinese), notes,
                 LIFECYCLE_LABELS[stage] if chinese or rnd.random() < 0.3 else stage,
                 rnd.choice(CONSENT_WORDS) if rnd.random() < 0.6 else "", department]
        if kind == "invalid":
            kind = rnd.choice(INVALID_KINDS)
            self._spoil(cells, kind, user, domain)
        return cells, kind

    def _spoil(self, cells: list[str], kind: str, user: str, domain: str) -> None:
        """Make one cell of the row wrong in a way people's files are."""
        rnd = self.rnd
        if kind == "email":
            cells[2] = rnd.choice((f"{user}@@{domain}", f"{user}#{domain}", f"{user}@", f"{user} at {domain}",
                                   f"{user}@{domain.split('.')[0]}"))
        elif kind == "phone":
            cells[1] = rnd.choice((f"+86 138 {self._digits(2)}AB {self._digits(4)}", "tel: unknown",
                                   f"555-CALL-{self._digits(3)}", "见备注"))
        elif kind == "name":
            cells[0] = rnd.choice(("", "   "))
        else:
            cells[9] = rnd.choice(("待定", "prospect?", "VIP客户"))


def write_import_file(path: Path, rows: int, existing_emails: Sequence[str], *, seed: int = 1,
                      progress: Say = _quiet) -> ImportFile:
    """Write the benchmark's GBK CSV of `rows` data rows to `path`, streaming; returns its counts."""
    started = time.perf_counter()
    maker = ImportFileMaker(existing_emails, seed=seed)
    made = ImportFile(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding=ENCODING, errors="strict", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADERS)
        for number in range(1, rows + 1):
            cells, kind = maker.row(number)
            writer.writerow(cells)
            if kind == "duplicate":
                made.duplicates += 1
            elif kind != "new":
                made.invalid[kind] += 1
            if cells[0] and not cells[0].isascii():
                made.chinese_names += 1
            if number % PROGRESS_EVERY == 0 or number == rows:
                progress(f"  {number:>10,}/{rows:,} rows written ({time.perf_counter() - started:.1f} s)")
    made.rows = rows
    made.size_bytes = path.stat().st_size
    made.seconds = time.perf_counter() - started
    return made
