"""Big bank files for the import benchmark (and the readers' constant-memory test): a year of a
checking account's transactions as a CSV and as an OFX 1.02 (SGML) statement, deterministic for
a seed. Written row by row: a million rows take the memory of one.

``python -m bench.files [ROWS]`` times the file readers alone on such files (rows/s, the median
of 3), the part of an import before the database.

What makes them realistic: dates over a year in order, descriptions from a pool (with the card
suffixes banks add), amounts of cents, a payroll twice a month, and about one row in fifty an
identical charge on the same day under a different id (two coffees: both must be imported).
"""

import random
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

START = date(2025, 1, 1)
PLACES = (
    "BLUE BOTTLE COFFEE", "WHOLE FOODS MARKET", "SHELL OIL", "NETFLIX.COM", "AMAZON MKTPLACE",
    "TRADER JOE'S", "UBER TRIP", "CVS PHARMACY", "COMCAST CABLE", "PG&E WEB ONLINE",
    "CAFÉ LUMIÈRE", "TARGET", "SPOTIFY USA", "CHIPOTLE", "HOME DEPOT", "SAFEWAY", "LYFT RIDE",
    "APPLE.COM/BILL", "COSTCO WHSE", "WALGREENS",
)  # fmt: skip
# The mapping that reads big_csv's files (CsvMapping's fields).
CSV_MAPPING = {
    "date": "Posting Date",
    "description": "Description",
    "amount": "Amount",
    "id": "Reference",
    "date_format": "%m/%d/%Y",
    "currency": "USD",
}


def rows(count: int, seed: int):
    """(day, id, description, amount, kind) for ``count`` transactions over a year."""
    pick = random.Random(seed)  # noqa: S311 (data for a benchmark, no secret)
    previous = None
    for n in range(count):
        day = START + timedelta(days=n * 365 // max(count, 1))
        ident = f"{seed:04d}{n:09d}"
        if previous is not None and previous[0] == day and pick.random() < 0.02:
            yield day, ident, previous[2], previous[3], previous[4]  # the same charge again
            continue
        if day.day in (1, 15) and pick.random() < 0.05:
            row = (day, ident, "PAYROLL ACME INC", Decimal("2450.00"), "DIRECTDEP")
        else:
            place = pick.choice(PLACES)
            suffix = f" #{pick.randint(100, 9999)}" if pick.random() < 0.3 else ""
            cents = pick.randint(99, 25_000)
            row = (day, ident, place + suffix, Decimal(-cents).scaleb(-2), "POS")
        previous = row
        yield row


def big_csv(path: Path, rows_: int, seed: int) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("Posting Date,Reference,Description,Amount\r\n")
        for day, ident, description, amount, _ in rows(rows_, seed):
            shown = f'"{description}"' if "," in description else description
            out.write(f"{day:%m/%d/%Y},{ident},{shown},{amount}\r\n")
    return path


def big_ofx(path: Path, rows_: int, seed: int) -> Path:
    """An OFX 1.02 bank statement as most banks send it: SGML, elements unclosed,
    Windows-1252."""
    end = START + timedelta(days=365)
    with open(path, "w", encoding="cp1252", newline="") as out:
        out.write(
            "OFXHEADER:100\r\nDATA:OFXSGML\r\nVERSION:102\r\nSECURITY:NONE\r\n"
            "ENCODING:USASCII\r\nCHARSET:1252\r\nCOMPRESSION:NONE\r\nOLDFILEUID:NONE\r\n"
            "NEWFILEUID:NONE\r\n\r\n<OFX>\r\n<SIGNONMSGSRSV1><SONRS><STATUS><CODE>0"
            "<SEVERITY>INFO</STATUS><DTSERVER>20260101120000[-5:EST]<LANGUAGE>ENG"
            "</SONRS></SIGNONMSGSRSV1>\r\n<BANKMSGSRSV1><STMTTRNRS><TRNUID>1<STATUS><CODE>0"
            "<SEVERITY>INFO</STATUS>\r\n<STMTRS><CURDEF>USD<BANKACCTFROM><BANKID>121000248"
            "<ACCTID>000123456789<ACCTTYPE>CHECKING</BANKACCTFROM>\r\n<BANKTRANLIST>"
            f"<DTSTART>{START:%Y%m%d}<DTEND>{end:%Y%m%d}\r\n"
        )
        balance = Decimal(0)
        for day, ident, description, amount, trntype in rows(rows_, seed):
            balance += amount
            name = description.replace("&", "&amp;")
            out.write(
                f"<STMTTRN>\r\n<TRNTYPE>{trntype}\r\n<DTPOSTED>{day:%Y%m%d}120000.000[-5:EST]"
                f"\r\n<TRNAMT>{amount}\r\n<FITID>{ident}\r\n<NAME>{name}\r\n</STMTTRN>\r\n"
            )
        out.write(
            f"</BANKTRANLIST>\r\n<LEDGERBAL><BALAMT>{balance}<DTASOF>{end:%Y%m%d}"
            "</LEDGERBAL>\r\n</STMTRS></STMTTRNRS></BANKMSGSRSV1>\r\n</OFX>\r\n"
        )
    return path


def read_rates(rows_: int = 100_000, repeat: int = 3, seed: int = 35) -> dict[str, tuple]:
    """Rows per second of ``read_file`` alone (median of ``repeat``) on a CSV and an OFX file:
    by the wall clock, and by the process's CPU time (steadier on a machine others share)."""
    from dashtam_api.sources.files import CsvMapping, FileTransaction, read_file

    rates = {}
    with tempfile.TemporaryDirectory() as folder:
        files = {
            "csv": (big_csv(Path(folder) / "big.csv", rows_, seed), CsvMapping(**CSV_MAPPING)),
            "ofx": (big_ofx(Path(folder) / "big.ofx", rows_, seed), None),
        }
        for format, (path, mapping) in files.items():
            wall, cpu = [], []
            for _ in range(repeat):
                started, used = time.perf_counter(), time.process_time()
                with open(path, "rb") as stream:
                    read = sum(
                        isinstance(entry, FileTransaction)
                        for entry in read_file(stream, format=format, mapping=mapping)
                    )
                wall.append(time.perf_counter() - started)
                cpu.append(time.process_time() - used)
            assert read == rows_, (format, read)
            rates[format] = (rows_ / statistics.median(wall), rows_ / statistics.median(cpu))
    return rates


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    for format, (wall, cpu) in read_rates(count).items():
        print(
            f"read_file {format}: {count:,} rows, {wall:,.0f} rows/s by the wall clock, "
            f"{cpu:,.0f} rows/s of CPU time (medians of 3)"
        )
