"""How a CSV file's columns map to a transaction: the person says it once (it arrives as JSON
beside the file, and may be saved for the next import of the same bank's files)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A column: its name in the header row, or its 0-based position.
Column = str | int


class CsvMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    date: Column
    # Either one signed amount column, or a debit (money out, whatever its printed sign) and a
    # credit column.
    amount: Column | None = None
    debit: Column | None = None
    credit: Column | None = None
    description: Column
    payee: Column | None = None
    memo: Column | None = None
    # The bank's own id of the row, when the file has one (the first thing duplicates are
    # recognised by).
    id: Column | None = None
    # The currency: a column of ISO 4217 codes, or one code for every row; neither: the
    # account's (the rows' currency is then "").
    currency_column: Column | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    # strftime codes ("%m/%d/%Y", "%d.%m.%Y", "%Y-%m-%d %H:%M"); None: ISO 8601.
    date_format: str | None = Field(default=None, min_length=2, max_length=64)
    decimal: Literal[".", ","] = "."
    # None: whichever of "," and "." is not the decimal mark, spaces and "'" too; "": none.
    thousands: Literal[",", ".", " ", "'", ""] | None = None
    # Lines before the header (a bank's title, the account number, the period).
    skip_rows: int = Field(default=0, ge=0, le=1000)
    header: bool = True
    # None: sniffed from the file's first lines among , ; tab |
    delimiter: Literal[",", ";", "\t", "|"] | None = None
    # The bank prints money out as positive (and money in as negative).
    negate: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "CsvMapping":
        if (self.amount is None) == (self.debit is None and self.credit is None):
            raise ValueError("map either amount, or debit and credit")
        if (self.debit is None) != (self.credit is None):
            raise ValueError("map both debit and credit (or amount alone)")
        if self.currency is not None and self.currency_column is not None:
            raise ValueError("map currency_column or give a fixed currency, not both")
        if self.thousands is not None and self.thousands == self.decimal:
            raise ValueError("the thousands separator cannot be the decimal mark")
        columns = [c for c in self.columns().values() if c is not None]
        if any(isinstance(c, int) and c < 0 for c in columns):
            raise ValueError("a column position starts at 0")
        if not self.header and any(isinstance(c, str) for c in columns):
            raise ValueError("without a header row, columns are given by position (0, 1, ...)")
        return self

    def columns(self) -> dict[str, Column | None]:
        return {
            "date": self.date,
            "amount": self.amount,
            "debit": self.debit,
            "credit": self.credit,
            "description": self.description,
            "payee": self.payee,
            "memo": self.memo,
            "id": self.id,
            "currency_column": self.currency_column,
        }
