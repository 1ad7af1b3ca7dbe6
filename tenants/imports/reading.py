"""Reading import files: CSV in any common encoding and XLSX, streamed row by row.

`inspect_file` looks at a file once (its kind, encoding, delimiter, header row and first rows,
for the mapping screen); `iter_rows` then reads every data row with what it found, in constant
memory whatever the file's size. Everything a person can get wrong about a file (empty, binary,
an old .xls, the wrong encoding, a quote left open, a 50 MB cell) is an `ImportFileError` whose
message names the problem and, when it is known, the line.

CSV is read as bytes, one line at a time, and each line is decoded on its own: memory stays flat,
and a byte that is not valid in the encoding is reported with its exact line number (a decoder
working on 8 KB blocks only knows the block). That works for every ASCII-compatible encoding
(UTF-8, GB18030, Big5, Shift_JIS, EUC-KR, Windows code pages), in none of which a newline byte can
occur inside a multi-byte character. UTF-16/32 files, and old Mac files whose lines end with a
bare CR, go through `io.TextIOWrapper` instead; there a decoding error is placed "near" a line.

How the encoding is chosen, unless the person chose one:
1. A byte-order mark decides (UTF-8, UTF-16 LE/BE, UTF-32).
2. NUL bytes in every other position mean UTF-16 without a BOM; NUL bytes otherwise mean binary.
3. The first 64 KB, cut at the last complete line, decoding as UTF-8 means UTF-8. If those bytes
   are all ASCII, 64 KB windows from the middle and the end of the file are checked too, so a file
   whose Chinese text starts after an English header and a few thousand ASCII rows is still found
   to be GBK; an all-ASCII sample is read as UTF-8 (ASCII is a subset of it and of GB18030, so
   such a file reads right under either unless non-ASCII text hides between the windows, and then
   the error names the line and suggests the encoding of that line's bytes).
4. Otherwise charset-normalizer picks among GB18030, Big5, Shift_JIS, EUC-KR and Windows-1252;
   on a tie the order of that list decides (Kith is Chinese-first). GBK and GB2312 are read as
   GB18030, their superset; Big5 as CP950, the Windows superset Taiwanese Excel writes.
People can always choose the encoding (ENCODINGS) and the delimiter (DELIMITERS) themselves.

XLSX is read with python-calamine (the first visible worksheet). Calamine loads a whole worksheet
into memory (Rust side) before rows can be read, about twice the size of the sheet's XML, so a
sheet whose XML exceeds MAX_XLSX_SHEET_BYTES is refused with a message to save it as CSV, which
streams. Rows are then turned into Python strings one at a time. Values become the text a person
sees: integral numbers without ".0", dates in ISO form, booleans TRUE/FALSE, a formula its cached
value; text that starts with "=" stays text and nothing is ever evaluated.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import itertools
import re
import zipfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import partial
from operator import methodcaller
from pathlib import Path, PurePosixPath
from typing import BinaryIO, cast
from xml.etree import ElementTree

import charset_normalizer
from python_calamine import CalamineError, CalamineWorkbook, SheetTypeEnum, SheetVisibleEnum

MAX_CELL_CHARS = 1024 * 1024  # "1 MB": a longer cell is almost always a quote left open
MAX_COLUMNS = 200
MAX_LINE_BYTES = 64 * 1024 * 1024  # a physical line is cut here, so memory stays bounded
MAX_XLSX_SHEET_BYTES = 100 * 1024 * 1024  # uncompressed worksheet XML; ~200,000 rows of 12 columns
SAMPLE_BYTES = 64 * 1024
SAMPLE_ROWS = 5
SAMPLE_CELL_CHARS = 500  # cells shown on the mapping screen are cut here

ENCODINGS: tuple[tuple[str, str], ...] = (
    ("utf-8", "UTF-8"),
    ("utf-8-sig", "UTF-8 with BOM"),
    ("utf-16", "UTF-16 (with BOM)"),
    ("utf-16-le", "UTF-16 LE"),
    ("utf-16-be", "UTF-16 BE"),
    ("gb18030", "GBK / GB18030 (Simplified Chinese)"),
    ("cp950", "Big5 (Traditional Chinese)"),
    ("big5hkscs", "Big5-HKSCS (Hong Kong)"),
    ("cp932", "Shift_JIS (Japanese)"),
    ("cp949", "EUC-KR (Korean)"),
    ("cp1252", "Windows-1252 (Western European)"),
    ("latin-1", "ISO-8859-1 (Latin-1)"),
)
DELIMITERS: tuple[tuple[str, str], ...] = (
    (",", "Comma"),
    (";", "Semicolon"),
    ("\t", "Tab"),
    ("|", "Vertical bar"),
)

# A chosen encoding is read with its superset where one exists: every GBK file is valid GB18030.
_SUPERSETS = {"gbk": "gb18030", "gb2312": "gb18030", "cp936": "gb18030", "ascii": "utf-8"}
# charset-normalizer's answers, as the codecs we read with (see the module docstring, step 4)
_GUESSES = ("gb18030", "big5", "cp932", "cp949", "cp1252")
_GUESS_CODEC = {"gb18030": "gb18030", "big5": "cp950", "cp932": "cp932", "cp949": "cp949", "cp1252": "cp1252"}
_UTF8_FAMILY = {"utf-8", "utf-8-sig"}
_BOMS = (  # longest first: a UTF-32 LE BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_BINARY_MAGIC = (b"%PDF", b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!", b"BZh")
_CONTROL_BYTES = bytes(range(0x00, 0x09)) + bytes(range(0x0E, 0x1B)) + bytes(range(0x1C, 0x20))
# Appended after the last line: when the file ends inside a quoted cell it lands in that cell,
# which is how an unclosed quote is told apart from a last cell that holds a newline.
_END = "\ue000kith-end-of-file\ue000"
_SEP_LINE = re.compile(r"^sep=(.?)$", re.IGNORECASE)  # "sep=;" is read as ["sep=", ""] once ";" splits it
_SPREADSHEET_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PKG_REL_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"

SAVE_AS = "Open it in Excel (or another spreadsheet program) and save it as CSV UTF-8 or as .xlsx."


Rows = Generator[tuple[int, list[str]], None, None]  # (line or sheet row number, cells)


class ImportFileError(ValueError):
    """A file that cannot be read as an import; `message` tells a person what is wrong with it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FileFacts:
    """What `inspect_file` found, and everything `iter_rows` needs to read the file again."""

    fmt: str  # "csv" | "xlsx"
    encoding: str  # the Python codec used ("" for xlsx)
    delimiter: str  # "" for xlsx
    headers: list[str]  # the header row, trimmed; empty cells named "Column 3" and so on
    sample: list[list[str]]  # the first data rows (at most SAMPLE_ROWS), padded to len(headers)
    detected: bool  # encoding and delimiter were detected, not chosen


