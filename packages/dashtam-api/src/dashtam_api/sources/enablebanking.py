"""Enable Banking: banks in the EEA and the UK read through PSD2 (enablebanking_api.py calls it).

The connection holds a session (connections/consent.py opened it from the person's consent at
their bank), sealed by the vault as JSON: the session id and, for each account it covers, its
``uid`` (the handle the API wants in its paths, a new one with every consent), its key (its
``identification_hash``, the same across consents, else its IBAN's or other number's digest)
and what identifies it (every hash, identifier digests); the names of accounts left out (only
a uid); the PSU headers the bank requires (enablebanking_accounts.py). Accounts are keyed by
the hash, never the uid: a reconnection keeps every account and transaction it had.

- Balances (``/accounts/{uid}/balances``): the booked one is the first of CLBD, ITBD, XPCD,
  OPBD, PRCD that the bank lists (else whatever it lists first); the available one ITAV, CLAV.
- Transactions (``/accounts/{uid}/transactions`` from the account's window to today, dates
  inclusive, never more than PERIOD_DAYS; a refused period asked once more, shorter),
  following ``continuation_key`` to the end (a listing cut short, at MAX_PAGES or a key seen
  before, is read as changes only: no pending it did not reach is cancelled).
  BOOK is posted, PDNG (and HOLD) pending, others (cancelled, rejected, scheduled) left out.
  Amounts come unsigned, ``credit_debit_indicator`` gives the sign. The id is
  ``entry_reference``; without one, a digest of what the bank said of it. A pending that books
  under a new ``entry_reference`` is matched by the reconciliation's pending → posted rule.
- Limits: banks allow about four unattended reads a day of each account (PSD2 RTS 36(5)): the
  budget counts reads (four a day); the bank's 429 ``ASPSP_RATE_LIMIT_EXCEEDED`` says the day's
  reads are spent, not that anything is wrong. A bank that requires PSU headers is read only
  when the person asked for the read (``Windows.present``), with their address and agent.
"""

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import httpx

