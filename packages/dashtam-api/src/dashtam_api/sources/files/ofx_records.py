"""OFX aggregates to entries: each aggregate arrives as a flat dict of the elements inside it
(tag -> raw text; an inner aggregate's tag maps to "" and says it was there)."""

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from dashtam_api.sources.files.entries import (
    Entry,
    FileAccount,
    FileBalance,
    FileError,
    FilePosition,
    FileSkipped,
    FileTransaction,
)
from dashtam_api.sources.shapes import Holding, TransactionData, last4

BANK_KINDS = {
    "CREDIT": "deposit",
    "DEP": "deposit",
    "DIRECTDEP": "deposit",
    "DEBIT": "withdrawal",
    "CHECK": "withdrawal",
    "PAYMENT": "withdrawal",
    "ATM": "withdrawal",
    "CASH": "withdrawal",
    "DIRECTDEBIT": "withdrawal",
    "REPEATPMT": "withdrawal",
    "POS": "card",
    "INT": "interest",
    "DIV": "dividend",
    "FEE": "fee",
    "SRVCHG": "fee",
    "XFER": "transfer",
}
# On a card's statement a debit is a purchase, a payment is the card being paid off.
CARD_KINDS = {**BANK_KINDS, "DEBIT": "card", "PAYMENT": "transfer", "CREDIT": "deposit"}
INCOME_KINDS = {
    "DIV": "dividend",
    "CGLONG": "dividend",
    "CGSHORT": "dividend",
    "INTEREST": "interest",
}
INVESTMENT_KINDS = {
    "INVEXPENSE": "fee",
    "MARGININTEREST": "interest",
    "JRNLFUND": "transfer",
    "JRNLSEC": "transfer",
    "TRANSFER": "transfer",
    "RETOFCAP": "other",
    "SPLIT": "other",
    "REINVEST": "trade",
    "CLOSUREOPT": "trade",
}
# What moves securities without cash: no TOTAL, an amount of 0.
NO_TOTAL = {"SPLIT", "TRANSFER", "JRNLSEC"}
ASSET_TYPES = {
    "STOCK": "equity",
    "MF": "mutual_fund",
    "DEBT": "fixed_income",
    "OPT": "option",
    "OTHER": "other",
}
ACCOUNT_TYPES = {"MONEYMRKT": "money_market", "CREDITLINE": "credit_line"}

_DATETIME = re.compile(
    r"(\d{4})(\d\d)(\d\d)(?:(\d\d)(\d\d)(?:(\d\d)(?:[.,](\d{1,6}))?)?)?"
    r"\s*(?:\[\s*([+-]?\d{1,2}(?:\.\d+)?)?\s*(?::[^\]]*)?\])?"
)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)")


@dataclass
class Security:
    ticker: str | None
    name: str | None
    asset_type: str


@dataclass
class Statement:
    kind: str  # bank | card | invest
    line: int
    curdef: str = ""
    as_of: datetime | None = None  # an investment statement's DTASOF
    positions_value: Decimal = Decimal(0)
    ledger: tuple[int, dict] | None = None
    available: dict | None = None


def text(record: dict, tag: str) -> str:
    value = record.get(tag)
    if not value:
        return ""
    value = value.strip()
    return html.unescape(value) if "&" in value else value


def amount(raw: str | None) -> Decimal | None:
    if raw is None:
        return None
    raw = raw.strip()
    if _NUMBER.fullmatch(raw) is None:
        return None
    return Decimal(raw.replace(",", "."))


# Each distinct text parsed once (a statement's dates repeat); bounded, shared, never wrong.
_moments: dict[str, datetime | None] = {}
_MISSING = object()