def encoding_label(codec: str) -> str:
    """The name people know an encoding by ("GBK / GB18030 ..."), or the codec's own name."""
    for name, label in ENCODINGS:
        if name == codec:
            return label
    return codec


def inspect_file(path: Path, *, file_name: str = "", encoding: str | None = None,
                 delimiter: str | None = None) -> FileFacts:
    """Find the file's format, encoding and delimiter (unless chosen), its header row and first
    data rows. The content decides the format: an .xlsx renamed .csv is read as XLSX."""
    file_name = file_name or path.name
    size = path.stat().st_size
    if size == 0:
        raise ImportFileError("The file is empty.")
    with path.open("rb") as raw:
        head = raw.read(SAMPLE_BYTES)
    rows: Rows
    if _is_xlsx(path, head, file_name):
        _check_sheet_size(path)
        rows = _xlsx_rows(path)
        fmt, codec, sep, detected = "xlsx", "", "", True
    else:
        detected = encoding is None and delimiter is None
        codec = _detect_encoding(path, head, size, file_name) if encoding is None else _chosen_encoding(encoding, head)
        text = _decoded_sample(head, codec, whole=size <= len(head))
        sep = _sniff_delimiter(text) if delimiter is None else _chosen_delimiter(delimiter)
        rows = _csv_rows(path, codec, sep)
        fmt = "csv"
    try:
        headers = _split_header(rows, "Row" if fmt == "xlsx" else "Line")
        sample = [_sample_row(cells, len(headers)) for _, cells in itertools.islice(rows, SAMPLE_ROWS)]
    finally:
        rows.close()
    return FileFacts(fmt=fmt, encoding=codec, delimiter=sep, headers=headers, sample=sample, detected=detected)


