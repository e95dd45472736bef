"""CAMT.053 (ISO 20022 BkToCstmrStmt, bank-to-customer statement), .001.02 to .001.08 at least,
and CAMT.052 (BkToCstmrAcctRpt, the intraday account report some banks give instead: its
``Rpt`` holds the same ``Acct``, ``Bal`` and ``Ntry`` as a ``Stmt``): elements are matched by their local names, whatever the namespace's version, and where versions
differ both forms are read (``<Sts>BOOK</Sts>`` and ``<Sts><Cd>BOOK</Cd></Sts>``; a party's
``<Nm>`` directly or inside ``<Pty>``).

Read with expat (the parser ElementTree itself runs on) fed 64 KiB at a time: it reports each
element's line, which ElementTree's iterparse does not. Only the element being gathered (an
``Ntry``, a ``Bal``, an ``Acct``) is held, as a flat dict of paths to text, so memory holds one
entry whatever the file's size. A document type declaration is refused: a statement never has
one, and without it no entity can be declared (no expansion bombs, no external entities).

- Each ``Stmt``'s ``Acct``: a FileAccount (IBAN or other id, last 4 characters kept; Ccy).
- ``Bal`` CLBD (closing booked) and ITBD (interim booked): a FileBalance as of the end of its day,
  with CLAV / ITAV of the same day as its available balance; DBIT balances are negative.
- ``Ntry``: one transaction per entry, for the entry's amount: a batch entry (several
  ``TxDtls``) is one booking on the account, and its details' amounts need not add up to it in
  every bank's files (fees netted, details cut short). Its description is the batch's
  ``AddtlNtryInf`` (or "Batch of N transactions"); a single detail gives its remittance text,
  counterparty (payee) and references. ``Sts`` BOOK: posted, PDNG (and FUTR): pending, INFO:
  skipped. Amount signed by ``CdtDbtInd`` (DBIT negative), currency from ``Amt@Ccy``. Id:
  ``AcctSvcrRef``, else ``NtryRef``, else the single detail's ``EndToEndId`` (unless
  NOTPROVIDED), else its ``TxId``, else "".
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import BinaryIO
from xml.parsers import expat

from dashtam_api.sources.files import text as texts
from dashtam_api.sources.files.entries import (
    Entry,
    FileAccount,
    FileBalance,
    FileError,
    FileProblem,
    FileSkipped,
    FileTransaction,
    currency_code,
)
from dashtam_api.sources.shapes import TransactionData, last4

DEEPEST = 64
LONGEST_TEXT = 2000
# An entry's distinct element paths: a few dozen in any bank's files.
MOST_PATHS = 1000
GATHERED = {"Ntry", "Bal", "Acct"}
# Each document's root and the statement inside it.
ROOTS = {"BkToCstmrStmt": "Stmt", "BkToCstmrAcctRpt": "Rpt"}
STATEMENTS = set(ROOTS.values())
STATUSES = {"BOOK": "posted", "PDNG": "pending", "FUTR": "pending"}
ACCOUNT_TYPES = {"CACC": "checking", "SVGS": "savings", "CARD": "credit_card", "LOAN": "loan"}
FEES = {"CHRG", "COMM", "FEES", "SUBS"}


def looks_like(head: str) -> bool:
    return any(
        mark in head for mark in ("BkToCstmrStmt", "BkToCstmrAcctRpt", "camt.053", "camt.052")
    )


def _amount(raw: str | None) -> Decimal | None:
    if not raw:
        return None
    digits = raw.replace(".", "", 1)
    if not digits.isdigit() or not digits.isascii():
        return None
    return Decimal(raw)


def _moment(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), datetime.min.time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved out of range
        return None


def _when(values: dict, prefix: str) -> tuple[datetime | None, str | None]:
    """A date-or-time choice (``Dt`` or ``DtTm``): the instant, or the text that is not one."""
    raw = values.get(f"{prefix}/Dt") or values.get(f"{prefix}/DtTm")
    parsed = _moment(raw)
    return parsed, (raw if raw and parsed is None else None)


def _first(values: dict, *paths: str) -> str:
    return next((values[p] for p in paths if values.get(p)), "")


def _kind(domain: str, family: str, sub: str, credit: bool) -> str:
    if sub in FEES:
        return "fee"
    if sub == "INTR" or family == "INTR":
        return "interest"
    if sub == "DVDE":
        return "dividend"
    if family in ("CCRD", "POSD", "POSC") or sub in ("POSD", "POSC"):
        return "card"
    if domain == "SECU":
        return "trade"
    return "deposit" if credit else "withdrawal"


def entry(values: dict, line: int) -> Entry:
    status = (values.get("Sts/Cd") or values.get("Sts") or "").upper()
    if status == "INFO":
        return FileSkipped(line, "an informational entry (Sts INFO), not a booking")
    if status not in STATUSES:
        return FileError(line, f"Sts: {status!r} is not BOOK, PDNG or INFO")
    amount = _amount(values.get("Amt"))
    if amount is None:
        return FileError(line, f"Amt: {values.get('Amt')!r} is not an amount")
    indicator = values.get("CdtDbtInd", "")
    if indicator not in ("CRDT", "DBIT"):
        return FileError(line, f"CdtDbtInd: {indicator!r} is not CRDT or DBIT")
    credit = indicator == "CRDT"
    currency = currency_code(values.get("Amt@Ccy", ""))
    if currency is None:
        return FileError(line, f"Amt@Ccy: {values['Amt@Ccy']!r} is not a currency code")
    booked, bad = _when(values, "BookgDt")
    valued, bad = (None, bad) if bad else _when(values, "ValDt")
    if bad:
        return FileError(line, f"{bad!r} is not a date")
    if booked is None and valued is None:
        return FileError(line, "neither BookgDt nor ValDt: the entry has no date")
    details = values["#details"]
    single = details == 1
    detail = "NtryDtls/TxDtls/"
    at = (
        _moment(_first(values, detail + "RltdDts/TxDtTm", detail + "RltdDts/AccptncDtTm"))
        if single
        else None
    )
    domain = values.get("BkTxCd/Domn/Cd", "")
    family = values.get("BkTxCd/Domn/Fmly/Cd", "")
    sub = values.get("BkTxCd/Domn/Fmly/SubFmlyCd", "")
    code = "/".join(filter(None, (domain, family, sub))) or values.get("BkTxCd/Prtry/Cd") or None
    party = "Dbtr" if credit else "Cdtr"
    payee = (
        _first(
            values,
            f"{detail}RltdPties/{party}/Nm",
            f"{detail}RltdPties/{party}/Pty/Nm",
            f"{detail}RltdPties/Ultmt{party}/Nm",
            f"{detail}RltdPties/Ultmt{party}/Pty/Nm",
        )
        if single
        else ""
    )
    remittance = values.get(detail + "RmtInf/Ustrd", "") if single else ""
    note = values.get("AddtlNtryInf", "")
    end_to_end = values.get(detail + "Refs/EndToEndId", "") if single else ""
    if details > 1:
        description = note or f"Batch of {details} transactions"
    else:
        description = remittance or note or payee or code or ""
    return FileTransaction(
        line,
        TransactionData(
            external_id=_first(values, "AcctSvcrRef", "NtryRef")
            or (end_to_end if end_to_end.upper() != "NOTPROVIDED" else "")
            or (values.get(detail + "Refs/TxId", "") if single else ""),
            status=STATUSES[status],
            amount=amount if credit else -amount,
            description=description,
            kind=_kind(domain, family, sub, credit),
            transacted_at=at or booked or valued,
            posted_at=booked if status == "BOOK" else None,
            settlement_date=valued.date() if valued else None,
            currency=currency,
            payee=payee or None,
            memo=note if note and note != description else None,
            institution_type=code,
        ),
    )


def balances(gathered: list[tuple[int, dict]]) -> list[Entry]:
    """CLBD and ITBD with their day's CLAV and ITAV beside them."""
    found: dict[tuple[str, datetime], tuple[int, Decimal, str]] = {}
    out: list[Entry] = []
    for line, values in gathered:
        kind = values.get("Tp/CdOrPrtry/Cd", "").upper()
        amount = _amount(values.get("Amt"))
        when, _ = _when(values, "Dt")
        if kind not in ("CLBD", "ITBD", "CLAV", "ITAV"):
            continue
        currency = currency_code(values.get("Amt@Ccy", ""))
        if amount is None or when is None or currency is None:
            out.append(FileError(line, f"Bal {kind}: its amount, date or currency is not readable"))
            continue
        if values.get("CdtDbtInd") == "DBIT":
            amount = -amount
        found[kind, when] = (line, amount, currency)
    for (kind, when), (line, amount, currency) in found.items():
        if kind in ("CLBD", "ITBD"):
            available = found.get(("CLAV" if kind == "CLBD" else "ITAV", when))
            # A date alone is the day's close: its last instant.
            as_of = when
            if when.time() == datetime.min.time() and when.date() < date.max:
                as_of = when + timedelta(days=1, microseconds=-1)
            out.append(
                FileBalance(line, as_of, amount, available[1] if available else None, currency)
            )
    return out


