"""CSV (or ;, tab, | separated) files read with a person's mapping (mapping.py), row by row.

Text: UTF-8 with or without a byte-order mark, UTF-16 with one; a file that is not valid UTF-8
is read as Windows-1252 from its first non-UTF-8 byte (text.py). Amounts: the mapping's decimal
mark and thousands separator (groups of three digits checked, so a file whose separators are
the other way round is refused rather than misread), a leading or trailing minus, parentheses
"(12.50)", CR/DR suffixes and currency signs or codes ("$1,234.56", "1.234,56 €", "EUR 5")
understood. A blank row, or one whose date cell is empty (a total, a note) is skipped; a date or
amount that does not parse is an error naming the column and the value. ``kind`` is
``deposit`` for money in and ``withdrawal`` for money out (a CSV says nothing more).
"""

import csv
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import BinaryIO

from dashtam_api.sources.files import text as texts
from dashtam_api.sources.files.entries import (
    Entry,
    FileError,
    FileProblem,
    FileSkipped,
    FileTransaction,
    currency_code,
)
from dashtam_api.sources.files.mapping import Column, CsvMapping
from dashtam_api.sources.shapes import TransactionData

DELIMITERS = (",", ";", "\t", "|")
LONGEST_LINE = 1 << 20
# Characters around an amount that are not part of it: currency signs and codes, spaces.
_AROUND = re.compile(r"^[^\d(+\-\u2212.,]+|[^\d)\-\u2212.,]+$")
_SPACES = str.maketrans("", "", " \u00a0\u202f\u2009")


def _separators(mapping: CsvMapping) -> str:
    if mapping.thousands is not None:
        return re.escape(mapping.thousands)
    return "[" + re.escape(("." if mapping.decimal == "," else ",") + "'") + "]"


class Amounts:
    """Amounts as the mapping says they are written, exact."""

    def __init__(self, mapping: CsvMapping):
        sep, mark = _separators(mapping), re.escape(mapping.decimal)
        self._number = re.compile(rf"(\d{{1,3}}(?:{sep}\d{{3}})+|\d*)(?:{mark}(\d+))?")
        self._cut = re.compile(sep)

    def parse(self, cell: str) -> Decimal | None:
        """The amount, or None when it is not one."""
        s = cell.translate(_SPACES)
        negative = False
        if s[-2:].upper() in ("CR", "DR"):
            negative = s[-2:].upper() == "DR"
            s = s[:-2]
        s = _AROUND.sub("", s)
        if s[:1] == "(" and s[-1:] == ")":
            negative, s = not negative, _AROUND.sub("", s[1:-1])
        if s[:1] in ("-", "\u2212"):
            negative, s = not negative, _AROUND.sub("", s[1:])
        elif s[:1] == "+":
            s = _AROUND.sub("", s[1:])
        elif s[-1:] in ("-", "\u2212"):
            negative, s = not negative, s[:-1]
        match = self._number.fullmatch(s)
        if match is None or not (match[1] or match[2]):
            return None
        whole, fraction = self._cut.sub("", match[1]) or "0", match[2] or "0"
        value = Decimal(f"{whole}.{fraction}")
        return -value if negative else value


class Dates:
    """Dates in the mapping's format (ISO 8601 without one), as UTC instants; each distinct
    text parsed once (a file has a few hundred distinct dates)."""

    def __init__(self, date_format: str | None):
        self._format = date_format
        self._seen: dict[str, datetime] = {}

    def parse(self, cell: str) -> datetime | None:
        seen = self._seen.get(cell)
        if seen is not None:
            return seen
        try:
            if self._format is None:
                parsed = (
                    datetime.fromisoformat(cell.replace("Z", "+00:00"))
                    if len(cell) > 10
                    else datetime.combine(date.fromisoformat(cell), datetime.min.time())
                )
            else:
                parsed = datetime.strptime(cell, self._format)
        except ValueError:
            return None
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[cell] = parsed
        return parsed


def _lines(text, first_line: int) -> Iterator[str]:
    """The text's lines, none longer than LONGEST_LINE (memory stays bounded)."""
    line = first_line
    while chunk := text.readline(LONGEST_LINE):
        if len(chunk) == LONGEST_LINE and chunk[-1] not in "\r\n":
            raise FileProblem(line, f"a line longer than {LONGEST_LINE} characters")
        line += 1
        # No text Dashtam stores may hold NUL (PostgreSQL's text cannot).
        yield chunk.replace("\x00", "") if "\x00" in chunk else chunk


def sniff_delimiter(lines: list[str]) -> str:
    """The candidate that splits the most lines into the same number (> 1) of fields."""
    best, best_score = ",", (0, 0)
    sample = [line for line in lines if line.strip()][:20]
    for candidate in DELIMITERS:
        try:
            widths = [len(row) for row in csv.reader(sample, delimiter=candidate)]
        except csv.Error:
            continue
        common = max(set(widths), key=widths.count, default=1)
        score = (widths.count(common) if common > 1 else 0, common)
        if score > best_score:
            best, best_score = candidate, score
    return best