def iter_rows(path: Path, facts: FileFacts) -> Iterator[tuple[int, list[str]]]:
    """The data rows after the header as (line number, cells), streaming.

    Line numbers count the file's physical lines, the header's included, so they match what an
    editor shows (a row spanning lines gets the number of its first line); for XLSX they are the
    sheet's row numbers. Entirely empty rows are skipped. Cells are returned as they are in the
    file (not stripped); rows longer or shorter than the header are returned as they are."""
    rows: Rows
    if facts.fmt == "xlsx":
        rows = _xlsx_rows(path)
    else:
        rows = _csv_rows(path, facts.encoding, facts.delimiter)
    try:
        _split_header(rows, "Row" if facts.fmt == "xlsx" else "Line")
        yield from rows
    finally:
        rows.close()


# -- the header ----------------------------------------------------------------------------------


def _split_header(rows: Iterator[tuple[int, list[str]]], unit: str) -> list[str]:
    """Read the header row off `rows` (which yields only non-empty rows): the first one, or the
    second when the first is Excel's "sep=;" hint."""
    for line, cells in rows:
        if len(cells) <= 2 and _SEP_LINE.match("".join(cells).strip()):
            continue
        return _headers(f"{unit} {line}", cells)
    if unit == "Row":
        raise ImportFileError("The worksheet is empty: it has no header row and no data.")
    raise ImportFileError("The file has no header row: every line in it is empty.")


def _filled(cells: list[str]) -> bool:
    # row[0] first: for almost every row that settles it without building a joined string
    return bool(cells) and bool(cells[0].strip() or "".join(cells).strip())


def _headers(where: str, cells: list[str]) -> list[str]:
    names = [" ".join(cell.replace("\ufeff", "").replace("\u200b", "").split()) for cell in cells]
    while names and not names[-1]:  # "Name,Email,,," from a spreadsheet's trailing empty columns
        names.pop()
    if len(names) > MAX_COLUMNS:
        raise ImportFileError(
            f"{where}: the header row has {len(names)} columns; at most {MAX_COLUMNS} can be imported.")
    return [name or f"Column {index}" for index, name in enumerate(names, start=1)]


def _sample_row(cells: list[str], width: int) -> list[str]:
    row = [cell if len(cell) <= SAMPLE_CELL_CHARS else cell[:SAMPLE_CELL_CHARS] + "…" for cell in cells[:width]]
    return row + [""] * (width - len(row))


# -- what kind of file ---------------------------------------------------------------------------


def _is_xlsx(path: Path, head: bytes, file_name: str) -> bool:
    """True for an XLSX workbook whatever its name; an ImportFileError for any other file that is
    not text (an old .xls, an .ods, a PDF, an image, an archive)."""
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise ImportFileError(f"This file looks like a damaged XLSX or ZIP file and cannot be read. {SAVE_AS}") \
                from exc
        if "xl/workbook.xml" in names or "xl/workbook.bin" in names:
            if "xl/workbook.bin" in names:
                raise ImportFileError(f"This is a binary Excel workbook (.xlsb), which cannot be imported. {SAVE_AS}")
            return True
        if "content.xml" in names and "mimetype" in names:
            raise ImportFileError(f"This is an OpenDocument spreadsheet (.ods), which cannot be imported. {SAVE_AS}")
        raise ImportFileError(f"This is a ZIP archive, not a spreadsheet. {SAVE_AS}")
    if head.startswith(_OLE2):
        raise ImportFileError(
            "This is an old Excel file (.xls) or a password-protected workbook, which cannot be imported. "
            "Remove any password, then save it as CSV UTF-8 or as .xlsx.")
    if head.startswith(_BINARY_MAGIC):
        raise _binary_error(file_name)
    start = head.lstrip(codecs.BOM_UTF8)[:512].lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html", b"<table")) or (
            start.startswith(b"<?xml") and b"<workbook" in head[:4096].lower()):
        what = "an Excel 2003 XML file" if start.startswith(b"<?xml") else "a web page (HTML)"
        raise ImportFileError(f"This file is {what}, not a spreadsheet Kith can read. {SAVE_AS}")
    return False


def _binary_error(file_name: str) -> ImportFileError:
    suffix = PurePosixPath(file_name).suffix.lower()
    if suffix in (".xlsx", ".xlsm", ".xls"):
        return ImportFileError(f"This file is named {suffix} but is not an Excel workbook Kith can read. {SAVE_AS}")
    return ImportFileError(f"This is not a spreadsheet or CSV file (it holds binary data). {SAVE_AS}")


