"""Plaid (US and Canada), read with an item's access token (a Link-style connection: Plaid Link
gives a public token, exchanged once for the access token; connections/link.py).

A read:

1. ``/accounts/get``: the item's accounts and balances, and which products the item has.
2. With the ``transactions`` product (among the item's ``products`` or ``billed_products``;
   an investments-only Link has none, and is not asked): ``/transactions/sync`` from the cursor
   the last read kept (``Windows.state``), page after page while ``has_more``, everything
   buffered: nothing is handed on, and the cursor is not kept, until the last page came (the
   sync writes both in one transaction). Plaid's ``TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION``
   restarts the pages from the read's first cursor, the buffer dropped (a few times at most,
   then the sync fails, transient). After MUTATION_FAILURES such failed syncs in a row the
   cursor is dropped and the next read is a whole one (Plaid's support to monetr#3126: start
   again from no cursor). A cursor Plaid says belongs to no item of this token (after a new
   Link) starts from the beginning.
3. With the ``investments`` product: ``/investments/holdings/get`` (positions) and
   ``/investments/transactions/get`` (buys and sells with fees, dividends, ...) for the
   investment accounts, ``offset`` pages. Plaid may fill an item's investment history after
   Link (teams made since 2026-11-18: 30 days at Link, 24 months later, announced by the
   ``INVESTMENTS_TRANSACTIONS`` / ``HISTORICAL_UPDATE`` webhook): until the source state says
   the history is complete (``investments_complete``: set by a read after that webhook, a read
   that found transactions older than the first 30 days, or a read a day after the first), every
   read asks for the whole 730 days; then from where the sync left off. ``PRODUCT_NOT_READY``
   (nothing there yet) skips the investments this read, with a note: the rest is written.

What a cursor's changes are to the reconciliation (``AccountData.changes_only``): ``added``
and ``modified`` are upserted by ``transaction_id``; ``removed`` is gone at Plaid; a posted
transaction's ``pending_transaction_id`` names the pending one it completes (removed in the
same changes), which keeps its Dashtam id. A read from no cursor is the item's whole history:
a whole listing of the period Plaid says it holds (``transactions_update_status``: the last 30
days at ``INITIAL_UPDATE_COMPLETE``, two years at ``HISTORICAL_UPDATE_COMPLETE``; at
``TRANSACTIONS_UPDATE_STATUS_UNKNOWN``, Plaid "unable to fetch" the status though the data is
there, the days from the oldest transaction listed), so what a new item lists under new ids
(a new Link of the same bank) takes over the rows it is (the reconciliation's re-issued rule).
The cursor is kept once the history is complete, or at ``UNKNOWN`` when Plaid gave one (an
item stuck there still moves on from it); while the history is still coming
(``INITIAL_UPDATE_COMPLETE``) every read is a whole one, and at ``NOT_READY`` nothing is read.

Plaid's amounts are positive for money out of the account; Dashtam's positive for money in:
every amount is negated (an investment transaction's too: Plaid's is positive for a buy). A
credit or loan account's ``current`` balance is what is owed, positive: negated as well. The
``personal_finance_category`` (``detailed``) is kept as the institution's type.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import httpx

from dashtam_api.sources.plaid_api import MUTATION, PlaidAPI, PlaidFailure, plaid_base_url
from dashtam_api.sources.protocol import Kind, Limits, Reading
from dashtam_api.sources.shapes import (
    AccountData,
    Balance,
    Holding,
    SourceError,
    TransactionData,
    Windows,
    decimal,
    maybe_decimal,
    shape_error,
    timestamp,
)
from dashtam_core.config import Settings

name = "plaid"
kind = Kind.LINK
# Plaid keeps up to 24 months of transactions (transactions.days_requested, at most 730).
limits = Limits(history_days=730)
person_named_servers = False
PAGE = 500  # /transactions/sync's and /investments/transactions/get's largest count
# Restarts of the pages on a mutation before the read fails (transient: the next sync).
MAX_RESTARTS = 3
INITIAL_DAYS = 30
# Failed syncs in a row (the pages changing under every restart) before the cursor is dropped.
MUTATION_FAILURES = 3
# How long after the first read of an item's investments its history is taken as complete
# without Plaid's webhook (a team whose investments come whole at Link gets none).
INVESTMENTS_SETTLE = timedelta(days=1)
OWED = ("credit", "loan")


def requests_for(windows: Windows) -> None:
    """No daily budget: Plaid's limits are per minute, answered 429 (transient) when met."""
    return None