class _Statement:
    """expat's handlers: the element path, and what is being gathered."""

    def __init__(self, parser):
        self.parser = parser
        self.path: list[str] = []
        self.values: dict | None = None
        self.gathering = ""
        self.base = 0
        self.line = 0
        self.text: list[str] = []
        self.length = 0
        self.balances: list[tuple[int, dict]] = []
        self.out: list[Entry] = []
        self.statements = 0
        self.seen_root = False

    def start(self, name: str, attributes: dict) -> None:
        local = name.rpartition(":")[2]
        path = self.path
        path.append(local)
        if len(path) > DEEPEST:
            raise FileProblem(
                self.parser.CurrentLineNumber, f"elements nested deeper than {DEEPEST}"
            )
        self.text, self.length = [], 0
        values = self.values
        if values is not None:
            if local == "TxDtls":
                values["#details"] += 1
            currency = attributes.get("Ccy")
            if currency:
                values.setdefault("/".join(path[self.base :]) + "@Ccy", currency)
            return
        parent = path[-2] if len(path) > 1 else ""
        if local in GATHERED and parent in STATEMENTS:
            if local == "Ntry" and self.balances:
                self.out.extend(balances(self.balances))
                self.balances = []
            self.values, self.gathering = {"#details": 0}, local
            self.base, self.line = len(path), self.parser.CurrentLineNumber
        elif ROOTS.get(parent) == local:
            self.statements += 1
        elif local in ROOTS:
            self.seen_root = True

    def characters(self, data: str) -> None:
        if self.values is not None and self.length < LONGEST_TEXT:
            self.text.append(data)
            self.length += len(data)

    def end(self, name: str) -> None:
        path, values = self.path, self.values
        if values is not None:
            if len(path) == self.base:
                self.finish(self.gathering, values)
                self.values = None
            else:
                value = "".join(self.text).strip()[:LONGEST_TEXT]
                if value:
                    if len(values) > MOST_PATHS:
                        raise FileProblem(self.line, f"<{self.gathering}> holds too many elements")
                    key = "/".join(path[self.base :])
                    if key.endswith("/Ustrd") and key in values:
                        values[key] = f"{values[key]} {value}"[:LONGEST_TEXT]
                    else:
                        values.setdefault(key, value)
            self.text, self.length = [], 0
        elif path[-1] in STATEMENTS and self.balances:
            self.out.extend(balances(self.balances))
            self.balances = []
        path.pop()

    def finish(self, gathered: str, values: dict) -> None:
        if gathered == "Ntry":
            self.out.append(entry(values, self.line))
        elif gathered == "Bal":
            self.balances.append((self.line, values))
        else:
            kind = values.get("Tp/Cd", "").upper()
            self.out.append(
                FileAccount(
                    self.line,
                    currency=currency_code(values.get("Ccy", "")) or None,
                    number_last4=last4(_first(values, "Id/IBAN", "Id/Othr/Id")),
                    account_type=ACCOUNT_TYPES.get(kind, kind.lower() or None),
                )
            )