# -- encodings -----------------------------------------------------------------------------------


def _chosen_encoding(name: str, head: bytes) -> str:
    """The codec for an encoding a person chose, or an ImportFileError if Python has no such text
    encoding. A UTF-8 BOM is dropped when UTF-8 is chosen."""
    wanted = name.strip()
    try:
        codec = codecs.lookup(wanted).name
        "a".encode(wanted)  # raises LookupError for bytes-to-bytes codecs such as base64
    except LookupError as exc:
        known = ", ".join(label for _, label in ENCODINGS)
        raise ImportFileError(f"Unknown encoding “{name}”. Choose one of: {known}.") from exc
    codec = {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "iso8859-1": "latin-1"}.get(codec, codec)
    codec = _SUPERSETS.get(codec, codec)
    if codec == "utf-8" and head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    return codec


def _detect_encoding(path: Path, head: bytes, size: int, file_name: str) -> str:
    """The codec for a CSV file nobody chose an encoding for (the rule is in the module docstring)."""
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec
    if b"\x00" in head:
        codec = _utf16_without_bom(head)
        if not codec:
            raise _binary_error(file_name)
        return codec
    if len(head) >= 64 and sum(head.count(byte) for byte in _CONTROL_BYTES) > len(head) // 20:
        raise _binary_error(file_name)
    whole = size <= len(head)
    sample = head if whole else _complete_lines(head)
    if sample.isascii():
        sample = b"".join(window for window in _windows(path, size) if not window.isascii())
        if not sample:
            return "utf-8"
    if _is_utf8(sample, final=whole):
        return "utf-8"
    guess = _guess_encoding(sample)
    if guess is None:
        raise _binary_error(file_name)
    return guess