def moment(raw: str | None) -> datetime | None:
    """An OFX datetime (YYYYMMDD[HHMMSS[.XXX]][[offset[:TZ]]]) as UTC; GMT without an offset."""
    if raw is None:
        return None
    raw = raw.strip()
    cached = _moments.get(raw, _MISSING)
    if cached is not _MISSING:
        return cached
    match = _DATETIME.fullmatch(raw)
    parsed = None
    if match:
        y, mo, d, h, mi, s, frac, offset = match.groups()
        try:
            parsed = datetime(
                int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0),
                int((frac or "0").ljust(6, "0")), tzinfo=UTC,
            ) - timedelta(hours=float(offset or 0))  # fmt: skip
        except (ValueError, OverflowError):
            parsed = None
    if len(_moments) > 10_000:
        _moments.clear()
    _moments[raw] = parsed
    return parsed


def _required(record: dict, line: int, tag: str, parse, what: str):
    """(value, None) or (None, the FileError naming the element and its text)."""
    value = parse(record.get(tag))
    if value is None:
        raw = record.get(tag)
        shown = "missing" if raw is None else f"{raw.strip()!r} is not {what}"
        return None, FileError(line, f"{tag}: {shown}")
    return value, None


def _optional(record: dict, line: int, tag: str, parse, what: str):
    if record.get(tag) is None or not record[tag].strip():
        return None, None
    return _required(record, line, tag, parse, what)


def _currency(record: dict, statement: Statement) -> str:
    # CURRENCY: the amounts are in that currency; ORIGCURRENCY: converted into CURDEF already.
    if "CURRENCY" in record and text(record, "CURSYM"):
        return text(record, "CURSYM").upper()
    return statement.curdef


def bank_transaction(record: dict, line: int, statement: Statement) -> Entry:
    action = text(record, "CORRECTACTION")
    if action:
        corrects = text(record, "CORRECTFITID")
        return FileSkipped(line, f"a correction ({action}) of FITID {corrects!r}: not applied")
    value, error = _required(record, line, "TRNAMT", amount, "an amount")
    posted, error = (
        (None, error) if error else _required(record, line, "DTPOSTED", moment, "a date")
    )
    user, error = (None, error) if error else _optional(record, line, "DTUSER", moment, "a date")
    if error:
        return error
    trntype = text(record, "TRNTYPE").upper()
    kinds = CARD_KINDS if statement.kind == "card" else BANK_KINDS
    name, memo, check = text(record, "NAME"), text(record, "MEMO"), text(record, "CHECKNUM")
    return FileTransaction(
        line,
        TransactionData(
            external_id=text(record, "FITID"),
            status="posted",
            amount=value,
            description=name or memo or (f"Check {check}" if check else trntype.title()),
            kind=kinds.get(trntype, "other"),
            transacted_at=user or posted,
            posted_at=posted,
            currency=_currency(record, statement),
            payee=name if "PAYEE" in record and name else None,
            memo=memo if name and memo else None,
            institution_type=trntype or None,
        ),
    )


def _decimals(record: dict, line: int, tags: tuple[str, ...]):
    values = {}
    for tag in tags:
        values[tag], error = _optional(record, line, tag, amount, "a number")
        if error:
            return None, error
    return values, None


def investment_transaction(
    tag: str, record: dict, line: int, statement: Statement, security: Security | None
) -> Entry:
    trade, error = _required(record, line, "DTTRADE", moment, "a date")
    settle, error = (
        (None, error) if error else _optional(record, line, "DTSETTLE", moment, "a date")
    )
    if tag in NO_TOTAL:
        total = Decimal(0)
    elif not error:
        total, error = _required(record, line, "TOTAL", amount, "an amount")
    numbers, error = (
        (None, error)
        if error
        else _decimals(record, line, ("UNITS", "UNITPRICE", "COMMISSION", "FEES", "TAXES"))
    )
    if error:
        return error
    uniqueid = text(record, "UNIQUEID")
    symbol = (security.ticker if security else None) or uniqueid or None
    units = numbers["UNITS"]
    if units is not None and tag.startswith(("BUY", "SELL")):
        units = -abs(units) if tag.startswith("SELL") else abs(units)
    kind = (
        "trade"
        if tag.startswith(("BUY", "SELL"))
        else INCOME_KINDS.get(text(record, "INCOMETYPE").upper(), "other")
        if tag == "INCOME"
        else INVESTMENT_KINDS.get(tag, "other")
    )
    charged = [numbers[t] for t in ("COMMISSION", "FEES", "TAXES") if numbers[t] is not None]
    verb = "Buy" if tag.startswith("BUY") else "Sell" if tag.startswith("SELL") else tag.title()
    asset = next((a for s, a in ASSET_TYPES.items() if tag.endswith(s)), None)
    return FileTransaction(
        line,
        TransactionData(
            external_id=text(record, "FITID"),
            status="posted",
            amount=total,
            description=text(record, "MEMO") or " ".join(filter(None, (verb, symbol))),
            kind=kind,
            transacted_at=trade,
            posted_at=trade,
            settlement_date=settle.date() if settle else None,
            currency=_currency(record, statement),
            institution_type=tag,
            symbol=symbol,
            asset_type=asset or (security.asset_type if security else None),
            quantity=units,
            price=numbers["UNITPRICE"],
            fees=sum(charged, Decimal(0)) if charged else None,
        ),
    )