def _positions(mapping: CsvMapping, header: list[str] | None, line: int) -> dict[str, int]:
    names = {}
    if header is not None:
        stripped = [h.strip() for h in header]
        folded = [h.casefold() for h in stripped]
    for field, column in mapping.columns().items():
        if column is None:
            continue
        if isinstance(column, int):
            names[field] = column
        elif column.strip() in stripped:
            names[field] = stripped.index(column.strip())
        elif column.strip().casefold() in folded:
            names[field] = folded.index(column.strip().casefold())
        else:
            listed = ", ".join(repr(h) for h in stripped[:30])
            raise FileProblem(
                line, f"the header has no column {column!r} (mapped as {field}); it has {listed}"
            )
        if header is not None and names[field] >= len(header):
            raise FileProblem(
                line, f"column {column} (mapped as {field}) is past the header's {len(header)}"
            )
    return names


def _cell(row: list[str], index: int | None) -> str:
    return row[index].strip() if index is not None and index < len(row) else ""


def read(stream: BinaryIO, mapping: CsvMapping) -> Iterator[Entry]:
    head = stream.read(texts.HEAD)
    encoding = texts.bom_encoding(head) or texts.FALLBACK
    text = texts.text_stream(head, stream, encoding, newline="")
    try:
        yield from _rows(text, head, encoding, mapping)
    finally:
        text.close()


def _rows(text, head: bytes, encoding: str, mapping: CsvMapping) -> Iterator[Entry]:
    lines = _lines(text, 1)
    for _ in range(mapping.skip_rows):
        if next(lines, None) is None:
            raise FileProblem(None, f"the file has fewer than {mapping.skip_rows} lines to skip")
    delimiter = mapping.delimiter or sniff_delimiter(
        head.decode(encoding, "replace").splitlines()[mapping.skip_rows : -1]
        or head.decode(encoding, "replace").splitlines()[mapping.skip_rows :]
    )
    rows = csv.reader(lines, delimiter=delimiter)
    start = mapping.skip_rows  # csv's line_num counts from here
    try:
        header = next(rows, None) if mapping.header else None
        if mapping.header and header is None:
            raise FileProblem(start + 1, "the file ends before its header row")
        at = _positions(mapping, header, start + 1)
        amounts, dates = Amounts(mapping), Dates(mapping.date_format)
        fixed = mapping.currency or ""
        sign = -1 if mapping.negate else 1
        d, a, deb, cred = at["date"], at.get("amount"), at.get("debit"), at.get("credit")
        desc, pay, mem, ident, ccy = (
            at.get(k) for k in ("description", "payee", "memo", "id", "currency_column")
        )
        line = rows.line_num + 1 + start
        for row in rows:
            # The row's first line (a quoted field may span several).
            here, line = line, rows.line_num + 1 + start
            when = _cell(row, d)
            if not when:
                blank = not any(c.strip() for c in row)
                yield FileSkipped(here, "a blank row" if blank else "no date: not a transaction")
                continue
            moment = dates.parse(when)
            if moment is None:
                yield FileError(
                    here,
                    f"{_name(mapping.date, header)}: {when!r} is not a date"
                    + (f" as {mapping.date_format}" if mapping.date_format else ""),
                )
                continue
            if a is not None:
                cell = _cell(row, a)
                amount = amounts.parse(cell)
                if amount is None:
                    yield FileError(
                        here, f"{_name(mapping.amount, header)}: {cell!r} is not an amount"
                    )
                    continue
            else:
                out, into = _cell(row, deb), _cell(row, cred)
                if not out and not into:
                    yield FileError(here, "neither debit nor credit has an amount")
                    continue
                debit = amounts.parse(out) if out else Decimal(0)
                credit = amounts.parse(into) if into else Decimal(0)
                if debit is None or credit is None:
                    column, cell = (mapping.debit, out) if debit is None else (mapping.credit, into)
                    yield FileError(here, f"{_name(column, header)}: {cell!r} is not an amount")
                    continue
                amount = credit - abs(debit)
            amount = sign * amount
            currency = currency_code(_cell(row, ccy)) if ccy is not None else fixed
            if currency is None:
                column = _name(mapping.currency_column, header)
                yield FileError(here, f"{column}: {_cell(row, ccy)!r} is not a currency code")
                continue
            yield FileTransaction(
                here,
                TransactionData(
                    external_id=_cell(row, ident),
                    status="posted",
                    amount=amount,
                    description=_cell(row, desc),
                    kind="deposit" if amount > 0 else "withdrawal",
                    transacted_at=moment,
                    posted_at=moment,
                    currency=currency,
                    payee=_cell(row, pay) or None,
                    memo=_cell(row, mem) or None,
                ),
            )
    except csv.Error as exc:
        raise FileProblem(rows.line_num + start, f"not readable as CSV: {exc}") from None


def _name(column: Column, header: list[str] | None) -> str:
    if isinstance(column, int) and header is not None and column < len(header):
        return f"column {header[column].strip()!r}"
    return f"column {column!r}"
