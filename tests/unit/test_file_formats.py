"""The bank file readers (dashtam_api/sources/files): every fixture read into the entries it
holds, OFX compared with ofxtools (a well-kept OFX parser that builds the whole tree), encodings
as banks write them, the errors a person must see with their line, constant memory on big files,
and any bytes at all giving entries or a FileProblem, never another exception."""

import codecs
import io
import random
import tempfile
import tracemalloc
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ofxtools.Parser import OFXTree
from pydantic import ValidationError

from bench.files import CSV_MAPPING, big_csv, big_ofx
from dashtam_api.sources.files import (
    FORMATS,
    CsvMapping,
    FileAccount,
    FileBalance,
    FileError,
    FilePosition,
    FileProblem,
    FileSkipped,
    FileTransaction,
    detect_format,
    read_file,
)
from dashtam_api.sources.files import text as texts
from dashtam_api.sources.files.delimited import Amounts
from dashtam_api.sources.files.ofx_records import moment

FIXTURES = Path(__file__).parent.parent / "fixtures" / "files"
OFX_FIXTURES = ("bank-1252.ofx", "card-v2.ofx", "investment.ofx", "savings.qfx")
GERMAN = CsvMapping(
    date="Buchungstag",
    description="Verwendungszweck",
    payee="Empfänger/Auftraggeber",
    debit="Soll",
    credit="Haben",
    currency_column="Währung",
    date_format="%d.%m.%Y",
    decimal=",",
)
US = CsvMapping(
    date="Date",
    description="Description",
    amount="Amount",
    id="Reference",
    date_format="%m/%d/%Y",
    skip_rows=3,
    currency="USD",
)


def read(source: str | bytes, format: str | None = None, mapping=None, stream=None) -> list:
    data = (FIXTURES / source).read_bytes() if isinstance(source, str) else source
    if format is None:
        format = detect_format(data[:4096], source if isinstance(source, str) else None)
    return list(read_file(stream or io.BytesIO(data), format=format, mapping=mapping))


def of(entries: list, kind: type) -> list:
    return [e for e in entries if isinstance(e, kind)]


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# --- OFX ----------------------------------------------------------------------------------------


def test_an_ofx_1_bank_statement_in_windows_1252_with_unclosed_elements():
    entries = read("bank-1252.ofx")
    assert isinstance(entries[0], FileAccount)
    assert entries[0] == FileAccount(35, "USD", "5678", "checking")
    first, payroll, check, fee, interest, coffee, again = (
        e.data for e in of(entries, FileTransaction)
    )
    assert [e.line for e in of(entries, FileTransaction)] == [43, 52, 59, 66, 73, 80, 87]
    assert first.description == "CAFÉ AMELIE"  # é from byte 0xE9 of Windows-1252
    assert first.memo == "Card 1234 purchase"
    assert (first.amount, first.kind, first.institution_type) == (Decimal("-4.75"), "card", "POS")
    assert first.posted_at == utc(2026, 2, 3, 17)  # 12:00 [-5:EST]
    assert first.transacted_at == utc(2026, 2, 2)  # DTUSER
    assert first.external_id == "202602030001"
    assert first.status == "posted"
    assert payroll.description == "ACME & SONS PAYROLL"
    assert payroll.kind == "deposit"
    assert check.description == "Check 1042"
    assert check.kind == "withdrawal"
    assert (fee.kind, interest.kind) == ("fee", "interest")
    # Two identical coffees on one day: two transactions, told apart by their FITIDs.
    assert (coffee.amount, coffee.posted_at) == (again.amount, again.posted_at)
    assert coffee.external_id != again.external_id
    (balance,) = of(entries, FileBalance)
    assert balance == FileBalance(
        95, utc(2026, 3, 5, 17), Decimal("2365.92"), Decimal("2300.00"), "USD"
    )
    assert not of(entries, FileError)


def test_an_ofx_2_card_statement():
    entries = read("card-v2.ofx")
    assert entries[0] == FileAccount(17, "EUR", "9876", "credit_card")
    books, streaming, refund, payment = (e.data for e in of(entries, FileTransaction))
    assert books.kind == "card"
    assert books.transacted_at == utc(2026, 2, 2, 18, 30)
    # A PAYEE aggregate names the payee; CURRENCY says the amount is in another currency.
    assert (streaming.payee, streaming.description) == ("Streaming <Plus>", "Streaming <Plus>")
    assert streaming.currency == "USD"
    assert books.currency == "EUR"
    assert (refund.kind, payment.kind) == ("deposit", "transfer")
    (balance,) = of(entries, FileBalance)
    assert (balance.current, balance.available) == (Decimal("-1051.19"), Decimal("3948.81"))


def test_an_ofx_investment_statement_resolves_tickers_from_the_seclist_after_it():
    entries = read("investment.ofx")
    assert entries[0] == FileAccount(20, "USD", "5678", "brokerage")
    buy, sell, dividend, deposit = (e.data for e in of(entries, FileTransaction))
    assert (buy.kind, buy.symbol, buy.quantity, buy.price) == (
        "trade",
        "VTI",
        10,
        Decimal("245.10"),
    )
    assert (buy.amount, buy.fees, buy.asset_type) == (
        Decimal("-2456.00"),
        Decimal("5.00"),
        "equity",
    )
    assert buy.settlement_date == date(2026, 1, 7)
    assert buy.description == "Bought 10 VTI"
    assert (sell.symbol, sell.quantity, sell.amount) == ("AAPL", Decimal("-5"), Decimal("945.03"))
    assert sell.fees == Decimal("4.97")  # commission + taxes
    assert (dividend.kind, dividend.symbol, dividend.amount) == ("dividend", "VTI", Decimal("8.76"))
    assert (deposit.kind, deposit.amount) == ("deposit", Decimal("5000.00"))  # INVBANKTRAN
    vti, fund = of(entries, FilePosition)
    assert vti.holding.symbol == "VTI"
    assert vti.holding.description.startswith("Vanguard")
    assert (fund.holding.symbol, fund.holding.asset_type) == ("FXAIX", "mutual_fund")
    assert fund.holding.quantity == Decimal("12.345")
    assert fund.as_of == utc(2026, 3, 5, 21)
    (balance,) = of(entries, FileBalance)
    assert balance.cash == Decimal("3497.79")
    assert balance.buying_power == Decimal("6995.58")
    assert balance.current == Decimal("3497.79") + Decimal("2513.00") + Decimal("246.90")


