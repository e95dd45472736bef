"""An account's transactions as a file other software imports: CSV, or OFX 2.2 (a bank
statement for a cash account, an investment statement with positions and trades for a brokerage
account). Streamed from a server-side cursor in batches, so a million rows take the memory of
one batch (bench/export.py measures it).

CSV columns (one row per transaction, oldest first, every status; dates ISO 8601 in UTC, money
and quantities decimal strings exactly as stored):
``id, occurred_at, posted_at, status, amount, currency, description, payee, memo, kind,
institution_type, symbol, asset_type, quantity, price, fees``.

OFX: posted transactions only (an OFX statement lists what has posted), each with Dashtam's id
as its FITID (stable across exports, so importers skip what they have), and the account's
newest balance; for a brokerage account, its positions and the securities they name.
"""

import csv
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from xml.sax.saxutils import escape

from dashtam_api.days import day_end, day_start
from dashtam_api.errors import NotFound
from dashtam_api.exports import queries
from dashtam_core.database import Reader

CSV_COLUMNS = (
    "id",
    "occurred_at",
    "posted_at",
    "status",
    "amount",
    "currency",
    "description",
    "payee",
    "memo",
    "kind",
    "institution_type",
    "symbol",
    "asset_type",
    "quantity",
    "price",
    "fees",
)
BATCH = 2000
# Account types (as institutions name them) that hold securities: an investment statement.
INVESTMENT_TYPES = {"brokerage", "margin", "cash", "ira", "roth", "investment", "401k"}


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @classmethod
    def of(cls, from_: date | None, to: date | None) -> "Window":
        """``from`` and ``to`` are days, both included; without them, everything; ``to``
        before ``from``, nothing."""
        start = day_start(from_) if from_ else datetime(1970, 1, 1, tzinfo=UTC)
        end = day_end(to) if to else datetime(9999, 1, 1, tzinfo=UTC)
        return cls(start, max(start, end))


@dataclass(frozen=True)
class ExportAccount:
    id: uuid.UUID
    name: str
    account_type: str
    currency: str
    number_last4: str | None
    provider_key: str
    balance: Decimal | None
    available: Decimal | None
    cash: Decimal | None
    balance_as_of: datetime | None
    has_positions: bool

    @property
    def investment(self) -> bool:
        return self.has_positions or self.account_type.lower() in INVESTMENT_TYPES


async def account(reader: Reader, user_id: uuid.UUID, account_id: uuid.UUID) -> ExportAccount:
    """The person's account (404 for anyone else's), checked before the first byte is sent."""
    row = await queries.account_row(reader, user_id=user_id, account_id=account_id)
    if row["id"] is None:
        raise NotFound("No such account.")
    return ExportAccount(
        id=row["id"],
        name=row["name"],
        account_type=row["account_type"],
        currency=row["currency"],
        number_last4=row["number_last4"],
        provider_key=row["provider_key"],
        balance=row["current"],
        available=row["available"],
        cash=row["cash"],
        balance_as_of=row["as_of"],
        has_positions=row["positions"] > 0,
    )


def _rows(reader: Reader, user_id, account_id, window: Window, *, posted_only: bool):
    return queries.transaction_batches(
        reader,
        user_id=user_id,
        account_id=account_id,
        start=window.start,
        end=window.end,
        posted_only=posted_only,
        batch=BATCH,
    )


def _iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else ""


async def csv_export(
    reader: Reader, user_id: uuid.UUID, export: ExportAccount, window: Window
) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180
    writer.writerow(CSV_COLUMNS)
    async for rows in _rows(reader, user_id, export.id, window, posted_only=False):
        for r in rows:
            writer.writerow(
                (
                    r["id"],
                    _iso(r["occurred_at"]),
                    _iso(r["posted_at"]),
                    r["status"],
                    r["amount"],
                    r["currency"],
                    r["description"],
                    r["payee"] or "",
                    r["memo"] or "",
                    r["kind"],
                    r["institution_type"] or "",
                    r["symbol"] or "",
                    r["asset_type"] or "",
                    r["quantity"] or "",
                    r["price"] or "",
                    r["fees"] or "",
                )
            )
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


# --- OFX 2.2 ----------------------------------------------------------------------------------


def _dt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S.000[0:UTC]")


def _text(value: str | None, limit: int) -> str:
    return escape((value or "").strip()[:limit])


def _el(tag: str, value: str) -> str:
    return f"<{tag}>{value}</{tag}>"


