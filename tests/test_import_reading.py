"""Reading import files (issue 7, "Import" and "Bad input"): encodings detected or chosen,
delimiters, quoting, line numbers, XLSX values, and every kind of bad file getting a clear
ImportFileError that names the line. Files are generated here; nothing needs a database."""

from __future__ import annotations

import codecs
import random
import zipfile
from datetime import date, datetime, time
from pathlib import Path

import pytest
import xlsxwriter

from kith.tenants.imports import reading
from kith.tenants.imports.reading import DELIMITERS, ENCODINGS, FileFacts, ImportFileError, inspect_file, iter_rows

PEOPLE = [["张伟", "北京星辰科技有限公司", "zhang@example.cn"], ["李娜", "上海云帆贸易有限公司", "li@example.cn"]]


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _text(rows: list[list[str]], sep: str = ",", end: str = "\r\n") -> str:
    return "".join(sep.join(row) + end for row in rows)


def _read(path: Path, **choices: str) -> tuple[FileFacts, list[tuple[int, list[str]]]]:
    facts = inspect_file(path, file_name=path.name, **choices)  # type: ignore[arg-type]
    return facts, list(iter_rows(path, facts))


def _error(path: Path, **choices: str) -> str:
    with pytest.raises(ImportFileError) as caught:
        _read(path, **choices)
    assert caught.value.message == str(caught.value)
    return caught.value.message


# -- encodings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("encoded", "codec"), [
    (lambda text: text.encode("utf-8"), "utf-8"),
    (lambda text: codecs.BOM_UTF8 + text.encode("utf-8"), "utf-8-sig"),
    (lambda text: codecs.BOM_UTF16_LE + text.encode("utf-16-le"), "utf-16"),
    (lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be"), "utf-16"),
    (lambda text: text.encode("gbk"), "gb18030"),
], ids=["utf-8", "utf-8-bom", "utf-16-le-bom", "utf-16-be-bom", "gbk"])
def test_encodings_are_detected(tmp_path: Path, encoded, codec: str) -> None:
    text = _text([["姓名", "公司", "邮箱"], *PEOPLE])
    facts, rows = _read(_write(tmp_path, "people.csv", encoded(text)))
    assert (facts.fmt, facts.encoding, facts.delimiter, facts.detected) == ("csv", codec, ",", True)
    assert facts.headers == ["姓名", "公司", "邮箱"]  # no BOM left on the first header
    assert facts.sample == PEOPLE
    assert rows == [(2, PEOPLE[0]), (3, PEOPLE[1])]


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_is_detected(tmp_path: Path, codec: str) -> None:
    rows_in = [["Name", "Company", "Email"], *[[f"Person {i}", "星辰科技", f"p{i}@example.com"] for i in range(20)]]
    facts, rows = _read(_write(tmp_path, "u16.csv", _text(rows_in).encode(codec)))
    assert facts.encoding == codec and rows[-1] == (21, rows_in[-1])


def test_big5_is_detected_and_read_as_cp950(tmp_path: Path) -> None:
    rows_in = [["姓名", "城市"], ["陳小明", "臺北"], ["林美玲", "高雄"]]
    facts, rows = _read(_write(tmp_path, "tw.csv", _text(rows_in).encode("big5")))
    assert facts.encoding == "cp950"
    assert facts.headers == ["姓名", "城市"] and rows == [(2, ["陳小明", "臺北"]), (3, ["林美玲", "高雄"])]


def test_ascii_start_with_gbk_later_is_found_from_the_later_windows(tmp_path: Path) -> None:
    # 200 KB of ASCII rows, then Chinese: the first 64 KB alone would say UTF-8
    ascii_rows = [[f"Person {i}", f"Company {i}", f"p{i}@example.com"] for i in range(6000)]
    data = _text([["Name", "Company", "Email"], *ascii_rows, *PEOPLE]).encode("gbk")
    facts, rows = _read(_write(tmp_path, "late.csv", data))
    assert facts.encoding == "gb18030"
    assert rows[-1] == (6003, PEOPLE[1])


def test_non_ascii_hidden_between_the_windows_names_the_line_and_suggests_gbk(tmp_path: Path) -> None:
    ascii_rows = [[f"Person {i}", f"Company {i}", f"p{i}@example.com"] for i in range(12000)]
    rows_in = [["Name", "Company", "Email"], *ascii_rows]
    rows_in.insert(3000, ["张伟", "北京星辰科技有限公司", "zhang@example.cn"])  # line 3001, ~110 KB in
    path = _write(tmp_path, "hidden.csv", _text(rows_in).encode("gbk"))
    assert path.stat().st_size > 4 * reading.SAMPLE_BYTES
    facts = inspect_file(path)
    assert facts.encoding == "utf-8"  # the documented rule: an all-ASCII sample reads as UTF-8
    with pytest.raises(ImportFileError) as caught:
        list(iter_rows(path, facts))
    assert caught.value.message.startswith("Line 3001 is not valid UTF-8 text.")
    assert "GBK / GB18030" in caught.value.message
    # choosing the encoding overrides detection and reads the whole file
    facts, rows = _read(path, encoding="GBK")
    assert (facts.encoding, facts.detected) == ("gb18030", False)
    assert rows[2999] == (3001, ["张伟", "北京星辰科技有限公司", "zhang@example.cn"]) and len(rows) == 12001