class Unseekable(io.RawIOBase):
    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        return self._data.readinto(buffer)


def test_a_seclist_is_found_once_and_an_unseekable_stream_falls_back_to_the_uniqueid():
    data = (FIXTURES / "investment.ofx").read_bytes()
    entries = read(data, "ofx", stream=Unseekable(data))
    assert [e.data.symbol for e in of(entries, FileTransaction)] == [
        "922908769",
        "037833100",
        "922908769",
        None,
    ]
    # The security list before the statement: read on the way, no second look needed.
    start, end = data.index(b"<SECLISTMSGSRSV1>"), data.index(b"</SECLISTMSGSRSV1>") + 18
    moved = data.replace(data[start:end], b"").replace(
        b"<INVSTMTMSGSRSV1>", data[start:end] + b"<INVSTMTMSGSRSV1>"
    )
    entries = read(moved, "ofx", stream=Unseekable(moved))
    assert [e.data.symbol for e in of(entries, FileTransaction)] == ["VTI", "AAPL", "VTI", None]
    # A seekable stream is left where the reader was, after the second look.
    stream = io.BytesIO(data)
    reading = read_file(stream, format="ofx")
    next(reading)
    at = stream.tell()
    next(reading)  # the first trade: the second look happens here
    assert stream.tell() == at
    assert len(list(reading)) == 6


def test_a_qfx_is_ofx():
    entries = read("savings.qfx")
    assert detect_format((FIXTURES / "savings.qfx").read_bytes()[:100], None) == "ofx"
    assert entries[0] == FileAccount(11, "USD", "4321", "savings")
    assert [e.data.kind for e in of(entries, FileTransaction)] == [
        "transfer",
        "interest",
        "withdrawal",
    ]
    assert of(entries, FileBalance)[0].available is None


@pytest.mark.parametrize("name", OFX_FIXTURES)
def test_ofx_reads_as_ofxtools_does(name):
    tree = OFXTree()
    tree.parse(str(FIXTURES / name))
    ofx = tree.convert()
    (statement,) = ofx.statements
    ours = read(name)
    transactions = [e.data for e in of(ours, FileTransaction)]
    assert len(transactions) == len(statement.transactions)
    tickers = {s.secid.uniqueid: s.ticker for s in (ofx.securities or [])}
    for mine, theirs in zip(transactions, statement.transactions, strict=True):
        kind = type(theirs).__name__
        if kind not in ("STMTTRN", "INVBANKTRAN"):
            detail = (
                theirs.invbuy
                if kind.startswith("BUY")
                else theirs.invsell
                if kind.startswith("SELL")
                else theirs
            )
            assert mine.external_id == detail.invtran.fitid
            assert mine.transacted_at == detail.invtran.dttrade
            assert mine.amount == detail.total
            assert mine.symbol == tickers[detail.secid.uniqueid]
            if kind.startswith(("BUY", "SELL")):
                assert abs(mine.quantity) == abs(detail.units)
                assert mine.price == detail.unitprice
                charged = [detail.commission, detail.fees, detail.taxes]
                assert mine.fees == sum(c for c in charged if c is not None)
            continue
        trn = theirs.stmttrn if kind == "INVBANKTRAN" else theirs
        assert mine.external_id == trn.fitid
        assert mine.amount == trn.trnamt
        assert mine.posted_at == trn.dtposted
        assert mine.transacted_at == (trn.dtuser or trn.dtposted)
        assert mine.institution_type == trn.trntype
        assert mine.memo in (trn.memo, None)
        name_ = trn.name or (trn.payee.name if trn.payee is not None else None)
        assert mine.description == (name_ or trn.memo or f"Check {trn.checknum}")
        currency = trn.currency.cursym if trn.currency is not None else statement.curdef
        assert mine.currency == currency
    balances = of(ours, FileBalance)
    if type(statement).__name__ == "INVSTMTRS":
        assert balances[0].cash == statement.invbal.availcash
        positions = of(ours, FilePosition)
        assert [
            (p.holding.symbol, p.holding.quantity, p.holding.market_value) for p in positions
        ] == [(tickers[p.secid.uniqueid], p.units, p.mktval) for p in statement.positions]
    else:
        assert balances[0].current == statement.ledgerbal.balamt
        assert balances[0].as_of == statement.ledgerbal.dtasof
        if statement.availbal is not None:
            assert balances[0].available == statement.availbal.balamt


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20260203", utc(2026, 2, 3)),
        ("202602031230", utc(2026, 2, 3, 12, 30)),
        ("20260203123045", utc(2026, 2, 3, 12, 30, 45)),
        ("20260203123045.250", utc(2026, 2, 3, 12, 30, 45, 250000)),
        ("20260203123045.000[-5:EST]", utc(2026, 2, 3, 17, 30, 45)),
        ("20260203123045[+5.5:IST]", utc(2026, 2, 3, 7, 0, 45)),
        ("20260203[-8:PST]", utc(2026, 2, 3, 8)),
        ("20260203120000[0:GMT]", utc(2026, 2, 3, 12)),
        ("20260203120000 [-3]", utc(2026, 2, 3, 15)),
        ("20260230", None),
        ("2026-02-03", None),
        ("yesterday", None),
    ],
)
def test_ofx_dates_and_their_offsets(text, expected):
    assert moment(text) == expected


