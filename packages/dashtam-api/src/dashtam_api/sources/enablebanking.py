"""Enable Banking: banks in the EEA and the UK read through PSD2 (enablebanking_api.py calls it).

The connection holds a session (connections/consent.py opened it from the person's consent at
their bank), sealed by the vault as JSON: the session id and, for each account it covers, its
``uid`` (the handle the API wants in its paths, a new one with every consent) and its
``identification_hash`` (the same across consents). Accounts are keyed by the hash, never the
uid: a reconnection keeps every account and transaction it had.

- Balances (``/accounts/{uid}/balances``): the booked one is the first of CLBD, ITBD, XPCD,
  OPBD, PRCD that the bank lists (else whatever it lists first); the available one ITAV, CLAV.
- Transactions (``/accounts/{uid}/transactions`` from the account's window to today, dates
  inclusive), following ``continuation_key`` to the end (and stopping on a key seen before).
  BOOK is posted, PDNG (and HOLD) pending, others (cancelled, rejected, scheduled) left out.
  Amounts come unsigned, ``credit_debit_indicator`` gives the sign. The id is
  ``entry_reference``; without one, a digest of what the bank said of it. A pending that books
  under a new ``entry_reference`` is matched by the reconciliation's pending → posted rule.
- Limits: banks allow about four unattended reads a day of each account (PSD2 RTS 36(5)): the
  budget counts reads (four a day); the bank's 429 ``ASPSP_RATE_LIMIT_EXCEEDED`` says the day's
  reads are spent, not that anything is wrong.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from dashtam_api.sources import enablebanking_api as api
from dashtam_api.sources.protocol import Kind, Limits, Reading
from dashtam_api.sources.shapes import (
    AccountData,
    Balance,
    SourceError,
    TransactionData,
    Windows,
    decimal,
    last4,
    shape_error,
    timestamp,
)
from dashtam_core.config import Settings

name = "enablebanking"
kind = Kind.CONSENT
# Banks keep at least 90 days for unattended reads (PSD2 RTS 10); four reads a day.
limits = Limits(history_days=90, requests_per_day=4, budget_counts="read")
person_named_servers = False

BOOKED = ("CLBD", "ITBD", "XPCD", "OPBD", "PRCD")
AVAILABLE = ("ITAV", "CLAV")
STATUSES = {"BOOK": "posted", "PDNG": "pending", "HOLD": "pending"}
ACCOUNT_TYPES = {"CACC": "checking", "SVGS": "savings", "CARD": "credit_card", "LOAN": "loan"}
MAX_PAGES = 200


@dataclass(frozen=True)
class Held:
    """One account of the session, as the connection keeps it."""

    uid: str
    hash: str
    name: str
    currency: str
    last4: str | None
    type: str


def credential(session_id: str, accounts: list[Held]) -> str:
    return json.dumps({"session_id": session_id, "accounts": [vars(a) for a in accounts]})


def held_of(credential_text: str) -> tuple[str, list[Held]]:
    try:
        held = json.loads(credential_text)
        return held["session_id"], [Held(**a) for a in held["accounts"]]
    except (ValueError, KeyError, TypeError):
        raise SourceError(
            "invalid_credential", "the connection holds no Enable Banking session: connect again",
            transient=False, needs_person=True,
        ) from None  # fmt: skip


def accounts_of(session: dict) -> list[Held]:
    """The accounts a new session covers (POST /sessions' answer)."""
    found = []
    for raw in session.get("accounts") or ():
        if not isinstance(raw, dict) or not raw.get("uid"):
            raise shape_error("a session's account")
        identity = raw.get("identification_hash") or next(
            iter(raw.get("identification_hashes") or ()), None
        )
        iban = (raw.get("account_id") or {}).get("iban")
        if not identity:  # no hash at all: the IBAN, which does not change either
            identity = hashlib.sha256(str(iban or raw["uid"]).encode()).hexdigest()
        found.append(
            Held(
                uid=str(raw["uid"]),
                hash=str(identity),
                name=str(raw.get("name") or raw.get("product") or "Account")[:200],
                currency=str(raw.get("currency") or "EUR")[:3],
                last4=last4(iban),
                type=ACCOUNT_TYPES.get(str(raw.get("cash_account_type")), "bank"),
            )
        )
    return found


def requests_for(windows: Windows) -> int:
    return 1  # one read of every account, whatever its pages


def balance_of(balances: list) -> Balance | None:
    """The booked balance (BOOKED's order, else the first listed) and the available one."""
    by_type = {}
    for b in balances:
        if isinstance(b, dict) and isinstance(b.get("balance_amount"), dict):
            by_type.setdefault(str(b.get("balance_type")), b)
    if not by_type:
        return None

    def amount(b: dict):
        return decimal(b["balance_amount"].get("amount"), "balance_amount")

    booked = next((by_type[t] for t in BOOKED if t in by_type), next(iter(by_type.values())))
    available = next((by_type[t] for t in AVAILABLE if t in by_type), None)
    return Balance(
        current=amount(booked), available=amount(available) if available is not None else None
    )


def _day(value, where: str) -> datetime | None:
    return timestamp(value, where) if value else None


def _fallback_id(raw: dict, seen: dict) -> str:
    """An id for an entry without ``entry_reference``: a digest of what the bank said of it
    (its status left out: the same entry pending and booked), numbered among identical ones."""
    said = (
        raw.get("booking_date"), raw.get("value_date"), raw.get("transaction_date"),
        (raw.get("transaction_amount") or {}).get("amount"), raw.get("credit_debit_indicator"),
        raw.get("remittance_information"), (raw.get("creditor") or {}).get("name"),
        (raw.get("debtor") or {}).get("name"),
    )  # fmt: skip
    digest = hashlib.sha256(repr(said).encode()).hexdigest()[:32]
    seen[digest] = seen.get(digest, 0) + 1
    return f"eb-{digest}-{seen[digest]}"


def transaction_of(raw: dict, seen: dict) -> TransactionData | None:
    status = STATUSES.get(str(raw.get("status") or "BOOK"))
    if status is None:
        return None
    money = raw.get("transaction_amount")
    if not isinstance(money, dict):
        raise shape_error("a transaction's amount")
    amount = abs(decimal(money.get("amount"), "transaction_amount"))
    if raw.get("credit_debit_indicator") == "DBIT":
        amount = -amount
    remittance = raw.get("remittance_information") or ()
    text = " ".join(str(r) for r in remittance) if isinstance(remittance, list) else str(remittance)
    party = raw.get("creditor" if amount < 0 else "debtor") or {}
    payee = str(party.get("name"))[:200] if isinstance(party, dict) and party.get("name") else None
    booked = _day(raw.get("booking_date"), "booking_date")
    value = _day(raw.get("value_date"), "value_date")
    made = _day(raw.get("transaction_date"), "transaction_date") or value or booked
    return TransactionData(
        external_id=str(raw.get("entry_reference") or "")[:200] or _fallback_id(raw, seen),
        status=status,
        amount=amount,
        description=(text or payee or "")[:500],
        kind="deposit" if amount > 0 else "withdrawal",
        transacted_at=made,
        posted_at=booked if status == "posted" else None,
        settlement_date=value.date() if value is not None and status == "posted" else None,
        currency=str(money.get("currency") or "EUR")[:3],
        payee=payee,
        memo=str(raw["note"])[:500] if raw.get("note") else None,
        institution_type=(raw.get("bank_transaction_code") or {}).get("code")
        if isinstance(raw.get("bank_transaction_code"), dict)
        else None,
    )


async def _transactions(client: api.Client, uid: str, start: datetime, until: datetime) -> list:
    listed, keys, seen = [], set(), {}
    key = None
    for _ in range(MAX_PAGES):
        page = await client.transactions(
            uid, date_from=start.date().isoformat(), date_to=until.date().isoformat(), key=key
        )
        for raw in page.get("transactions") or ():
            if not isinstance(raw, dict):
                raise shape_error("a transaction")
            made = transaction_of(raw, seen)
            if made is not None:
                listed.append(made)
        key = page.get("continuation_key")
        if not key or key in keys:
            break
        keys.add(key)
    return listed


async def read(
    *,
    base_url: str | None,
    credential: str,
    http: httpx.AsyncClient,
    settings: Settings,
    windows: Windows,
) -> Reading:
    app = api.application(settings)
    if app is None:
        raise SourceError(
            "not_configured", "Enable Banking is not configured here", transient=False
        )
    _, accounts = held_of(credential)
    client = api.Client(http, app, settings)
    until = windows.until
    read_: list[AccountData] = []
    for held in accounts:
        start = windows.start(held.hash, limits.history_days)
        # The bank's dates are whole days: the window starts at the first day asked for.
        start = datetime.combine(start.date(), datetime.min.time(), UTC)
        try:
            balances = await client.balances(held.uid)
            transactions = await _transactions(client, held.uid, start, until)
        except SourceError as exc:
            if not read_:
                raise
            # Those read are written (a read of the day's few is not thrown away).
            return Reading(read_, failure=exc, complete=False)
        read_.append(
            AccountData(
                external_id=held.hash,
                account_type=held.type,
                name=held.name,
                number_last4=held.last4,
                currency=held.currency,
                balance=balance_of(balances),
                positions=(),
                transactions=tuple(transactions),
                window=(start, until),
            )
        )
    return Reading(read_)