def test_chosen_encoding_overrides_detection(tmp_path: Path) -> None:
    path = _write(tmp_path, "utf8.csv", _text([["Name", "City"], ["José", "Zürich"]]).encode("utf-8"))
    assert _read(path)[1] == [(2, ["José", "Zürich"])]
    facts, rows = _read(path, encoding="latin-1")
    assert (facts.encoding, facts.detected) == ("latin-1", False)
    assert rows == [(2, ["JosÃ©", "ZÃ¼rich"])]  # exactly what latin-1 makes of those bytes


def test_wrong_chosen_encoding_names_the_line(tmp_path: Path) -> None:
    rows_in = [["Name", "Company"], *[[f"Person {i}", "ACME"] for i in range(10)], ["张伟", "北京星辰科技有限公司"]]
    path = _write(tmp_path, "gbk.csv", _text(rows_in).encode("gbk"))
    facts = inspect_file(path, encoding="utf-8")  # the sample rows are ASCII: inspecting passes
    with pytest.raises(ImportFileError) as caught:
        list(iter_rows(path, facts))
    message = caught.value.message
    assert message.startswith("Line 12 is not valid UTF-8 text.") and "GBK / GB18030" in message
    # in the header already: the inspection itself says so
    header_gbk = _write(tmp_path, "head.csv", _text([["姓名", "公司"], PEOPLE[0][:2]]).encode("gbk"))
    assert _error(header_gbk, encoding="utf-8").startswith("Line 1 is not valid UTF-8 text.")


def test_unknown_encoding_and_bad_delimiter_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.csv", b"Name,Email\nA,a@example.com\n")
    assert _error(path, encoding="klingon").startswith("Unknown encoding “klingon”.")
    assert _error(path, encoding="base64").startswith("Unknown encoding “base64”.")  # not a text encoding
    assert "one character" in _error(path, delimiter=";;")
    assert "one character" in _error(path, delimiter='"')


def test_the_choice_lists() -> None:
    for codec, label in ENCODINGS:
        assert codecs.lookup(codec) and label
        assert reading.encoding_label(codec) == label
    assert "gb18030" in dict(ENCODINGS) and "cp950" in dict(ENCODINGS)
    assert [sep for sep, _ in DELIMITERS] == [",", ";", "\t", "|"]


# -- delimiters, quoting, shapes -----------------------------------------------------------------


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_delimiters_are_sniffed(tmp_path: Path, sep: str) -> None:
    rows_in = [["Name", "Company", "Notes"], ["Ann, Jr.", "ACME", "a, b"], ["Bo", "Beta", "c"]]
    facts, rows = _read(_write(tmp_path, "x.csv", _text(rows_in, sep).encode()))
    assert facts.delimiter == sep
    assert rows == [(2, rows_in[1]), (3, rows_in[2])]


def test_chosen_delimiter_overrides_sniffing(tmp_path: Path) -> None:
    facts, rows = _read(_write(tmp_path, "x.csv", b"Name;Email\nAnn;a@example.com\n"), delimiter=",")
    assert (facts.delimiter, facts.headers, facts.detected) == (",", ["Name;Email"], False)
    assert rows == [(2, ["Ann;a@example.com"])]


@pytest.mark.parametrize("sep", [";", "\t", ","])
def test_excel_sep_line_sets_the_delimiter_and_is_skipped(tmp_path: Path, sep: str) -> None:
    data = f"sep={sep}\r\nName{sep}Email\r\nAnn{sep}a@example.com\r\n".encode()
    facts, rows = _read(_write(tmp_path, "x.csv", data))
    assert (facts.delimiter, facts.headers) == (sep, ["Name", "Email"])
    assert rows == [(3, ["Ann", "a@example.com"])]


def test_quoted_cells_with_newlines_and_delimiters_keep_line_numbers(tmp_path: Path) -> None:
    data = ('Name,Notes,City\r\n'
            '"Zhang, Wei","first line\r\nsecond, with ""quotes""\r\nthird",北京\r\n'
            'Li,plain,上海\r\n').encode()
    facts, rows = _read(_write(tmp_path, "q.csv", data))
    assert facts.sample[0] == ["Zhang, Wei", 'first line\r\nsecond, with "quotes"\r\nthird', "北京"]
    assert rows == [(2, facts.sample[0]), (5, ["Li", "plain", "上海"])]