def test_an_ofx_row_that_does_not_parse_is_an_error_on_its_line_and_the_rest_is_read():
    data = (FIXTURES / "bank-1252.ofx").read_bytes()
    data = data.replace(b"<TRNAMT>-120.00", b"<TRNAMT>12O.00").replace(
        b"<DTPOSTED>20260228\r\n<TRNAMT>-5.00", b"<DTPOSTED>2026-02-28\r\n<TRNAMT>-5.00"
    )
    entries = read(data, "ofx")
    assert of(entries, FileError) == [
        FileError(59, "TRNAMT: '12O.00' is not an amount"),
        FileError(66, "DTPOSTED: '2026-02-28' is not a date"),
    ]
    assert len(of(entries, FileTransaction)) == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d[: len(d) // 2], "ends inside <STMTTRN>"),
        (lambda d: d[: d.index(b"</BANKMSGSRSV1>")], "ends before </OFX>"),
        (
            lambda d: d.replace(
                b"<SEVERITY>INFO\r\n</STATUS>\r\n<STMTRS>",
                b"<SEVERITY>ERROR\r\n<MESSAGE>Account closed\r\n</STATUS>\r\n<STMTRS>",
            ),
            "reports error 0: Account closed",
        ),
        (
            lambda d: d[: d.index(b"<BANKMSGSRSV1>")] + b"</OFX>",
            "no bank, card or investment statement",
        ),
        (lambda d: b"Date,Amount\n2026-01-01,5\n", "not an OFX file"),
    ],
)
def test_an_unreadable_ofx_file_is_a_file_problem(change, message):
    data = change((FIXTURES / "bank-1252.ofx").read_bytes())
    with pytest.raises(FileProblem, match=message):
        read(data, "ofx")


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_chunk_boundaries_change_nothing(monkeypatch, chunk):
    mappings = {"debit-credit-1252.csv": GERMAN, "amount-preamble.csv": US}
    names = (*OFX_FIXTURES, "camt053-v02.xml", "camt053-v08.xml", *mappings)
    expected = {name: read(name, mapping=mappings.get(name)) for name in names}
    monkeypatch.setattr(texts, "CHUNK", chunk)
    for name, entries in expected.items():
        assert read(name, mapping=mappings.get(name)) == entries, name


# --- the OFX header's and the XML declaration's encodings ----------------------------------------


def _ofx1(charset: str, encoding: str, name: bytes) -> bytes:
    return (
        (
            f"OFXHEADER:100\nDATA:OFXSGML\nVERSION:102\nSECURITY:NONE\nENCODING:{encoding}\n"
            f"CHARSET:{charset}\nCOMPRESSION:NONE\nOLDFILEUID:NONE\nNEWFILEUID:NONE\n\n"
            "<OFX><BANKMSGSRSV1><STMTTRNRS><STMTRS><CURDEF>EUR<BANKTRANLIST><STMTTRN><TRNTYPE>POS"
            "<DTPOSTED>20260101<TRNAMT>-1<FITID>1<NAME>"
        ).encode()
        + name
        + b"</STMTTRN></BANKTRANLIST></STMTRS></STMTTRNRS></BANKMSGSRSV1></OFX>"
    )


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (_ofx1("1252", "USASCII", "Café \u2013 €5".encode("cp1252")), "Café \u2013 €5"),
        (_ofx1("ISO-8859-1", "USASCII", "Müller".encode("latin-1")), "Müller"),
        (_ofx1("NONE", "UTF-8", "Zoë ✓".encode()), "Zoë ✓"),
        (_ofx1("NONE", "USASCII", "Crème".encode("cp1252")), "Crème"),  # says ASCII, is not
        (_ofx1("NONE", "USASCII", b"&eacute;t&#233; &amp; co"), "été & co"),
        (codecs.BOM_UTF8 + _ofx1("1252", "USASCII", "Ĳssel".encode()), "Ĳssel"),  # the BOM wins
        (
            '<?xml version="1.0" encoding="ISO-8859-15"?><?OFX OFXHEADER="200" VERSION="220"?>'
            "<OFX><STMTRS><CURDEF>EUR</CURDEF><STMTTRN><DTPOSTED>20260101</DTPOSTED><TRNAMT>1"
            "</TRNAMT><NAME>Prix 5 €</NAME></STMTTRN></STMTRS></OFX>".encode("iso-8859-15"),
            "Prix 5 €",
        ),
        (
            codecs.BOM_UTF16_LE
            + _ofx1("NONE", "UNICODE", b"X").decode().replace(">X<", ">Åsa<").encode("utf-16-le"),
            "Åsa",
        ),
    ],
)
def test_ofx_encodings(data, name):
    (transaction,) = of(read(data, "ofx"), FileTransaction)
    assert transaction.data.description == name


# --- CSV ----------------------------------------------------------------------------------------


def test_a_csv_with_debit_and_credit_columns_decimal_commas_and_semicolons_in_windows_1252():
    entries = read("debit-credit-1252.csv", mapping=GERMAN)
    bakery, salary, power, cafe = (e.data for e in of(entries, FileTransaction))
    assert bakery.payee == "Bäckerei Müller"  # not UTF-8: read as Windows-1252
    assert (bakery.amount, bakery.kind, bakery.currency) == (Decimal("-4.80"), "withdrawal", "EUR")
    assert (salary.amount, salary.kind) == (Decimal("3250.00"), "deposit")
    assert power.amount == Decimal("-85.00")  # a debit is money out whatever its sign
    assert cafe.payee == 'Café "Zur Post"'
    assert cafe.transacted_at == utc(2026, 2, 14)
    assert [e.line for e in of(entries, FileTransaction)] == [2, 3, 4, 6]
    assert of(entries, FileSkipped) == [FileSkipped(5, "a blank row")]
    assert all(t.data.external_id == "" for t in of(entries, FileTransaction))


def test_a_csv_with_one_amount_column_and_lines_before_its_header():
    entries = read("amount-preamble.csv", mapping=US)
    payroll, grocery, again, refund, rent = (e.data for e in of(entries, FileTransaction))
    assert (payroll.amount, payroll.description, payroll.external_id) == (
        Decimal("2500.00"), "PAYROLL ACME, INC.", "R-1",
    )  # fmt: skip
    assert grocery.amount == again.amount == Decimal("-84.21")  # "($84.21)"
    assert (grocery.external_id, again.external_id) == ("R-2", "R-3")
    assert (refund.amount, rent.amount) == (Decimal("19.99"), Decimal("-1450.00"))
    assert rent.currency == "USD"
    assert rent.posted_at == utc(2026, 2, 11)
    assert [e.line for e in of(entries, FileTransaction)] == [5, 6, 7, 8, 9]
    assert of(entries, FileSkipped) == [FileSkipped(10, "no date: not a transaction")]


