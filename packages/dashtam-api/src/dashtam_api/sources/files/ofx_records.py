"""OFX aggregates to entries: each aggregate arrives as a flat dict of the elements inside it
(tag -> raw text; an inner aggregate's tag maps to "" and says it was there). An element that
does not read raises Invalid, which the reader turns into a FileError on the aggregate's line."""

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from dashtam_api.sources.files.entries import (
    Entry,
    FileAccount,
    FileBalance,
    FilePosition,
    FileSkipped,
    FileTransaction,
    currency_code,
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


class Invalid(ValueError):
    """One element does not read (its tag and text in the message)."""


def required(record: dict, tag: str, parse, what: str):
    raw = record.get(tag)
    value = parse(raw)
    if value is None:
        raise Invalid(f"{tag}: missing" if raw is None else f"{tag}: {raw.strip()!r} is not {what}")
    return value


def optional(record: dict, tag: str, parse, what: str):
    raw = record.get(tag)
    return None if raw is None or not raw.strip() else required(record, tag, parse, what)


# The dates a row can do without (DTUSER, DTSETTLE, DTPRICEASOF) are read with moment() alone:
# some banks write 00000000 for "unknown", which must not fail the row.


def _currency(record: dict, statement: Statement) -> str:
    # CURRENCY: the amounts are in that currency; ORIGCURRENCY: converted into CURDEF already.
    if "CURRENCY" in record and text(record, "CURSYM"):
        return required(record, "CURSYM", currency_code, "a currency code")
    return statement.curdef


def bank_transaction(record: dict, line: int, statement: Statement) -> Entry:
    if "CORRECTACTION" in record:
        action, corrects = text(record, "CORRECTACTION"), text(record, "CORRECTFITID")
        return FileSkipped(line, f"a correction ({action}) of FITID {corrects!r}: not applied")
    value = required(record, "TRNAMT", amount, "an amount")
    posted = required(record, "DTPOSTED", moment, "a date")
    user = moment(record.get("DTUSER"))
    trntype = text(record, "TRNTYPE").upper()
    kinds = CARD_KINDS if statement.kind == "card" else BANK_KINDS
    name, memo = text(record, "NAME"), text(record, "MEMO")
    check = "" if name or memo else text(record, "CHECKNUM")
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


def investment_transaction(
    tag: str, record: dict, line: int, statement: Statement, security: Security | None
) -> Entry:
    trade = required(record, "DTTRADE", moment, "a date")
    settle = moment(record.get("DTSETTLE"))
    total = Decimal(0) if tag in NO_TOTAL else required(record, "TOTAL", amount, "an amount")
    units = optional(record, "UNITS", amount, "a number")
    price = optional(record, "UNITPRICE", amount, "a number")
    charged = [optional(record, t, amount, "an amount") for t in ("COMMISSION", "FEES", "TAXES")]
    charged = [c for c in charged if c is not None]
    buying, selling = tag.startswith("BUY"), tag.startswith("SELL")
    if units is not None and (buying or selling):
        units = -abs(units) if selling else abs(units)
    if buying or selling:
        kind = "trade"
    elif tag == "INCOME":
        kind = INCOME_KINDS.get(text(record, "INCOMETYPE").upper(), "other")
    else:
        kind = INVESTMENT_KINDS.get(tag, "other")
    symbol = (security.ticker if security else None) or text(record, "UNIQUEID") or None
    verb = "Buy" if buying else "Sell" if selling else tag.title()
    asset = next((a for suffix, a in ASSET_TYPES.items() if tag.endswith(suffix)), None)
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
            price=price,
            fees=sum(charged, Decimal(0)) if charged else None,
        ),
    )


def position(
    tag: str, record: dict, line: int, statement: Statement, security: Security | None
) -> Entry:
    price = optional(record, "UNITPRICE", amount, "a number")
    units = required(record, "UNITS", amount, "a number")
    value = required(record, "MKTVAL", amount, "an amount")
    as_of = moment(record.get("DTPRICEASOF"))
    currency = _currency(record, statement)
    if text(record, "POSTYPE").upper() == "SHORT":
        units = -abs(units)
    statement.positions_value += value
    return FilePosition(
        line,
        Holding(
            symbol=(security.ticker if security else None) or text(record, "UNIQUEID"),
            asset_type=ASSET_TYPES.get(tag.removeprefix("POS"), "other"),
            quantity=units,
            market_value=value,
            description=(security.name if security else None) or text(record, "MEMO") or None,
            price=price,
        ),
        as_of or statement.as_of,
        currency,
    )


def security(tag: str, record: dict) -> tuple[str, Security]:
    return text(record, "UNIQUEID"), Security(
        ticker=text(record, "TICKER") or None,
        name=text(record, "SECNAME") or None,
        asset_type=ASSET_TYPES.get(tag.removesuffix("INFO"), "other"),
    )


def investment_balance(record: dict, line: int, statement: Statement) -> Entry:
    cash = required(record, "AVAILCASH", amount, "an amount")
    power = optional(record, "BUYPOWER", amount, "an amount")
    if statement.as_of is None:
        raise Invalid("INVSTMTRS has no DTASOF: the balance's date is unknown")
    return FileBalance(
        line,
        as_of=statement.as_of,
        current=cash + statement.positions_value,
        available=None,
        currency=statement.curdef,
        cash=cash,
        buying_power=power,
    )


def bank_balance(statement: Statement) -> Entry:
    """The statement's LEDGERBAL, with AVAILBAL as available (on LEDGERBAL's line)."""
    line, ledger = statement.ledger
    available = statement.available
    return FileBalance(
        line,
        as_of=required(ledger, "DTASOF", moment, "a date"),
        current=required(ledger, "BALAMT", amount, "an amount"),
        available=required(available, "BALAMT", amount, "an amount") if available else None,
        currency=statement.curdef,
    )


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