def _utf16_without_bom(head: bytes) -> str:
    """UTF-16 LE or BE when NUL bytes fill one byte of each pair (mostly-ASCII text), else ""."""
    half = max(len(head) // 2, 1)
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if odd > half * 0.3 and even < half * 0.05:
        return "utf-16-le"
    if even > half * 0.3 and odd < half * 0.05:
        return "utf-16-be"
    return ""


def _complete_lines(data: bytes) -> bytes:
    """`data` up to its last newline, so that no multi-byte character is cut at the end."""
    end = data.rfind(b"\n")
    return data[: end + 1] if end > 0 else data


def _windows(path: Path, size: int) -> Iterator[bytes]:
    """64 KB from the middle and from the end of a large file, each cut to whole lines."""
    with path.open("rb") as raw:
        for offset in (size // 2, max(size - SAMPLE_BYTES, SAMPLE_BYTES)):
            if offset < SAMPLE_BYTES:
                continue
            raw.seek(offset)
            window = raw.read(SAMPLE_BYTES)
            start = window.find(b"\n") + 1
            yield _complete_lines(window[start:]) if start else b""


def _is_utf8(data: bytes, *, final: bool) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
    except UnicodeDecodeError:
        return False
    return True


def _guess_encoding(data: bytes, *, exclude: str = "") -> str | None:
    """charset-normalizer's choice among _GUESSES for `data`, ties going to the earlier one."""
    matches = [m for m in charset_normalizer.from_bytes(data, cp_isolation=list(_GUESSES))
               if _GUESS_CODEC.get(m.encoding) and _GUESS_CODEC[m.encoding] != exclude]
    if not matches:
        return None
    least = min(match.chaos for match in matches)
    tied = [match.encoding for match in matches if match.chaos <= least + 0.005]
    return _GUESS_CODEC[min(tied, key=_GUESSES.index)]


def _decoded_sample(head: bytes, codec: str, *, whole: bool) -> str:
    """The start of the file as text, for sniffing the delimiter (errors are left to the reader,
    which names the line)."""
    data = head if whole or codec.startswith(("utf-16", "utf-32")) else _complete_lines(head)
    return codecs.getincrementaldecoder(codec)(errors="replace").decode(data, final=whole)


# -- delimiters ----------------------------------------------------------------------------------


def _chosen_delimiter(delimiter: str) -> str:
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise ImportFileError(
            f"The delimiter must be one character other than a quote or a line break, not “{delimiter}”.")
    return delimiter


def _sniff_delimiter(text: str) -> str:
    """The delimiter among , ; TAB | that splits the first lines into the most consistent number
    of columns (then the most columns); a comma when none splits the header at all. Excel's
    "sep=;" first line decides when present."""
    lines = list(itertools.islice(io.StringIO(text.lstrip("\ufeff"), newline=""), 50))
    if lines and (found := _SEP_LINE.match(lines[0].rstrip("\r\n"))) and found.group(1) not in ("", '"'):
        return found.group(1)
    best, best_score = ",", (0.0, 1)
    for candidate, _ in DELIMITERS:
        try:
            rows = [row for row in csv.reader(lines, delimiter=candidate) if _filled(row)][:20]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        score = (sum(1 for row in rows if len(row) == width) / len(rows), width)
        if score > best_score:
            best, best_score = candidate, score
    return best


# -- CSV rows ------------------------------------------------------------------------------------


def _csv_rows(path: Path, codec: str, delimiter: str) -> Rows:
    """Every non-empty record of the file as (line number of its first physical line, cells)."""
    csv.field_size_limit(MAX_CELL_CHARS + 1)  # process-wide; set on every read in case someone lowered it
    with contextlib.ExitStack() as stack:
        lines, exact = _lines(stack.enter_context(path.open("rb")), codec, stack)
        reader = csv.reader(itertools.chain(lines, (_END,)), delimiter=delimiter)
        previous = 0
        try:
            for cells in reader:
                start, previous = previous + 1, reader.line_num
                # empty rows skipped inline (cells[0] settles almost every row without a join)
                if not cells or not (cells[0].strip() or "".join(cells).strip()):
                    continue
                if cells[-1].endswith(_END):
                    if len(cells) == 1 and cells[0] == _END:
                        return
                    raise ImportFileError(
                        f"Line {start}: a quote opened on this line is never closed, so the rest of the file "
                        "would be one cell. Check the quotes on that line.")
                yield start, cells
        except UnicodeDecodeError as exc:
            raise ImportFileError(_decode_message(reader.line_num + 1, exc, codec, exact)) from exc
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise ImportFileError(
                    f"Line {previous + 1}: a cell is longer than 1 MB; is a quote left open?") from exc
            raise ImportFileError(f"Line {reader.line_num} cannot be read as CSV: {exc}.") from exc


def _lines(raw: BinaryIO, codec: str, stack: contextlib.ExitStack) -> tuple[Iterator[str], bool]:
    """The file's lines as text, and whether a decoding error can be placed on its exact line."""
    head = raw.read(SAMPLE_BYTES)
    if codec in _UTF8_FAMILY:
        raw.seek(len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0)
        codec = "utf-8"  # decoding line by line, "utf-8-sig" would eat a U+FEFF starting any line
    else:
        raw.seek(0)
    # lines ending in a bare CR (old Mac Excel) need the text reader's universal newlines
    if "\n".encode(codec) == b"\n" and head.count(b"\r\n") * 2 >= head.count(b"\r"):
        # C all the way: readline, decode and csv parsing never run a line of Python per line
        byte_lines = iter(partial(raw.readline, MAX_LINE_BYTES), b"")
        return map(methodcaller("decode", codec), byte_lines), True
    text = stack.enter_context(io.TextIOWrapper(raw, encoding=codec, newline=""))
    return iter(partial(text.readline, MAX_LINE_BYTES // 4), ""), False


def _decode_message(line: int, exc: UnicodeDecodeError, codec: str, exact: bool) -> str:
    """Which line does not decode, and the encoding its bytes look like, if one does."""
    where = f"Line {line}" if exact else f"Near line {line}"
    message = f"{where} is not valid {encoding_label(codec)} text."
    suggestion = _guess_encoding(exc.object[max(exc.start - 2048, 0): exc.start + 2048], exclude=codec) \
        if isinstance(exc.object, bytes | bytearray) else None
    if suggestion is None and codec not in _UTF8_FAMILY and _is_utf8(bytes(exc.object), final=False):
        suggestion = "utf-8"
    if suggestion:
        return f"{message} It looks like {encoding_label(suggestion)}: choose that encoding and try again."
    return f"{message} Choose the file's encoding and try again."


# -- XLSX rows -----------------------------------------------------------------------------------


def _first_visible_sheet(workbook: CalamineWorkbook) -> str:
    for sheet in workbook.sheets_metadata:
        if sheet.typ == SheetTypeEnum.WorkSheet and sheet.visible == SheetVisibleEnum.Visible:
            return sheet.name
    raise ImportFileError("This workbook has no visible worksheet to import.")


def _check_sheet_size(path: Path) -> None:
    """Refuse a worksheet calamine would need too much memory for (see the module docstring)."""
    try:
        with CalamineWorkbook.from_path(str(path)) as workbook:
            name = _first_visible_sheet(workbook)
        with zipfile.ZipFile(path) as archive:
            sizes = {info.filename: info.file_size for info in archive.infolist()}
            try:
                part = _sheet_part(archive, name)
            except (KeyError, ElementTree.ParseError):
                part = ""  # an unusual layout: judge by the largest worksheet instead
            size = sizes.get(part) or max(
                (size for member, size in sizes.items() if member.startswith("xl/worksheets/")), default=0)
    except (CalamineError, zipfile.BadZipFile, OSError) as exc:
        raise ImportFileError(f"This XLSX file is damaged and cannot be read ({exc}). {SAVE_AS}") from exc
    if size > MAX_XLSX_SHEET_BYTES:
        raise ImportFileError(
            f"The worksheet “{name}” is too large to import as XLSX ({size // (1024 * 1024)} MB of cell data; "
            f"at most {MAX_XLSX_SHEET_BYTES // (1024 * 1024)} MB). Save it as CSV UTF-8 and import that: "
            "CSV files of any size are read as they stream.")


def _sheet_part(archive: zipfile.ZipFile, name: str) -> str:
    """The zip member holding the worksheet called `name` (workbook.xml names it, its rels file
    says where it is). Both parts are small; Python's expat (2.4.1+) refuses entity-expansion bombs."""
    workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))  # noqa: S314 - see docstring
    rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))  # noqa: S314
    rel_id = next((sheet.get(f"{_REL_NS}id") for sheet in workbook.iter(f"{_SPREADSHEET_NS}sheet")
                   if sheet.get("name") == name), None)
    target = next((rel.get("Target", "") for rel in rels.iter(f"{_PKG_REL_NS}Relationship")
                   if rel.get("Id") == rel_id), "")
    return target.lstrip("/") if target.startswith("/") else f"xl/{target}"