def csv_rows(text: str, encoding="utf-8", **mapping) -> list:
    fields = {"date": 0, "description": 1, "amount": 2, "header": False, **mapping}
    return read(text.encode(encoding), "csv", CsvMapping(**fields))


@pytest.mark.parametrize(
    ("cell", "decimal", "thousands", "expected"),
    [
        ("1234.56", ".", None, "1234.56"),
        ("$1,234.56", ".", None, "1234.56"),
        ("-$1,234.56", ".", None, "-1234.56"),
        ("$-12.50", ".", None, "-12.50"),
        ("(12.50)", ".", None, "-12.50"),
        ("($1,000)", ".", None, "-1000"),
        ("12.50-", ".", None, "-12.50"),
        ("12.50 DR", ".", None, "-12.50"),
        ("12.50 CR", ".", None, "12.50"),
        ("+7", ".", None, "7"),
        (".5", ".", None, "0.5"),
        ("1.234,56 €", ",", None, "1234.56"),
        ("-1 234,56", ",", " ", "-1234.56"),
        ("1\u00a0234,56", ",", None, "1234.56"),
        ("1'234.50 CHF", ".", "'", "1234.50"),
        ("EUR 5", ".", None, "5"),
        ("\u22123,10", ",", None, "-3.10"),
        ("1,234.56", ",", None, None),  # the separators the other way round: refused
        ("12.50", ",", ".", None),
        ("1,23", ".", None, None),
        ("1,234.56", ".", "", None),
        ("abc", ".", None, None),
        ("1e5", ".", None, None),
        ("", ".", None, None),
        ("-", ".", None, None),
    ],
)
def test_csv_amounts(cell, decimal, thousands, expected):
    mapping = CsvMapping(
        date=0, description=1, amount=2, header=False, decimal=decimal, thousands=thousands
    )
    parsed = Amounts(mapping).parse(cell)
    assert parsed == (Decimal(expected) if expected is not None else None)


def test_csv_rows_that_do_not_parse_are_errors_naming_the_column_and_value():
    entries = read(
        b"Date,Memo,Amount\n2026-01-02,ok,5\n2026-13-01,bad date,5\n2026-01-03,bad amount,5,00\n"
        b"2026-01-04,,abc\n",
        "csv",
        CsvMapping(date="Date", description="Memo", amount="Amount", delimiter=","),
    )
    assert of(entries, FileError) == [
        FileError(3, "column 'Date': '2026-13-01' is not a date"),
        FileError(5, "column 'Amount': 'abc' is not an amount"),
    ]
    assert len(of(entries, FileTransaction)) == 2  # "5,00" in a comma file: the 5 is read


def test_csv_dates_formats_delimiters_negation_and_currency_columns():
    (row,) = of(
        csv_rows("05.03.2026;Rent;1.200,00\n", date_format="%d.%m.%Y", decimal=",", negate=True),
        FileTransaction,
    )
    assert (row.data.amount, row.data.transacted_at) == (Decimal("-1200.00"), utc(2026, 3, 5))
    (row,) = of(
        csv_rows("2026-03-05T14:30:00+01:00\tCoffee\t-3.50\tchf\n", currency_column=3),
        FileTransaction,
    )
    assert (row.data.transacted_at, row.data.currency) == (utc(2026, 3, 5, 13, 30), "CHF")
    (row,) = of(csv_rows("3/5/26|Coffee|-3.50\n", date_format="%m/%d/%y"), FileTransaction)
    assert row.data.transacted_at == utc(2026, 3, 5)
    assert row.data.currency == ""
    rows = csv_rows('2026-03-05,"two\nlines",1\n2026-03-06,next,2\n')
    assert [(e.line, e.data.description) for e in rows] == [(1, "two\nlines"), (3, "next")]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1"])
def test_csv_encodings(encoding):
    (row,) = of(csv_rows("2026-01-02,Crème brûlée,-7.00\n", encoding), FileTransaction)
    assert row.data.description == "Crème brûlée"


def test_a_csv_mapping_naming_a_column_the_header_lacks_is_a_file_problem():
    with pytest.raises(FileProblem, match="the header has no column 'Betrag'") as problem:
        read(b"intro\nDate,Amount,Memo\n2026-01-01,1,x\n", "csv",
             CsvMapping(date="Date", amount="Betrag", description="Memo", skip_rows=1))  # fmt: skip
    assert problem.value.line == 2
    # Names match whatever their case and surrounding spaces.
    entries = read(b" DATE , amount,memo\n2026-01-01,1,x\n", "csv",
                   CsvMapping(date="Date", amount="Amount", description="Memo"))  # fmt: skip
    assert len(of(entries, FileTransaction)) == 1
    with pytest.raises(FileProblem, match="needs a mapping"):
        read(b"a,b\n", "csv")
    with pytest.raises(FileProblem, match="ends before its header"):
        read(
            b"only\n",
            "csv",
            CsvMapping(date="Date", amount="Amount", description="Memo", skip_rows=1),
        )


@pytest.mark.parametrize(
    "fields",
    [
        {"date": 0, "description": 1},  # no amount
        {"date": 0, "description": 1, "amount": 2, "debit": 3, "credit": 4},
        {"date": 0, "description": 1, "debit": 3},
        {"date": 0, "description": 1, "amount": 2, "currency": "usd"},
        {"date": 0, "description": 1, "amount": 2, "currency": "USD", "currency_column": 3},
        {"date": "Date", "description": 1, "amount": 2, "header": False},
        {"date": 0, "description": 1, "amount": -1},
        {"date": 0, "description": 1, "amount": 2, "decimal": ",", "thousands": ","},
        {"date": 0, "description": 1, "amount": 2, "delimiter": "x"},
        {"date": 0, "description": 1, "amount": 2, "colour": "red"},
    ],
)
def test_a_mapping_that_cannot_work_is_refused(fields):
    with pytest.raises(ValidationError):
        CsvMapping(**fields)