@dataclass
class Changes:
    added: list = field(default_factory=list)
    modified: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    cursor: str | None = None
    status: str = "TRANSACTIONS_UPDATE_STATUS_UNKNOWN"
    whole: bool = False  # read from no cursor: the item's whole history

    @property
    def keeps_cursor(self) -> bool:
        """The cursor is kept for the next read (the module's rule)."""
        return bool(self.cursor) and self.status in (
            "HISTORICAL_UPDATE_COMPLETE", "TRANSACTIONS_UPDATE_STATUS_UNKNOWN",
        )  # fmt: skip


async def read(
    *,
    base_url: str | None,
    credential: str,
    http: httpx.AsyncClient,
    settings: Settings,
    windows: Windows,
) -> Reading:
    api = PlaidAPI(http, base_url=base_url or plaid_base_url(settings), settings=settings)
    state = dict(windows.state or {})
    failures = int(state.pop("mutation_failures", 0) or 0)
    notes: list[str] = []
    try:
        listed = await api.call("/accounts/get", {"access_token": credential})
        accounts = listed["accounts"]
        item = listed.get("item") or {}
        products = set(item.get("products") or ()) | set(item.get("billed_products") or ())
        changes = None
        if "transactions" in products:
            cursor = state.get("cursor") if failures < MUTATION_FAILURES else None
            try:
                changes = await sync_changes(api, credential, cursor)
            except PlaidFailure as exc:
                if exc.error_code != MUTATION:
                    raise
                # Written with the failure: the count of such syncs in a row (module, step 2).
                state["mutation_failures"] = failures + 1
                return Reading([], failure=exc.source_error(), complete=False, state=state)
        investing = None
        if "investments" in products:
            investing = await _investments(api, credential, accounts, windows, state, notes)
    except PlaidFailure as exc:
        raise exc.source_error() from None
    except (KeyError, TypeError, AttributeError):
        raise shape_error("Plaid's answer") from None
    if changes is not None and changes.keeps_cursor:
        state["cursor"] = changes.cursor
    elif changes is not None:
        state.pop("cursor", None)
    # Which account Plaid names the same for every item (a new Link keeps it: connections/link).
    state["persistent"] = {
        a["account_id"]: a["persistent_account_id"]
        for a in accounts
        if a.get("persistent_account_id")
    }
    absent = investing["absent"] if investing else set()
    whole = _window(changes, windows.until) if changes is not None and changes.whole else None
    return Reading(
        [_account(raw, changes, investing, windows, whole) for raw in accounts
         if raw["account_id"] not in absent],
        notes=tuple(notes),
        complete=not absent,
        state=state,
    )  # fmt: skip


async def sync_changes(api: PlaidAPI, access_token: str, cursor: str | None) -> Changes:
    """Every page of /transactions/sync from ``cursor`` (the module's step 2)."""
    start, restarts, reset = cursor or None, 0, False
    while True:
        changes = Changes(cursor=start, whole=start is None)
        try:
            while True:
                body = {"access_token": access_token, "count": PAGE}
                if changes.cursor:
                    body["cursor"] = changes.cursor
                page = await api.call("/transactions/sync", body)
                changes.added += page["added"]
                changes.modified += page["modified"]
                changes.removed += page["removed"]
                changes.status = str(page.get("transactions_update_status") or changes.status)
                changes.cursor = page["next_cursor"] or None  # "" while not ready
                if not page["has_more"]:
                    return changes
        except PlaidFailure as exc:
            if exc.error_code == MUTATION and restarts < MAX_RESTARTS:
                restarts += 1
                continue
            if (
                exc.error_code == "INVALID_FIELD"
                and start is not None
                and "cursor" in exc.message.lower()
                and not reset
            ):
                # A cursor of another item (a new Link): the new item's whole history.
                start, reset = None, True
                continue
            raise