def position(
    tag: str, record: dict, line: int, statement: Statement, security: Security | None
) -> Entry:
    numbers, error = _decimals(record, line, ("UNITPRICE",))
    units, error = (None, error) if error else _required(record, line, "UNITS", amount, "a number")
    value, error = (
        (None, error) if error else _required(record, line, "MKTVAL", amount, "an amount")
    )
    as_of, error = (
        (None, error) if error else _optional(record, line, "DTPRICEASOF", moment, "a date")
    )
    if error:
        return error
    if text(record, "POSTYPE").upper() == "SHORT":
        units = -abs(units)
    statement.positions_value += value
    uniqueid = text(record, "UNIQUEID")
    return FilePosition(
        line,
        Holding(
            symbol=(security.ticker if security else None) or uniqueid,
            asset_type=ASSET_TYPES.get(tag.removeprefix("POS"), "other"),
            quantity=units,
            market_value=value,
            description=(security.name if security else None) or text(record, "MEMO") or None,
            price=numbers["UNITPRICE"],
        ),
        as_of or statement.as_of,
        _currency(record, statement),
    )


def security(tag: str, record: dict) -> tuple[str, Security]:
    return text(record, "UNIQUEID"), Security(
        ticker=text(record, "TICKER") or None,
        name=text(record, "SECNAME") or None,
        asset_type=ASSET_TYPES.get(tag.removesuffix("INFO"), "other"),
    )


def investment_balance(record: dict, line: int, statement: Statement) -> Entry:
    cash, error = _required(record, line, "AVAILCASH", amount, "an amount")
    power, error = (
        (None, error) if error else _optional(record, line, "BUYPOWER", amount, "an amount")
    )
    if error:
        return error
    if statement.as_of is None:
        return FileError(line, "INVSTMTRS has no DTASOF: the balance's date is unknown")
    return FileBalance(
        line,
        as_of=statement.as_of,
        current=cash + statement.positions_value,
        available=None,
        currency=statement.curdef,
        cash=cash,
        buying_power=power,
    )


def bank_balance(statement: Statement) -> Entry | None:
    if statement.ledger is None:
        return None
    line, ledger = statement.ledger
    current, error = _required(ledger, line, "BALAMT", amount, "an amount")
    as_of, error = (None, error) if error else _required(ledger, line, "DTASOF", moment, "a date")
    available = statement.available
    if not error and available is not None:
        available, error = _required(available, line, "BALAMT", amount, "an amount")
    if error:
        return error
    return FileBalance(line, as_of, current, available, statement.curdef)


def account(tag: str, record: dict, line: int, statement: Statement | None) -> Entry:
    if tag == "CCACCTFROM":
        kind = "credit_card"
    elif tag == "INVACCTFROM":
        kind = "brokerage"
    else:
        raw = text(record, "ACCTTYPE").upper()
        kind = ACCOUNT_TYPES.get(raw, raw.lower()) or None
    return FileAccount(
        line,
        currency=(statement.curdef if statement else "") or None,
        number_last4=last4(text(record, "ACCTID")),
        account_type=kind,
    )