def test_a_mapping_arrives_as_json():
    mapping = CsvMapping.model_validate_json(
        '{"date": "Datum", "amount": 3, "description": "Text", "decimal": ",", "skip_rows": 2}'
    )
    assert (mapping.date, mapping.amount, mapping.thousands) == ("Datum", 3, None)


# --- CAMT.053 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["camt053-v02.xml", "camt053-v08.xml"])
def test_camt053_statements_of_both_generations(name):
    entries = read(name)
    assert isinstance(entries[0], FileAccount)
    transactions = [e.data for e in of(entries, FileTransaction)]
    statuses = [t.status for t in transactions]
    assert "posted" in statuses
    assert "pending" in statuses
    assert all(t.amount > 0 if t.kind == "deposit" else t.amount < 0 for t in transactions)
    assert of(entries, FileBalance)
    assert not of(entries, FileError)


def test_camt053_001_02_entries():
    entries = read("camt053-v02.xml")
    assert entries[0] == FileAccount(16, "EUR", "3000", "checking")
    assert entries[1] == FileBalance(
        28, utc(2026, 3, 5, 23, 59, 59, 999999), Decimal("2849.35"), Decimal("2800.00"), "EUR"
    )
    salary, card, batch, pending = (e.data for e in of(entries, FileTransaction))
    assert [e.line for e in of(entries, FileTransaction)] == [40, 64, 80, 104]
    assert salary.external_id == "2026030400017"  # AcctSvcrRef first
    assert (salary.amount, salary.kind, salary.payee) == (
        Decimal("1850.00"),
        "deposit",
        "Muster & Söhne GmbH",
    )
    assert salary.description == "Gehalt März 2026"
    assert salary.institution_type == "PMNT/RCDT/ESCT"
    assert card.external_id == "POS-88123"  # EndToEndId NOTPROVIDED: the TxId
    assert (card.amount, card.kind, card.payee) == (Decimal("-45.90"), "card", "Edeka Markt 1234")
    assert card.description == "Kartenzahlung Edeka Markt 1234 Berlin"  # both Ustrd lines
    assert card.transacted_at == utc(2026, 3, 4, 16, 42, 10)
    assert card.posted_at == utc(2026, 3, 5)
    assert card.settlement_date == date(2026, 3, 4)
    # A batch: one transaction for the entry's amount, not one per detail.
    assert (batch.amount, batch.description, batch.payee) == (
        Decimal("-452.75"),
        "SAMMELUEBERWEISUNG 2 POSTEN",
        None,
    )
    assert (pending.status, pending.posted_at, pending.kind) == ("pending", None, "fee")
    assert pending.transacted_at == utc(2026, 3, 6)
    assert of(entries, FileSkipped) == [
        FileSkipped(113, "an informational entry (Sts INFO), not a booking")
    ]


def test_camt053_001_08_entries():
    entries = read("camt053-v08.xml")
    assert entries[0] == FileAccount(11, "CHF", "2957", None)
    interim, closing = of(entries, FileBalance)
    assert (interim.as_of, interim.current) == (utc(2026, 3, 5, 12), Decimal("-120.50"))
    assert closing.as_of == utc(2026, 3, 5, 23, 59, 59, 999999)
    debit, batch, pending = (e.data for e in of(entries, FileTransaction))
    assert (debit.external_id, debit.payee) == ("A1", "Swisscom (Schweiz) AG")  # Pty/Nm
    assert debit.posted_at == utc(2026, 3, 5, 8, 30)
    assert (batch.amount, batch.description) == (Decimal("-30.60"), "Batch of 3 transactions")
    assert (pending.status, pending.external_id, pending.institution_type) == (
        "pending",
        "TX-4711",
        "XTND-CRED",
    )
    assert pending.payee == "Anna Keller"
    assert pending.description == "Rückzahlung Skiferien"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d[: len(d) // 2], "cut short"),
        (
            lambda d: d.replace(
                b"<Document",
                b'<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]><Document',
            ),
            "document type declaration",
        ),
        (
            lambda d: d.replace(
                b"<Document", b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Document'
            ).replace(b"<Id>STMT", b"<Id>&x;STMT"),
            "document type declaration",
        ),
        (
            lambda d: d.replace(b"<Stmt>", b"<Other>").replace(b"</Stmt>", b"</Other>"),
            "holds no statement",
        ),
        (lambda d: d.replace(b"</Ntry>", b"</Ntr>", 1), "not well-formed"),
        (lambda d: b"<Document><Other/></Document>", "not a CAMT.053"),
    ],
)
def test_an_unreadable_camt_file_is_a_file_problem(change, message):
    with pytest.raises(FileProblem, match=message):
        read(change((FIXTURES / "camt053-v02.xml").read_bytes()), "camt053")


def test_camt_bad_entries_are_errors_on_their_lines():
    data = (FIXTURES / "camt053-v02.xml").read_bytes()
    data = data.replace(b'<Amt Ccy="EUR">45.90</Amt>', b'<Amt Ccy="EUR">45,90</Amt>')
    data = data.replace(b"<Sts>PDNG</Sts>", b"<Sts>WHAT</Sts>")
    assert of(read(data, "camt053"), FileError) == [
        FileError(64, "Amt: '45,90' is not an amount"),
        FileError(104, "Sts: 'WHAT' is not BOOK, PDNG or INFO"),
    ]


def test_camt_in_windows_1252_as_its_declaration_says():
    data = (FIXTURES / "camt053-v02.xml").read_text(encoding="utf-8")
    data = data.replace('encoding="UTF-8"', 'encoding="windows-1252"').encode("cp1252")
    salary = of(read(data, "camt053"), FileTransaction)[0].data
    assert salary.payee == "Muster & Söhne GmbH"


