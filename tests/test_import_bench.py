"""The import benchmark's pieces at a small size: the CSV generator keeps its promises (GBK, 12
columns, ~5% invalid rows the import really rejects, ~10% duplicates of existing addresses), and
`kith import-bench` runs end to end and prints every figure (behaviour, not timing)."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from kith.platform.db import connect_raw
from kith.tenants.bench.import_file import HEADERS, INVALID_KINDS, ImportFile, write_import_file
from kith.tenants.imports.mapping import suggest_mapping
from kith.tenants.imports.reading import inspect_file, iter_rows
from kith.tenants.imports.targets import TARGETS, RowCleaner

from .conftest import Services

ROWS = 2_000
EXISTING = [f"existing.person{n}@huaxin-tech.example" for n in range(300)]
HAN = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> ImportFile:
    path = tmp_path_factory.mktemp("import-bench") / "contacts.csv"
    lines: list[str] = []
    file = write_import_file(path, ROWS, EXISTING, seed=7, progress=lines.append)
    assert lines and lines[-1].strip().startswith(f"{ROWS:,}/{ROWS:,} rows written")
    return file


def test_the_file_is_gbk_with_twelve_chinese_headed_columns(made: ImportFile) -> None:
    path = made.path
    raw = path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # really GBK, not UTF-8 that happens to hold Chinese
    rows = list(csv.reader(io.StringIO(raw.decode("gbk", errors="strict"), newline="")))
    assert tuple(rows[0]) == HEADERS and len(HEADERS) == 12
    assert len(rows) == ROWS + 1 and all(len(r) == 12 for r in rows)
    names = [r[0] for r in rows[1:] if r[0].strip()]
    assert 0.2 < sum(1 for n in names if HAN.search(n)) / len(names) < 0.4
    # what the import's own reader finds in it
    facts = inspect_file(path)
    assert facts.encoding == "gb18030" and facts.delimiter == "," and facts.headers == list(HEADERS)


def test_invalid_rows_and_duplicates_are_as_promised(made: ImportFile) -> None:
    path, file = made.path, made
    assert file.rows == ROWS and file.size_bytes == path.stat().st_size
    assert 0.03 * ROWS < file.invalid_rows < 0.07 * ROWS
    assert all(file.invalid[k] > 0 for k in INVALID_KINDS)
    assert 0.07 * ROWS < file.duplicates < 0.13 * ROWS
    # run every row through the import's reader, its suggested mapping and its row cleaner: the
    # rows the file calls invalid are exactly the ones the import rejects
    facts = inspect_file(path)
    mapping, _ = suggest_mapping("contacts", facts.headers, [])
    assert set(mapping.values()) >= {"name", "phone", "email", "company_name", "lifecycle_stage", "marketing_consent"}
    cleaner = RowCleaner(TARGETS["contacts"], mapping, [], None, len(facts.headers))
    email_at = next(i for i, name in mapping.items() if name == "email")
    reasons: Counter[str] = Counter()
    existing = {e.lower() for e in EXISTING}
    duplicates, new_emails = 0, []
    for _, cells in iter_rows(path, facts):
        cleaned = cleaner.clean(cells)
        if isinstance(cleaned, str):
            reasons[cleaned.split(":")[0]] += 1
            continue
        email = cells[email_at].lower()
        if email in existing:
            duplicates += 1
        else:
            new_emails.append(email)
    assert sum(reasons.values()) == file.invalid_rows
    assert set(reasons) == {"Email", "Phone", "Name", "Lifecycle stage"}, reasons
    assert duplicates == file.duplicates
    assert len(new_emails) == len(set(new_emails)) == file.new_rows


def test_the_same_seed_writes_the_same_file(made: ImportFile, tmp_path: Path) -> None:
    again = write_import_file(tmp_path / "again.csv", ROWS, EXISTING, seed=7)
    assert again.path.read_bytes() == made.path.read_bytes()
    other = write_import_file(tmp_path / "other.csv", ROWS, EXISTING, seed=8)
    assert other.path.read_bytes() != made.path.read_bytes()


async def test_the_bench_command_prints_every_figure(db: Services, tmp_path: Path) -> None:
    database = f"kith_import_bench_t{os.getpid()}"
    work = tmp_path / "work"
    proc = subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "-m", "kith.platform.cli.main", "import-bench", "--rows", "1500", "--existing", "200",
         "--few-tenants", "3", "--many-tenants", "5", "--small-contacts", "40", "--backup-samples", "1",
         "--database", database, "--work-dir", str(work)],
        env=os.environ.copy(), capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    # progress while running, the import's own output passed on
    assert "rows written" in out and re.search(r"^    \| ", out, re.MULTILINE) and "  imported in " in out
    for line in ("| import of 1,500 rows", "| import peak RSS", "| import counts: created / skipped as duplicates /",
                 "| export of ", "| backup of that workspace", "| verified restore of it",
                 "| backup + verified restore", "| small workspace's backup", "3 tenant schemas |",
                 "| same, 5 tenant schemas"):
        assert line in out, line
    assert re.search(r"\| import peak RSS .*\| \d+ MB \|", out)
    assert "as expected |" in out  # the import's counts agree with the file's
    assert re.search(r"Machine: \d+ cores .* RAM, PostgreSQL \d+", out)
    export = re.search(r"\| export of ([\d,]+) contacts", out)
    created = re.search(r"\| import counts: created / skipped as duplicates / rejected \| ([\d,]+) /", out)
    assert export and created and int(export[1].replace(",", "")) == 200 + int(created[1].replace(",", ""))
    # the database and the work folder are gone afterwards (no --keep)
    assert not work.exists()
    conn = await connect_raw(db.database_url)
    try:
        assert not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", database)
    finally:
        await conn.close()