def test_ragged_rows_are_returned_as_they_are_and_empty_rows_skipped(tmp_path: Path) -> None:
    data = b"Name,Email,Phone\nAnn\n\n , ,\nBo,b@example.com,123,extra,\nCy,c@example.com,456\n"
    facts, rows = _read(_write(tmp_path, "r.csv", data))
    assert facts.sample == [["Ann", "", ""], ["Bo", "b@example.com", "123"], ["Cy", "c@example.com", "456"]]
    assert rows == [(2, ["Ann"]), (5, ["Bo", "b@example.com", "123", "extra", ""]), (6, ["Cy", "c@example.com", "456"])]


def test_headers_are_trimmed_and_empty_ones_named(tmp_path: Path) -> None:
    facts, _ = _read(_write(tmp_path, "h.csv", b"\n\n  Name ,,\"E\nmail\",,,\nAnn,x,a@example.com\n"))
    assert facts.headers == ["Name", "Column 2", "E mail"]  # trailing empty columns dropped
    assert facts.sample == [["Ann", "x", "a@example.com"]]


def test_old_mac_line_endings(tmp_path: Path) -> None:
    facts, rows = _read(_write(tmp_path, "mac.csv", "Name,City\r张伟,北京\r李娜,上海\r".encode()))
    assert facts.headers == ["Name", "City"]
    assert rows == [(2, ["张伟", "北京"]), (3, ["李娜", "上海"])]


def test_sample_is_at_most_five_rows_and_long_cells_are_cut(tmp_path: Path) -> None:
    rows_in = [["Name", "Notes"], *[[f"P{i}", "x" * 600] for i in range(8)]]
    facts, rows = _read(_write(tmp_path, "s.csv", _text(rows_in).encode()))
    assert len(facts.sample) == 5 and len(rows) == 8
    assert facts.sample[0][1] == "x" * 500 + "…" and rows[0][1][1] == "x" * 600


# -- bad files -----------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    assert _error(_write(tmp_path, "empty.csv", b"")) == "The file is empty."


def test_file_of_blank_lines_has_no_header_row(tmp_path: Path) -> None:
    assert _error(_write(tmp_path, "blank.csv", b"\r\n  \r\n,,\r\n")).startswith("The file has no header row")


def test_header_only_file(tmp_path: Path) -> None:
    facts, rows = _read(_write(tmp_path, "h.csv", "姓名,手机\r\n".encode()))
    assert (facts.headers, facts.sample, rows) == (["姓名", "手机"], [], [])


def test_binary_junk_renamed_csv_is_refused(tmp_path: Path) -> None:
    junk = random.Random(7).randbytes(8192)
    assert "binary data" in _error(_write(tmp_path, "junk.csv", junk))
    assert "binary data" in _error(_write(tmp_path, "doc.csv", b"%PDF-1.7\n" + b"stream text\n" * 20))
    no_nul = bytes(b for b in junk if b)  # control bytes alone also give binary away
    assert "binary data" in _error(_write(tmp_path, "ctl.csv", no_nul))
    assert "named .xlsx" in _error(_write(tmp_path, "junk.xlsx", junk))