# --- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "filename", "expected"),
    [
        (b"OFXHEADER:100\r\nDATA:OFXSGML", None, "ofx"),
        (b'<?xml version="1.0"?>\n<?OFX OFXHEADER="200"?>', "statement.xml", "ofx"),
        (b"\n\n<OFX>\n<SIGNONMSGSRSV1>", None, "ofx"),
        (
            b'<?xml version="1.0"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">',
            None,
            "camt053",
        ),
        (b"<Document><BkToCstmrStmt>", "x.xml", "camt053"),
        (b"anything", "export.QFX", "ofx"),
        (b"anything", "Export.CSV", "csv"),
        (b"Date;Text;Amount\n01.02.2026;x;1,00\n02.02.2026;y;2,00\n", None, "csv"),
        (
            codecs.BOM_UTF16_LE
            + "Date\tAmount\n2026-01-01\t5\n2026-01-02\t6\n".encode("utf-16-le"),
            "x.txt",
            "csv",
        ),
        (b"<html><body>Sign in</body></html>", "statement.ofx.html", None),
        (b"%PDF-1.7\n\x00\x01\x02", "statement.pdf", None),
        (b"just one line", None, None),
        (b"", None, None),
    ],
)
def test_detect_format(head, filename, expected):
    assert detect_format(head, filename) == expected
    assert expected is None or expected in FORMATS


# --- big files: constant memory -----------------------------------------------------------------


def _peak(path: Path, **how) -> tuple[int, int]:
    tracemalloc.start()
    try:
        with open(path, "rb") as stream:
            count = sum(isinstance(e, FileTransaction) for e in read_file(stream, **how))
        return tracemalloc.get_traced_memory()[1], count
    finally:
        tracemalloc.stop()


def _big_camt(path: Path, rows: int) -> Path:
    with open(path, "w", encoding="utf-8") as out:
        out.write('<?xml version="1.0"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">'
                  "<BkToCstmrStmt><Stmt><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>\n")  # fmt: skip
        for n in range(rows):
            out.write(
                f'<Ntry>\n<Amt Ccy="EUR">{n % 997}.{n % 100:02d}</Amt><CdtDbtInd>DBIT</CdtDbtInd>'
                f"<Sts>BOOK</Sts><BookgDt><Dt>2026-01-{n % 28 + 1:02d}</Dt></BookgDt>"
                f"<AcctSvcrRef>R{n}</AcctSvcrRef><NtryDtls><TxDtls><RmtInf><Ustrd>Payment {n}"
                "</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>\n"
            )
        out.write("</Stmt></BkToCstmrStmt></Document>\n")
    return path


@pytest.mark.parametrize("format", FORMATS)
def test_memory_does_not_grow_with_the_file(tmp_path, format):
    make = {
        "csv": lambda p, n: big_csv(p, n, 35),
        "ofx": lambda p, n: big_ofx(p, n, 35),
        "camt053": _big_camt,
    }[format]
    how = {"format": format, "mapping": CsvMapping(**CSV_MAPPING) if format == "csv" else None}
    small, small_count = _peak(make(tmp_path / "small", 2_000), **how)
    big, big_count = _peak(make(tmp_path / "big", 20_000), **how)
    assert (small_count, big_count) == (2_000, 20_000)
    size = (tmp_path / "big").stat().st_size
    # Ten times the rows (the big file is megabytes): the same peak, give or take a chunk.
    assert big < small + 128 * 1024, (small, big, size)


def test_the_big_files_are_what_the_benchmark_says(tmp_path):
    entries = read(
        big_csv(tmp_path / "b.csv", 3_000, 1).read_bytes(), "csv", CsvMapping(**CSV_MAPPING)
    )
    assert len(of(entries, FileTransaction)) == 3_000
    assert not of(entries, FileError)
    ofx = read(big_ofx(tmp_path / "b.ofx", 3_000, 1).read_bytes(), "ofx")
    transactions = [e.data for e in of(ofx, FileTransaction)]
    assert [(t.amount, t.description) for t in transactions] == [
        (e.data.amount, e.data.description) for e in of(entries, FileTransaction)
    ]
    days = {t.posted_at.date() for t in transactions}
    assert len(days) > 300  # a year
    same = {}
    for t in transactions:
        same.setdefault((t.posted_at, t.amount, t.description), set()).add(t.external_id)
    assert any(len(ids) > 1 for ids in same.values())  # identical charges, their own ids
    assert len({t.external_id for t in transactions}) == 3_000
    assert of(ofx, FileBalance)[0].current == sum(t.amount for t in transactions)


# --- any bytes: entries or a FileProblem --------------------------------------------------------

ANY_MAPPING = CsvMapping(date=0, description=1, amount=2, header=False)
NAMED_MAPPING = CsvMapping(date="Date", description="Description", amount="Amount", skip_rows=3)


def _consume(data: bytes, format: str, mapping=None) -> None:
    try:
        for entry in read_file(io.BytesIO(data), format=format, mapping=mapping):
            assert isinstance(
                entry,
                FileTransaction
                | FileBalance
                | FilePosition
                | FileAccount
                | FileSkipped
                | FileError,
            )
    except FileProblem:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.sampled_from(FORMATS))
def test_any_bytes_give_entries_or_a_file_problem(data, format):
    _consume(data, format, ANY_MAPPING if format == "csv" else None)