def _xlsx_rows(path: Path) -> Rows:
    """Every non-empty row of the first visible worksheet as (sheet row number, cells as text)."""
    try:
        workbook = CalamineWorkbook.from_path(str(path))
    except CalamineError as exc:
        raise ImportFileError(f"This XLSX file is damaged and cannot be read ({exc}). {SAVE_AS}") from exc
    with workbook:
        try:
            rows = workbook.get_sheet_by_name(_first_visible_sheet(workbook)).iter_rows()
        except CalamineError as exc:
            raise ImportFileError(f"This XLSX file is damaged and cannot be read ({exc}). {SAVE_AS}") from exc
        # calamine's iter_rows starts at the sheet's first row (leading empty rows included), so
        # the position is the row number Excel shows
        for number, values in enumerate(rows, start=1):
            cells = [_cell_text(value) for value in values]
            if _filled(cells):
                yield number, cells


def _cell_text(value: object) -> str:
    """A cell's value as the text a person sees in Excel."""
    kind = type(value)  # exact types, cheapest first: this runs for every cell of a sheet
    if kind is str:
        return cast(str, value)
    if kind is float:
        number = cast(float, value)
        if number.is_integer():
            return str(int(number))
        return format(number, ".15g")  # Excel shows 15 significant digits: 0.1+0.2 is 0.3
    if kind is bool:
        return "TRUE" if value else "FALSE"
    if kind is int:
        return str(value)
    if kind is datetime:
        moment = cast(datetime, value)
        return moment.isoformat(sep=" ", timespec="minutes" if not moment.second and not moment.microsecond
                                else "seconds")
    if kind is date:
        return cast(date, value).isoformat()
    if kind is time:
        clock = cast(time, value)
        return clock.isoformat(timespec="minutes" if not clock.second and not clock.microsecond else "seconds")
    if kind is timedelta:
        seconds = int(cast(timedelta, value).total_seconds())
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return "" if value is None else str(value)