def _header(now: datetime) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        '<?OFX OFXHEADER="200" VERSION="220" SECURITY="NONE" OLDFILEUID="NONE" '
        'NEWFILEUID="NONE"?>\n<OFX>'
        "<SIGNONMSGSRSV1><SONRS><STATUS><CODE>0</CODE><SEVERITY>INFO</SEVERITY></STATUS>"
        f"{_el('DTSERVER', _dt(now))}<LANGUAGE>ENG</LANGUAGE></SONRS></SIGNONMSGSRSV1>"
    )


def _status() -> str:
    return "<STATUS><CODE>0</CODE><SEVERITY>INFO</SEVERITY></STATUS>"


def _acctid(export: ExportAccount) -> str:
    # OFX wants the account number (up to 22 characters); Dashtam never keeps it whole.
    return export.id.hex[:22].upper()


def _bank_transaction(r) -> str:
    amount = Decimal(r["amount"])
    kind = {
        "deposit": "DEP",
        "withdrawal": "DEBIT",
        "interest": "INT",
        "dividend": "DIV",
        "fee": "FEE",
        "transfer": "XFER",
        "card": "POS",
    }.get(r["kind"], "CREDIT" if amount >= 0 else "DEBIT")
    name = r["payee"] or r["description"]
    memo = r["memo"] or (r["description"] if r["payee"] else "")
    return (
        "<STMTTRN>"
        f"{_el('TRNTYPE', kind)}{_el('DTPOSTED', _dt(r['posted_at'] or r['occurred_at']))}"
        f"{_el('DTUSER', _dt(r['occurred_at']))}{_el('TRNAMT', r['amount'])}"
        f"{_el('FITID', str(r['id']))}{_el('NAME', _text(name, 32) or 'Unknown')}"
        + (_el("MEMO", _text(memo, 255)) if memo else "")
        + "</STMTTRN>"
    )


def _secid(symbol: str) -> str:
    # Institutions give tickers, not CUSIPs: the ticker is the id, and says so.
    return f"<SECID>{_el('UNIQUEID', _text(symbol, 32))}<UNIQUEIDTYPE>TICKER</UNIQUEIDTYPE></SECID>"


def _investment_transaction(r) -> str:
    """A trade is a BUYSTOCK/SELLSTOCK, a dividend or interest with a symbol an INCOME, every
    other movement of cash an INVBANKTRAN."""
    fitid, when = _el("FITID", str(r["id"])), _dt(r["occurred_at"])
    invtran = f"<INVTRAN>{fitid}{_el('DTTRADE', when)}" + (
        f"{_el('MEMO', _text(r['description'], 255))}</INVTRAN>"
        if r["description"]
        else "</INVTRAN>"
    )
    amount = Decimal(r["amount"])
    if r["kind"] == "trade" and r["symbol"] and r["quantity"]:
        units = Decimal(r["quantity"])
        buying = units > 0
        price = r["price"] or format(abs(amount) / abs(units), "f")
        fees = r["fees"] or "0"
        body = (
            f"{invtran}{_secid(r['symbol'])}{_el('UNITS', format(units, 'f'))}"
            f"{_el('UNITPRICE', price)}{_el('FEES', fees)}{_el('TOTAL', r['amount'])}"
            "<SUBACCTSEC>CASH</SUBACCTSEC><SUBACCTFUND>CASH</SUBACCTFUND>"
        )
        if buying:
            return f"<BUYSTOCK><INVBUY>{body}</INVBUY><BUYTYPE>BUY</BUYTYPE></BUYSTOCK>"
        return f"<SELLSTOCK><INVSELL>{body}</INVSELL><SELLTYPE>SELL</SELLTYPE></SELLSTOCK>"
    if r["kind"] in ("dividend", "interest") and r["symbol"]:
        income = "DIV" if r["kind"] == "dividend" else "INTEREST"
        return (
            f"<INCOME>{invtran}{_secid(r['symbol'])}{_el('INCOMETYPE', income)}"
            f"{_el('TOTAL', r['amount'])}<SUBACCTSEC>CASH</SUBACCTSEC>"
            "<SUBACCTFUND>CASH</SUBACCTFUND></INCOME>"
        )
    return f"<INVBANKTRAN>{_bank_transaction(r)}<SUBACCTFUND>CASH</SUBACCTFUND></INVBANKTRAN>"