OFX_TOKENS = [
    "<OFX>", "</OFX>", "<STMTRS>", "</STMTRS>", "<INVSTMTRS>", "</INVSTMTRS>", "<CCSTMTRS>",
    "<CURDEF>USD", "<CURDEF>", "<STMTTRN>", "</STMTTRN>", "<TRNAMT>-1.5", "<TRNAMT>x",
    "<DTPOSTED>20260101", "<DTPOSTED>2026", "<FITID>1", "<NAME>a&amp;b", "<BUYSTOCK>",
    "</BUYSTOCK>", "<DTTRADE>20260101", "<TOTAL>5", "<UNITS>2", "<UNIQUEID>X", "<POSSTOCK>",
    "</POSSTOCK>", "<MKTVAL>1", "<SECLIST>", "</SECLIST>", "<STOCKINFO>", "</STOCKINFO>",
    "<TICKER>T", "<INVBAL>", "</INVBAL>", "<AVAILCASH>1", "<LEDGERBAL>", "</LEDGERBAL>",
    "<BALAMT>1", "<DTASOF>20260101", "<STATUS>", "<SEVERITY>ERROR", "</STATUS>", "<CURRENCY>",
    "<CURSYM>EU", "<BANKACCTFROM>", "<ACCTID>1", "</BANKACCTFROM>", "\n", "<", ">", "&#0;",
]  # fmt: skip
CAMT_TOKENS = [
    "<Stmt>", "</Stmt>", "<Ntry>", "</Ntry>", '<Amt Ccy="EUR">1.00</Amt>', "<Amt>x</Amt>",
    "<CdtDbtInd>DBIT</CdtDbtInd>", "<Sts>BOOK</Sts>", "<Sts><Cd>PDNG</Cd></Sts>",
    "<BookgDt><Dt>2026-01-01</Dt></BookgDt>", "<ValDt><DtTm>2026-01-01T10:00:00</DtTm></ValDt>",
    "<Bal>", "</Bal>", "<Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp>", "<Dt><Dt>2026-01-01</Dt></Dt>",
    "<Acct>", "</Acct>", "<Ccy>EUR</Ccy>", "<NtryDtls>", "<TxDtls>", "</TxDtls>", "</NtryDtls>",
    "<RmtInf><Ustrd>x</Ustrd></RmtInf>", "\n", "&amp;",
]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(OFX_TOKENS), max_size=80))
def test_any_sequence_of_ofx_tags_gives_entries_or_a_file_problem(tokens):
    _consume(("OFXHEADER:100\nCHARSET:1252\n\n" + "".join(tokens)).encode("cp1252"), "ofx")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(CAMT_TOKENS), max_size=60))
def test_any_sequence_of_camt_elements_gives_entries_or_a_file_problem(tokens):
    body = "<Document><BkToCstmrStmt>" + "".join(tokens) + "</BkToCstmrStmt></Document>"
    _consume(body.encode(), "camt053")


def _mutations(data: bytes, rng: random.Random):
    tokens = [b"<", b">", b"</STMTTRN>", b"<STMTTRN>", b"<SECLIST>", b"&", b"&#xD800;", b"\x00",
              b"\xff\xfe", b"\xe9", b"<Ntry>", b"</Stmt>", b"<!DOCTYPE x>", b'"', b";", b"\r"]  # fmt: skip
    for _ in range(60):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(mutated) + 1)
            choice = rng.random()
            if choice < 0.3:
                del mutated[at : at + rng.randint(1, 40)]
            elif choice < 0.6:
                mutated[at:at] = rng.choice(tokens)
            elif choice < 0.8 and mutated:
                mutated[at % len(mutated)] = rng.randrange(256)
            else:
                mutated = mutated[:at]
        yield bytes(mutated)


@pytest.mark.parametrize(
    "name",
    [
        *OFX_FIXTURES,
        "camt053-v02.xml",
        "camt053-v08.xml",
        "debit-credit-1252.csv",
        "amount-preamble.csv",
    ],
)
def test_mutated_fixtures_give_entries_or_a_file_problem(name):
    data = (FIXTURES / name).read_bytes()
    format = detect_format(data[:4096], name)
    mappings = (
        (GERMAN, ANY_MAPPING) if name.startswith("debit") else (US, NAMED_MAPPING, ANY_MAPPING)
    )
    for mutated in _mutations(data, random.Random(f"issue 35 {name}")):
        if format == "csv":
            for mapping in mappings:
                _consume(mutated, format, mapping)
        else:
            _consume(mutated, format)


def test_a_column_position_past_the_header_is_a_file_problem():
    with pytest.raises(FileProblem, match="column 5 \\(mapped as amount\\) is past the header's 3"):
        read(
            b"Date,Memo,Amount\n2026-01-01,x,1\n",
            "csv",
            CsvMapping(date=0, description=1, amount=5),
        )


def test_ofx_with_missing_aggregate_ends_and_two_statements():
    data = (FIXTURES / "bank-1252.ofx").read_bytes()
    # Transactions whose </STMTTRN> is missing: the next <STMTTRN> or </BANKTRANLIST> ends them.
    unclosed = data.replace(b"</STMTTRN>\r\n", b"\r\n")
    assert read(unclosed, "ofx") == read(data, "ofx")
    # A second account's statement in the same file: its own account entry, then its rows.
    start, end = data.index(b"<STMTTRNRS>"), data.index(b"</STMTTRNRS>") + len(b"</STMTTRNRS>")
    second = (
        data[start:end]
        .replace(b"0012345678", b"0099998888")
        .replace(b"<FITID>2026", b"<FITID>9026")
    )
    entries = read(data[:end] + second + data[end:], "ofx")
    accounts = of(entries, FileAccount)
    assert [a.number_last4 for a in accounts] == ["5678", "8888"]
    assert len(of(entries, FileTransaction)) == 14
    assert len(of(entries, FileBalance)) == 2


@pytest.mark.parametrize(
    ("name", "mapping"),
    [("bank-1252.ofx", None), ("amount-preamble.csv", US), ("camt053-v02.xml", None)],
)
def test_the_callers_stream_stays_open(name, mapping):
    stream = io.BytesIO((FIXTURES / name).read_bytes())
    format = detect_format(stream.getvalue()[:4096], name)
    assert list(read_file(stream, format=format, mapping=mapping))
    assert not stream.closed


@pytest.mark.parametrize("encoding", ["UTF-9", "shift_jis", "hex", "idna", "undefined"])
def test_a_camt_file_in_an_encoding_expat_cannot_read_is_a_file_problem(encoding):
    data = (FIXTURES / "camt053-v08.xml").read_bytes().replace(b"UTF-8", encoding.encode())
    with pytest.raises(FileProblem, match="encoding cannot be read"):
        read(data, "camt053")


