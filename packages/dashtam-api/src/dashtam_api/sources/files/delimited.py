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
            parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved out of range
            return None
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


class _Rows:
    """One row to one entry, by the mapping's columns (positions found in the header)."""

    def __init__(self, mapping: CsvMapping, header: list[str] | None, at: dict[str, int]):
        self.mapping, self.header = mapping, header
        self.amounts, self.dates = Amounts(mapping), Dates(mapping.date_format)
        self.sign = -1 if mapping.negate else 1
        self.date, self.amount = at["date"], at.get("amount")
        self.debit, self.credit = at.get("debit"), at.get("credit")
        self.description, self.payee, self.memo = (
            at["description"], at.get("payee"), at.get("memo")
        )  # fmt: skip
        self.id, self.currency = at.get("id"), at.get("currency_column")

    def entry(self, row: list[str], line: int) -> Entry:
        when = _cell(row, self.date)
        if not when:
            blank = not any(c.strip() for c in row)
            return FileSkipped(line, "a blank row" if blank else "no date: not a transaction")
        moment = self.dates.parse(when)
        if moment is None:
            shown = f" as {self.mapping.date_format}" if self.mapping.date_format else ""
            return self.error(line, self.mapping.date, f"{when!r} is not a date{shown}")
        amount = self.money(row, line)
        if isinstance(amount, FileError):
            return amount
        amount = self.sign * amount
        if self.currency is None:
            currency = self.mapping.currency or ""
        else:
            currency = currency_code(_cell(row, self.currency))
            if currency is None:
                cell = _cell(row, self.currency)
                return self.error(
                    line, self.mapping.currency_column, f"{cell!r} is not a currency code"
                )
        return FileTransaction(
            line,
            TransactionData(
                external_id=_cell(row, self.id),
                status="posted",
                amount=amount,
                description=_cell(row, self.description),
                kind="deposit" if amount > 0 else "withdrawal",
                transacted_at=moment,
                posted_at=moment,
                currency=currency,
                payee=_cell(row, self.payee) or None,
                memo=_cell(row, self.memo) or None,
            ),
        )

    def money(self, row: list[str], line: int) -> Decimal | FileError:
        """The amount column's, or the credit less the debit (money out whatever its sign)."""
        if self.amount is not None:
            cell = _cell(row, self.amount)
            amount = self.amounts.parse(cell)
            if amount is None:
                return self.error(line, self.mapping.amount, f"{cell!r} is not an amount")
            return amount
        out, into = _cell(row, self.debit), _cell(row, self.credit)
        if not out and not into:
            return FileError(line, "neither debit nor credit has an amount")
        debit = self.amounts.parse(out) if out else Decimal(0)
        if debit is None:
            return self.error(line, self.mapping.debit, f"{out!r} is not an amount")
        credit = self.amounts.parse(into) if into else Decimal(0)
        if credit is None:
            return self.error(line, self.mapping.credit, f"{into!r} is not an amount")
        return credit - abs(debit)

    def error(self, line: int, column: Column, message: str) -> FileError:
        return FileError(line, f"{_name(column, self.header)}: {message}")


def _rows(text, head: bytes, encoding: str, mapping: CsvMapping) -> Iterator[Entry]:
    lines = _lines(text, 1)
    for _ in range(mapping.skip_rows):
        if next(lines, None) is None:
            raise FileProblem(None, f"the file has fewer than {mapping.skip_rows} lines to skip")
    first_lines = head.decode(encoding, "replace").splitlines()[mapping.skip_rows :]
    # The head's last line may be cut short: left out of the sample when there are others.
    delimiter = mapping.delimiter or sniff_delimiter(first_lines[:-1] or first_lines)
    rows = csv.reader(lines, delimiter=delimiter)
    start = mapping.skip_rows  # csv's line_num counts from here
    try:
        header = next(rows, None) if mapping.header else None
        if mapping.header and header is None:
            raise FileProblem(start + 1, "the file ends before its header row")
        convert = _Rows(mapping, header, _positions(mapping, header, start + 1))
        line = rows.line_num + 1 + start
        for row in rows:
            # The row's first line (a quoted field may span several).
            here, line = line, rows.line_num + 1 + start
            yield convert.entry(row, here)
    except csv.Error as exc:
        raise FileProblem(rows.line_num + start, f"not readable as CSV: {exc}") from None


def _name(column: Column, header: list[str] | None) -> str:
    if isinstance(column, int) and header is not None and column < len(header):
        return f"column {header[column].strip()!r}"
    return f"column {column!r}"