async def _investments(
    api: PlaidAPI, access_token: str, accounts: list, windows: Windows, state: dict, notes: list
):
    """Holdings and investment transactions by account id (the module's step 3); None when
    there are none. ``PRODUCT_NOT_READY`` (noted): the transactions' window is None (nothing
    reconciled); from the holdings, the investment accounts are left out of the read
    (``absent``: their balances and positions stay as they are)."""
    ids = [a["account_id"] for a in accounts if a.get("type") == "investment"]
    if not ids:
        return None
    not_ready = "PRODUCT_NOT_READY: Plaid has the investments not ready yet: read at a later sync"
    end = windows.until.date()
    complete = bool(state.get("investments_complete"))
    if complete:
        start = min(windows.start(i, limits.history_days) for i in ids).date()
    else:
        start = end - timedelta(days=limits.history_days)
    try:
        held = await api.call(
            "/investments/holdings/get",
            {"access_token": access_token, "options": {"account_ids": ids}},
        )
    except PlaidFailure as exc:
        if exc.error_code != "PRODUCT_NOT_READY":
            raise
        notes.append(not_ready)
        return {"ids": set(ids), "absent": set(ids)}
    securities = {s["security_id"]: s for s in held["securities"]}
    found, offset, window = [], 0, (datetime.combine(start, time(), UTC), windows.until)
    try:
        while True:
            page = await api.call(
                "/investments/transactions/get",
                {
                    "access_token": access_token,
                    "start_date": start.isoformat(),
                    "end_date": end.isoformat(),
                    "options": {"account_ids": ids, "count": PAGE, "offset": offset},
                },
            )
            for s in page["securities"]:
                securities.setdefault(s["security_id"], s)
            found += page["investment_transactions"]
            offset += len(page["investment_transactions"])
            total = page["total_investment_transactions"]
            if not page["investment_transactions"] or offset >= total:
                break
    except PlaidFailure as exc:
        if exc.error_code != "PRODUCT_NOT_READY":
            raise
        notes.append(not_ready)
        found, window = [], None
    if not complete and window is not None:
        first = state.setdefault("investments_first_read", windows.until.isoformat())
        old = end - timedelta(days=INITIAL_DAYS + 1)
        state["investments_complete"] = (
            bool(state.pop("investments_history", False))
            or any(_day(t["date"], "date").date() < old for t in found)
            or windows.until - datetime.fromisoformat(first) >= INVESTMENTS_SETTLE
        )
    return {
        "holdings": held["holdings"],
        "transactions": found,
        "securities": securities,
        "window": window,
        "ids": set(ids),
        "absent": set(),
    }


