"""What reading a file yields, entry by entry, each with the 1-based line of the file where it
starts (an OFX ``<STMTTRN>``, a CAMT.053 ``<Ntry>``, a CSV row).

A ``FileError`` is one bad row: the importer collects them all and then refuses the import. A
``FileProblem`` (raised, not yielded, possibly after entries were yielded) says the file as a
whole cannot be read: nothing of it is kept.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from dashtam_api.sources.shapes import Holding, TransactionData


class FileProblem(Exception):
    """The file as a whole is unreadable (not the format, no statement, cut short, a CSV
    mapping naming a column the header lacks); ``line`` where one makes sense."""

    def __init__(self, line: int | None, message: str):
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class FileTransaction:
    line: int
    data: TransactionData


@dataclass(frozen=True, slots=True)
class FileBalance:
    """The account's balance as the statement states it. ``cash`` and ``buying_power`` are an
    investment statement's (OFX INVBAL: AVAILCASH, BUYPOWER); its ``current`` is that cash plus
    the market value of the positions listed before it."""

    line: int
    as_of: datetime
    current: Decimal
    available: Decimal | None
    currency: str
    cash: Decimal | None = None
    buying_power: Decimal | None = None


@dataclass(frozen=True, slots=True)
class FilePosition:
    line: int
    holding: Holding
    as_of: datetime | None
    currency: str


@dataclass(frozen=True, slots=True)
class FileAccount:
    """What the statement says of its account (a file may hold several statements: one each)."""

    line: int
    currency: str | None
    number_last4: str | None
    account_type: str | None


@dataclass(frozen=True, slots=True)
class FileSkipped:
    """A line deliberately not imported (a CAMT informational entry, a CSV total row)."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class FileError:
    """One bad row; the rest of the file is still read so every error is reported at once."""

    line: int
    message: str


_CODE = re.compile(r"[A-Z]{3}")


def currency_code(raw: str) -> str | None:
    """A currency as the database keeps it (ISO 4217: three letters), "" for none given (the
    account's), None when the text is not a code."""
    code = raw.strip().upper()
    return code if not code or _CODE.fullmatch(code) else None


Entry = FileTransaction | FileBalance | FilePosition | FileAccount | FileSkipped | FileError