from dashtam_api.sources import enablebanking_accounts as kept
from dashtam_api.sources import enablebanking_api as api
from dashtam_api.sources.protocol import Kind, Limits, Reading
from dashtam_api.sources.shapes import (
    AccountData,
    Balance,
    SourceError,
    TransactionData,
    Windows,
    decimal,
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
MAX_PAGES = 200
# The longest period of transactions one request asks for, days inclusive: strict banks refuse
# 91 (WRONG_TRANSACTIONS_PERIOD); and the period asked for again when a bank refuses one
# without naming the day it would take.
PERIOD_DAYS = 90
FALLBACK_DAYS = 30
# What a read of a bank that requires PSU headers is refused as when the person is not there.
PRESENCE_REQUIRED = "psu_presence_required"


def attended(present, settings: Settings) -> dict | None:
    """The PSU headers of a read the person asked for themselves: their address and user
    agent. None when no one is there, or their address is private or loopback outside
    development and testing (banks refuse those: actualbudget/actual#8032)."""
    ip = (present or {}).get("ip")
    try:
        address = ipaddress.ip_address(ip) if ip else None
    except ValueError:
        address = None
    if address is None or not (address.is_global or settings.local_environment):
        return None
    headers = {"Psu-Ip-Address": str(address)}
    agent = "".join(c for c in str(present.get("user_agent") or "") if " " <= c <= "~")[:300]
    if agent:
        headers["Psu-User-Agent"] = agent
    return headers


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
    """An id for an entry without ``entry_reference``: a digest of what the bank said of it,
    numbered among identical ones. Its status is left out, but its booking date is in: a
    pending entry (no booking date yet) gets another id once booked, and is matched to its
    pending row by the reconciliation's pending -> posted rule, as one booked under a new
    ``entry_reference`` is."""
    said = (
        raw.get("booking_date"), raw.get("value_date"), raw.get("transaction_date"),
        kept.json_object(raw.get("transaction_amount"), "a transaction's amount").get("amount"),
        raw.get("credit_debit_indicator"), raw.get("remittance_information"),
        kept.json_object(raw.get("creditor"), "a transaction's creditor").get("name"),
        kept.json_object(raw.get("debtor"), "a transaction's debtor").get("name"),
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
    party = kept.json_object(
        raw.get("creditor" if amount < 0 else "debtor"), "a transaction's party"
    )
    payee = str(party.get("name"))[:200] if party.get("name") else None
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


@dataclass
class Listing:
    """One account's transactions as listed: from ``start`` (a day the bank took) to the read's
    end; ``whole``: every page was reached (False: cut short, at MAX_PAGES or a key given
    twice)."""

    transactions: list
    start: date
    whole: bool = True


async def _pages(client: api.Client, uid: str, start: date, until: date, psu) -> Listing:
    listing, keys, seen = Listing([], start, whole=False), set(), {}
    key = None
    for _ in range(MAX_PAGES):
        page = await client.transactions(
            uid, date_from=start.isoformat(), date_to=until.isoformat(), key=key, psu=psu,
            status="BOOK" if client.settings.ENABLE_BANKING_BOOKED_ONLY else None,
        )  # fmt: skip
        entries = page.get("transactions") or ()
        if not isinstance(entries, list):
            raise shape_error("a page of transactions")
        for raw in entries:
            if not isinstance(raw, dict):
                raise shape_error("a transaction")
            made = transaction_of(raw, seen)
            if made is not None:
                listing.transactions.append(made)
        key = page.get("continuation_key")
        if not key:
            listing.whole = True
            break
        if key in keys:
            break
        keys.add(key)
    return listing


async def _transactions(
    client: api.Client, uid: str, start: date, until: date, psu: dict | None
) -> Listing:
    """The account's listing from ``start`` (never more than PERIOD_DAYS, dates inclusive);
    a bank refusing the period (WRONG_TRANSACTIONS_PERIOD) is asked once more, from the day it
    named, else for the last FALLBACK_DAYS."""
    start = max(start, until - timedelta(days=PERIOD_DAYS - 1))
    try:
        return await _pages(client, uid, start, until, psu)
    except api.PeriodRefused as exc:
        shorter = exc.date_from
        if shorter is None or not start < shorter <= until:
            shorter = until - timedelta(days=FALLBACK_DAYS - 1)
        if shorter <= start:
            raise
        return await _pages(client, uid, shorter, until, psu)


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
    _, accounts = kept.held_of(credential)
    psu = attended(windows.present, settings) if kept.psu_headers_of(credential) else None
    if kept.psu_headers_of(credential) and psu is None:
        # The bank allows no unattended read (some demand the person's PSU headers on every
        # one): not tried, and the loop waits a day; the person's own sync reads it.
        raise SourceError(
            PRESENCE_REQUIRED, "this bank lets Dashtam read it only while you are there: sync "
            "it yourself (Sync now, or POST /api/v1/providers/{id}/sync)", transient=False,
            budget_spent=True, retry_after=86400,
        )  # fmt: skip
    notes = [
        f"left_out: {name!r} is not read: the bank gives it no lasting identity (no "
        "identification hash, IBAN or other account number)"
        for name in kept.left_out_of(credential)
    ]
    client = api.Client(http, app, settings)
    until = windows.until
    read_: list[AccountData] = []
    for held in accounts:
        # The bank's dates are whole days: the window starts at the first day asked for.
        start = windows.start(held.hash, limits.history_days).date()
        try:
            balances = await client.balances(held.uid, psu=psu)
            listing = await _transactions(client, held.uid, start, until.date(), psu)
        except SourceError as exc:
            if not read_:
                raise
            # Those read are written (a read of the day's few is not thrown away).
            return Reading(read_, notes=tuple(notes), failure=exc, complete=False)
        if not listing.whole:
            notes.append(
                f"cut_short: the bank's listing of {held.name!r} was cut short after "
                f"{MAX_PAGES} pages or a repeated continuation key; the rest is read next time"
            )
        read_.append(
            AccountData(
                external_id=held.hash,
                account_type=held.type,
                name=held.name,
                number_last4=held.last4,
                currency=held.currency,
                balance=balance_of(balances),
                positions=(),
                transactions=tuple(listing.transactions),
                window=(datetime.combine(listing.start, datetime.min.time(), UTC), until),
                # A listing cut short is not all of its window: no pending of ours it does not
                # list is cancelled (the reconciliation reads it as changes only).
                changes_only=not listing.whole,
            )
        )
    return Reading(read_, notes=tuple(notes))