def test_old_xls_and_other_spreadsheets_are_refused_with_what_to_do(tmp_path: Path) -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4000)
    message = _error(_write(tmp_path, "old.xls", ole))
    assert ".xls" in message and "save it as CSV UTF-8 or as .xlsx" in message
    html = _error(_write(tmp_path, "report.xls", b"<html><body><table><tr><td>Name</td></tr></table></body></html>"))
    assert "web page" in html
    ods = tmp_path / "sheet.ods"
    with zipfile.ZipFile(ods, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<office:document-content/>")
    assert ".ods" in _error(ods)
    other = tmp_path / "files.csv"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert "ZIP archive" in _error(other)
    assert "damaged" in _error(_write(tmp_path, "broken.xlsx", b"PK\x03\x04" + bytes(200)))


def test_a_50_mb_cell_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as out:
        out.write(b"Name,Notes\r\nAnn,short\r\nBo,")
        block = b"x" * (1024 * 1024)
        for _ in range(50):
            out.write(block)
        out.write(b"\r\nCy,short\r\n")
    assert _error(path) == "Line 3: a cell is longer than 1 MB; is a quote left open?"
    # past the sample rows, the run finds it
    rows_in = b"".join(b"P%d,short\r\n" % i for i in range(10))
    later = _write(tmp_path, "later.csv", b"Name,Notes\r\n" + rows_in + b"Zed," + b"y" * (50 * 1024 * 1024) + b"\r\n")
    facts = inspect_file(later)
    with pytest.raises(ImportFileError) as caught:
        list(iter_rows(later, facts))
    assert caught.value.message == "Line 12: a cell is longer than 1 MB; is a quote left open?"


def test_a_quote_left_open_is_named(tmp_path: Path) -> None:
    small = _write(tmp_path, "open.csv", b'Name,Notes\nAnn,ok\nBo,"never closed\nCy,ok\nDi,ok\n')
    assert _error(small).startswith("Line 3: a quote opened on this line is never closed")
    # in a bigger file the cell outgrows 1 MB first
    big = _write(tmp_path, "open_big.csv", b'Name,Notes\nAnn,"oops\n' + b"Bo,fine row\n" * 120_000)
    assert _error(big) == "Line 2: a cell is longer than 1 MB; is a quote left open?"


def test_more_than_200_columns_is_refused(tmp_path: Path) -> None:
    header = ",".join(f"c{i}" for i in range(201)).encode()
    assert _error(_write(tmp_path, "wide.csv", header + b"\n")).startswith(
        "Line 1: the header row has 201 columns; at most 200")
    facts, _ = _read(_write(tmp_path, "ok.csv", ",".join(f"c{i}" for i in range(200)).encode() + b"\n"))
    assert len(facts.headers) == 200


# -- XLSX ----------------------------------------------------------------------------------------


def _workbook(path: Path) -> Path:
    book = xlsxwriter.Workbook(str(path))
    hidden = book.add_worksheet("Old")
    hidden.write(0, 0, "not this sheet")
    sheet = book.add_worksheet("Contacts")
    sheet.activate()
    hidden.hide()
    day = book.add_format({"num_format": "yyyy-mm-dd"})
    moment = book.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    clock = book.add_format({"num_format": "hh:mm"})
    # two empty rows first: the header is on sheet row 3
    sheet.write_row(2, 0, ["Name", "Phone", "Score", "Since", "Last call", "At", "VIP", "Site", "Note", ""])
    sheet.write_string(3, 0, "张伟")
    sheet.write_number(3, 1, 13800138000)
    sheet.write_number(3, 2, 0.1 + 0.2)
    sheet.write_datetime(3, 3, date(2024, 3, 5), day)
    sheet.write_datetime(3, 4, datetime(2024, 3, 5, 14, 30), moment)  # noqa: DTZ001 - Excel times are naive
    sheet.write_datetime(3, 5, time(9, 15), clock)
    sheet.write_boolean(3, 6, True)
    sheet.write_formula(3, 7, '=HYPERLINK("http://evil.example","click me")', None, "click me")
    sheet.write_string(3, 8, '=HYPERLINK("http://evil.example","x")')
    sheet.write_string(5, 0, "李娜")  # row 5 is empty and skipped
    sheet.write_number(5, 2, 42)
    sheet.write_boolean(5, 6, False)
    sheet.write_formula(5, 7, "=1+1", None, 2)
    book.close()
    return path


def test_xlsx_values_become_the_text_people_see(tmp_path: Path) -> None:
    facts, rows = _read(_workbook(tmp_path / "contacts.xlsx"))
    assert (facts.fmt, facts.encoding, facts.delimiter) == ("xlsx", "", "")
    assert facts.headers == ["Name", "Phone", "Score", "Since", "Last call", "At", "VIP", "Site", "Note"]
    first = ["张伟", "13800138000", "0.3", "2024-03-05", "2024-03-05 14:30", "09:15", "TRUE", "click me",
             '=HYPERLINK("http://evil.example","x")']
    assert facts.sample[0] == first
    assert rows == [(4, first), (6, ["李娜", "", "42", "", "", "", "FALSE", "2", ""])]
    assert all(not cell.startswith("=HYPERLINK(\"http://evil.example\",\"click") for _, r in rows for cell in r)


def test_xlsx_renamed_csv_is_read_as_xlsx(tmp_path: Path) -> None:
    renamed = tmp_path / "export.csv"
    _workbook(tmp_path / "real.xlsx").rename(renamed)
    facts, rows = _read(renamed)
    assert facts.fmt == "xlsx" and rows[0][1][0] == "张伟"


def test_empty_xlsx_and_too_large_sheet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    book = xlsxwriter.Workbook(str(tmp_path / "empty.xlsx"))
    book.add_worksheet("Sheet1")
    book.close()
    assert _error(tmp_path / "empty.xlsx").startswith("The worksheet is empty")
    monkeypatch.setattr(reading, "MAX_XLSX_SHEET_BYTES", 200)
    message = _error(_workbook(tmp_path / "big.xlsx"))
    assert message.startswith("The worksheet “Contacts” is too large to import as XLSX") and "CSV" in message