def test_currencies_are_iso_codes_or_errors_and_text_holds_no_nul():
    entries = csv_rows(
        "2026-01-02,a,1,eur\n2026-01-03,b,2,Euro\n2026-01-04,c\x00d,3,\n", currency_column=3
    )
    assert [e.data.currency for e in of(entries, FileTransaction)] == ["EUR", ""]
    assert of(entries, FileError) == [FileError(2, "column 3: 'Euro' is not a currency code")]
    assert of(entries, FileTransaction)[1].data.description == "cd"
    card = (FIXTURES / "card-v2.ofx").read_bytes()
    entries = read(
        card.replace(b"<CURSYM>USD", b"<CURSYM>US$").replace(
            b"Mollat</NAME>", b"Mol\x00lat</NAME>"
        ),
        "ofx",
    )
    assert of(entries, FileError) == [FileError(30, "CURSYM: 'US$' is not a currency code")]
    assert of(entries, FileTransaction)[0].data.description == "Librairie Mollat"
    with pytest.raises(FileProblem, match="CURDEF: 'EURO' is not a currency code"):
        read(card.replace(b"<CURDEF>EUR", b"<CURDEF>EURO"), "ofx")
    camt = (FIXTURES / "camt053-v08.xml").read_bytes().replace(b'"CHF">89.90', b'"chf1">89.90')
    assert of(read(camt, "camt053"), FileError) == [
        FileError(27, "Amt@Ccy: 'chf1' is not a currency code")
    ]


def test_an_unreadable_optional_ofx_date_is_left_out():
    data = (
        (FIXTURES / "bank-1252.ofx").read_bytes().replace(b"<DTUSER>20260202", b"<DTUSER>00000000")
    )
    first = of(read(data, "ofx"), FileTransaction)[0].data
    assert first.transacted_at == first.posted_at == utc(2026, 2, 3, 17)


def test_ofx_tags_with_a_space_before_their_end():
    # Seen in the wild (a bank's QFX opening with "<OFX >"), and "</STMTTRN >" alike.
    data = (FIXTURES / "savings.qfx").read_bytes()
    spaced = data.replace(b"<OFX>", b"<OFX >").replace(b"</STMTTRN>", b"</STMTTRN >")
    body = spaced[spaced.index(b"<OFX") :]
    assert detect_format(body[:200], None) == "ofx"
    assert read(spaced, "ofx") == read(data, "ofx")


def test_a_camt_052_account_report_reads_as_a_statement():
    # Some banks give only the intraday report: its Rpt holds what a Stmt does.
    statement = (FIXTURES / "camt053-v08.xml").read_bytes()
    report = (
        statement.replace(b"camt.053.001.08", b"camt.052.001.08")
        .replace(b"BkToCstmrStmt>", b"BkToCstmrAcctRpt>")
        .replace(b"<Stmt>", b"<Rpt>")
        .replace(b"</Stmt>", b"</Rpt>")
    )
    assert detect_format(report[:4096], None) == "camt053"
    assert read(report, "camt053") == read(statement, "camt053")


def test_an_endless_aggregate_is_a_file_problem_not_a_memory_hog():
    header = b"OFXHEADER:100\nCHARSET:1252\n\n<OFX><STMTRS><CURDEF>USD<STMTTRN>"
    body = b"".join(b"<X%d>%s" % (n, b"y" * 100) for n in range(20_000))
    with pytest.raises(FileProblem, match="<STMTTRN> runs past"):
        read(header + body, "ofx")
    entry = b"".join(b"<E%d>1</E%d>" % (n, n) for n in range(2_000))
    camt = (
        b"<Document><BkToCstmrStmt><Stmt><Ntry>"
        + entry
        + b"</Ntry></Stmt></BkToCstmrStmt></Document>"
    )
    with pytest.raises(FileProblem, match="<Ntry> holds too many elements"):
        read(camt, "camt053")


@pytest.mark.parametrize(
    "declared",
    ["CHARSET:8859-15X", "CHARSET:hex", "CHARSET:idna", "CHARSET:undefined", "CHARSET:NONE"],
)
def test_an_ofx_charset_python_cannot_use_falls_back_to_utf_8(declared):
    data = _ofx1("NONE", "USASCII", "Zoë".encode()).replace(b"CHARSET:NONE", declared.encode())
    assert of(read(data, "ofx"), FileTransaction)[0].data.description == "Zoë"
    charset = declared.removeprefix("CHARSET:").encode()
    xml = data.replace(
        b"OFXHEADER:100", b'<?xml version="1.0" encoding="%s"?>OFXHEADER:100' % charset
    )
    assert of(read(xml, "ofx"), FileTransaction)[0].data.description == "Zoë"


def test_dates_at_the_ends_of_the_calendar_are_errors_or_read_never_a_crash():
    (row,) = csv_rows("0001-01-01T00:00:00+05:00,a,1\n")
    assert row == FileError(1, "column 0: '0001-01-01T00:00:00+05:00' is not a date")
    data = (FIXTURES / "camt053-v08.xml").read_bytes()
    data = data.replace(b"2026-03-05T09:30:00+01:00", b"0001-01-01T00:30:00+01:00")
    data = data.replace(b"<Dt><Dt>2026-03-05</Dt></Dt>", b"<Dt><Dt>9999-12-31</Dt></Dt>")
    entries = read(data, "camt053")
    assert of(entries, FileError) == [FileError(27, "'0001-01-01T00:30:00+01:00' is not a date")]
    assert of(entries, FileBalance)[1].as_of == utc(9999, 12, 31)


@pytest.mark.parametrize("in_memory", [True, False])
def test_an_upload_as_starlette_keeps_it_reads_with_its_seclist(in_memory):
    # UploadFile.file is a SpooledTemporaryFile: in memory while small, on disk past its size.
    data = (FIXTURES / "investment.ofx").read_bytes()
    with tempfile.SpooledTemporaryFile(max_size=len(data) * 2 if in_memory else 100) as upload:
        upload.write(data)
        upload.seek(0)
        assert upload._rolled != in_memory  # which of the two it is
        entries = list(read_file(upload, format="ofx"))
    assert [e.data.symbol for e in of(entries, FileTransaction)] == ["VTI", "AAPL", "VTI", None]