def _refuse(*_args) -> None:
    raise FileProblem(None, "a document type declaration: refused (a statement has none)")


def read(stream: BinaryIO) -> Iterator[Entry]:
    head = stream.read(texts.HEAD)
    if not looks_like(texts.head_text(head)):
        raise FileProblem(1, "not a CAMT.053 statement: no BkToCstmrStmt at its start")
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    statement = _Statement(parser)
    parser.StartElementHandler = statement.start
    parser.EndElementHandler = statement.end
    parser.CharacterDataHandler = statement.characters
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    chunk = head
    try:
        while True:
            parser.Parse(chunk, not chunk)
            if statement.out:
                yield from statement.out
                statement.out = []
            if not chunk:
                break
            chunk = stream.read(texts.CHUNK)
    except (LookupError, ValueError) as exc:
        # The XML declaration names an encoding Python does not know, one that fails to decode
        # (UnicodeError), or a multi-byte one other than UTF-8/16, which expat cannot be taught.
        if not isinstance(exc, LookupError | UnicodeError) and "encoding" not in str(exc):
            raise
        raise FileProblem(1, f"the XML declaration's encoding cannot be read: {exc}") from None
    except expat.ExpatError as exc:
        cut_short = exc.code in (
            expat.errors.codes[expat.errors.XML_ERROR_NO_ELEMENTS],
            expat.errors.codes[expat.errors.XML_ERROR_UNCLOSED_TOKEN],
        )
        raise FileProblem(
            exc.lineno,
            f"not well-formed XML: {expat.ErrorString(exc.code)}"
            + (" (is the file cut short?)" if cut_short else ""),
        ) from None
    if not statement.seen_root:
        raise FileProblem(None, "not a CAMT.053 statement: no BkToCstmrStmt element")
    if not statement.statements:
        raise FileProblem(None, "the file holds no statement (Stmt, or a CAMT.052 Rpt)")