async def ofx_export(
    reader: Reader, user_id: uuid.UUID, export: ExportAccount, window: Window
) -> AsyncIterator[bytes]:
    now = datetime.now(UTC)
    start = max(window.start, datetime(1970, 1, 2, tzinfo=UTC))
    end = max(min(window.end, now), start)  # a window in the future: an empty statement
    yield _header(now).encode()
    currency = _el("CURDEF", export.currency)
    if export.investment:
        yield (
            "<INVSTMTMSGSRSV1><INVSTMTTRNRS><TRNUID>0</TRNUID>"
            f"{_status()}<INVSTMTRS>{_el('DTASOF', _dt(export.balance_as_of or now))}{currency}"
            f"<INVACCTFROM>{_el('BROKERID', _text(export.provider_key, 22))}"
            f"{_el('ACCTID', _acctid(export))}</INVACCTFROM>"
            f"<INVTRANLIST>{_el('DTSTART', _dt(start))}{_el('DTEND', _dt(end))}"
        ).encode()
        async for rows in _rows(reader, user_id, export.id, window, posted_only=True):
            yield "".join(_investment_transaction(r) for r in rows).encode()
        positions = await queries.position_rows(reader, account_id=export.id)
        listed = "".join(
            "<POSSTOCK><INVPOS>"
            f"{_secid(p['symbol'])}<HELDINACCT>CASH</HELDINACCT>"
            f"<POSTYPE>{'LONG' if Decimal(p['quantity']) >= 0 else 'SHORT'}</POSTYPE>"
            f"{_el('UNITS', p['quantity'])}"
            f"{_el('UNITPRICE', p['price'] or _unit_price(p))}{_el('MKTVAL', p['market_value'])}"
            f"{_el('DTPRICEASOF', _dt(p['as_of']))}</INVPOS></POSSTOCK>"
            for p in positions
        )
        cash = export.cash if export.cash is not None else export.available
        yield (
            "</INVTRANLIST>"
            + (f"<INVPOSLIST>{listed}</INVPOSLIST>" if positions else "")
            + f"<INVBAL>{_el('AVAILCASH', format(cash or Decimal(0), 'f'))}"
            "<MARGINBALANCE>0</MARGINBALANCE><SHORTBALANCE>0</SHORTBALANCE></INVBAL>"
            "</INVSTMTRS></INVSTMTTRNRS></INVSTMTMSGSRSV1>"
        ).encode()
        if positions:
            securities = "".join(
                f"<STOCKINFO><SECINFO>{_secid(p['symbol'])}"
                f"{_el('SECNAME', _text(p['description'] or p['symbol'], 120))}"
                f"{_el('TICKER', _text(p['symbol'], 32))}</SECINFO></STOCKINFO>"
                for p in positions
            )
            yield f"<SECLISTMSGSRSV1><SECLIST>{securities}</SECLIST></SECLISTMSGSRSV1>".encode()
    else:
        kind = "SAVINGS" if "saving" in export.account_type.lower() else "CHECKING"
        yield (
            "<BANKMSGSRSV1><STMTTRNRS><TRNUID>0</TRNUID>"
            f"{_status()}<STMTRS>{currency}"
            # No routing number is known to Dashtam: the institution's key stands in.
            f"<BANKACCTFROM>{_el('BANKID', _text(export.provider_key, 9))}"
            f"{_el('ACCTID', _acctid(export))}{_el('ACCTTYPE', kind)}</BANKACCTFROM>"
            f"<BANKTRANLIST>{_el('DTSTART', _dt(start))}{_el('DTEND', _dt(end))}"
        ).encode()
        async for rows in _rows(reader, user_id, export.id, window, posted_only=True):
            yield "".join(_bank_transaction(r) for r in rows).encode()
        balance = export.balance if export.balance is not None else Decimal(0)
        yield (
            "</BANKTRANLIST>"
            f"<LEDGERBAL>{_el('BALAMT', format(balance, 'f'))}"
            f"{_el('DTASOF', _dt(export.balance_as_of or now))}</LEDGERBAL>"
            + (
                f"<AVAILBAL>{_el('BALAMT', format(export.available, 'f'))}"
                f"{_el('DTASOF', _dt(export.balance_as_of or now))}</AVAILBAL>"
                if export.available is not None
                else ""
            )
            + "</STMTRS></STMTTRNRS></BANKMSGSRSV1>"
        ).encode()
    yield b"</OFX>\n"


def _unit_price(p) -> str:
    quantity = Decimal(p["quantity"])
    return format(Decimal(p["market_value"]) / quantity, "f") if quantity else "0"