def _day(value, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return datetime.combine(date.fromisoformat(str(value)), time(), UTC)
    except ValueError:
        raise SourceError("invalid_response", f"{where} is not a date", transient=False) from None


def _currency(raw: dict) -> str:
    """ISO 4217; an unofficial currency (crypto) is XXX, 'no currency'."""
    return str(raw.get("iso_currency_code") or "XXX")


def _kind_of(amount: Decimal, category: str | None) -> str:
    primary = (category or "").split("_")[0:2]
    if primary[:1] == ["TRANSFER"]:
        return "transfer"
    if primary[:2] == ["BANK", "FEES"]:
        return "fee"
    return "deposit" if amount > 0 else "withdrawal"


def transaction(raw: dict) -> TransactionData:
    """One of /transactions/sync's ``added`` or ``modified``, in Dashtam's sign."""
    amount = -decimal(raw["amount"], "amount")
    pending = bool(raw["pending"])
    category = (raw.get("personal_finance_category") or {}).get("detailed")
    made = (
        timestamp(raw.get("authorized_datetime"), "authorized_datetime")
        or _day(raw.get("authorized_date"), "authorized_date")
        or timestamp(raw.get("datetime"), "datetime")
        or _day(raw["date"], "date")
    )
    posted = None if pending else (
        timestamp(raw.get("datetime"), "datetime") or _day(raw["date"], "date")
    )  # fmt: skip
    merchant = raw.get("merchant_name")
    return TransactionData(
        external_id=str(raw["transaction_id"]),
        status="pending" if pending else "posted",
        amount=amount,
        description=str(merchant or raw.get("name") or ""),
        kind=_kind_of(amount, category),
        transacted_at=made,
        posted_at=posted,
        pending_external_id=raw.get("pending_transaction_id") or None,
        currency=_currency(raw),
        payee=str(merchant) if merchant else None,
        memo=str(raw["name"]) if merchant and raw.get("name") != merchant else None,
        institution_type=category,
    )


INVESTMENT_KINDS = {
    "buy": "trade", "sell": "trade", "fee": "fee", "transfer": "transfer", "cancel": "trade",
}  # fmt: skip
CASH_KINDS = {
    "dividend": "dividend", "qualified dividend": "dividend", "non-qualified dividend": "dividend",
    "interest": "interest", "deposit": "deposit", "withdrawal": "withdrawal",
}  # fmt: skip


def investment_transaction(raw: dict, securities: dict) -> TransactionData:
    """One of /investments/transactions/get's, in Dashtam's sign (Plaid's: a buy > 0)."""
    security = securities.get(raw.get("security_id") or "") or {}
    amount = -decimal(raw["amount"], "amount")
    kind = INVESTMENT_KINDS.get(raw["type"]) or CASH_KINDS.get(raw["subtype"])
    day = _day(raw["date"], "date")
    return TransactionData(
        external_id=str(raw["investment_transaction_id"]),
        status="posted",
        amount=amount,
        description=str(raw.get("name") or ""),
        kind=kind or ("deposit" if amount > 0 else "withdrawal"),
        transacted_at=timestamp(raw.get("transaction_datetime"), "transaction_datetime") or day,
        posted_at=day,
        currency=_currency(raw),
        institution_type=f"{raw['type']}/{raw['subtype']}",
        symbol=security.get("ticker_symbol") or security.get("name"),
        asset_type=security.get("type"),
        quantity=maybe_decimal(raw.get("quantity"), "quantity"),
        price=maybe_decimal(raw.get("price"), "price"),
        fees=maybe_decimal(raw.get("fees"), "fees"),
    )


def _holding(raw: dict, securities: dict) -> Holding:
    security = securities.get(raw["security_id"]) or {}
    return Holding(
        symbol=str(security.get("ticker_symbol") or security.get("name") or raw["security_id"]),
        asset_type=str(security.get("type") or "unknown"),
        description=security.get("name"),
        quantity=decimal(raw["quantity"], "quantity"),
        price=maybe_decimal(raw.get("institution_price"), "institution_price"),
        market_value=decimal(raw["institution_value"], "institution_value"),
        cost_basis=maybe_decimal(raw.get("cost_basis"), "cost_basis"),
    )


def _window(changes: Changes, until: datetime) -> tuple[datetime, datetime] | None:
    """The period a whole read lists in full (None: no transactions read yet, NOT_READY): the
    days Plaid says it holds, from midnight, and at least the days the listing covers."""
    listed = [_day(t["date"], "date") for t in changes.added + changes.modified]
    days = {
        "HISTORICAL_UPDATE_COMPLETE": limits.history_days,
        "INITIAL_UPDATE_COMPLETE": INITIAL_DAYS,
    }.get(changes.status)
    if days is not None:
        start = datetime.combine((until - timedelta(days=days)).date(), time(), UTC)
        return min([start, *listed]), until
    if changes.status == "TRANSACTIONS_UPDATE_STATUS_UNKNOWN" and listed:
        # Plaid could not say how far the history goes: the days the listing covers.
        return min(listed), until
    return None


def _account(
    raw: dict,
    changes: Changes | None,
    investing: dict | None,
    windows: Windows,
    whole: tuple[datetime, datetime] | None,
) -> AccountData:
    account_id = str(raw["account_id"])
    balances = raw["balances"]
    owed = raw.get("type") in OWED
    current = maybe_decimal(balances.get("current"), "current")
    if current is None:  # some institutions give only the available balance
        current = maybe_decimal(balances.get("available"), "available") or Decimal(0)
    positions, transactions, removed = (), (), ()
    window, changes_only = None, False
    if investing is not None and account_id in investing["ids"]:
        securities = investing["securities"]
        positions = tuple(
            _holding(h, securities) for h in investing["holdings"] if h["account_id"] == account_id
        )
        transactions = tuple(
            investment_transaction(t, securities)
            for t in investing["transactions"]
            if t["account_id"] == account_id
        )
        window = investing["window"]
    elif changes is not None:
        mine = [t for t in (*changes.added, *changes.modified) if t["account_id"] == account_id]
        transactions = tuple(transaction(t) for t in mine)
        removed = tuple(
            str(r["transaction_id"]) for r in changes.removed if r.get("account_id") == account_id
        )
        if changes.whole:
            window = whole  # the whole read's period, the same for every account
        else:
            window, changes_only = (windows.until, windows.until), True
    return AccountData(
        external_id=account_id,
        account_type=str(raw.get("subtype") or raw.get("type") or "unknown"),
        name=str(raw.get("name") or raw.get("official_name") or account_id)[:200],
        number_last4=str(raw["mask"])[-4:] if raw.get("mask") else None,
        currency=_currency(balances),
        balance=Balance(
            current=-current if owed else current,
            available=maybe_decimal(balances.get("available"), "available"),
        ),
        positions=positions,
        transactions=transactions,
        window=window,
        changes_only=changes_only,
        removed=removed,
    )
