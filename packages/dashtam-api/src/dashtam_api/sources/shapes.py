"""The shapes every source reads into, and the parsing they share, Decimal end to end.

Whatever an institution sends (JSON, a SimpleFIN document, an OFX or CSV file), a source hands
the sync these: accounts with a balance, holdings and transactions. Amounts are parsed straight
into Decimal: a float never appears, and an amount that is not a number is refused, not guessed.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation


@dataclass(frozen=True)
class Balance:
    current: Decimal
    available: Decimal | None = None
    cash: Decimal | None = None
    buying_power: Decimal | None = None


@dataclass(frozen=True)
class Holding:
    symbol: str
    asset_type: str
    quantity: Decimal
    market_value: Decimal
    description: str | None = None
    price: Decimal | None = None
    cost_basis: Decimal | None = None


@dataclass(frozen=True)
class TransactionData:
    """One transaction as the institution lists it now (amount signed: into the account > 0)."""

    external_id: str
    status: str  # pending | posted
    amount: Decimal
    description: str
    kind: str
    transacted_at: datetime | None
    posted_at: datetime | None = None
    settlement_date: date | None = None
    # The id of the pending transaction this posted one completes, where the institution says.
    pending_external_id: str | None = None
    currency: str = "USD"
    payee: str | None = None
    memo: str | None = None
    institution_type: str | None = None
    symbol: str | None = None
    asset_type: str | None = None
    quantity: Decimal | None = None
    price: Decimal | None = None
    fees: Decimal | None = None

    @property
    def occurred_at(self) -> datetime | None:
        """When it happened; None only for a pending one listed with no time at all, which
        the reconciliation dates when first seen (sync/transactions.py)."""
        return self.posted_at or self.transacted_at


@dataclass(frozen=True)
class AccountData:
    external_id: str
    account_type: str
    name: str
    number_last4: str | None
    currency: str
    balance: Balance | None
    positions: tuple[Holding, ...]
    transactions: tuple[TransactionData, ...] = ()
    # The period the transactions were asked for: a pending of ours in it that the institution
    # no longer lists is gone (None: transactions were not read).
    window: tuple[datetime, datetime] | None = field(default=None)
    # The transactions are only what changed since the source's last read (a cursor's changes:
    # Plaid's /transactions/sync), not all of the window: nothing of ours they do not list is
    # gone or re-issued; ``removed`` names the ids the institution took back (read either way).
    changes_only: bool = False
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Windows:
    """From when to read each account's transactions: ``since`` by the account's institution
    id (accounts read before), else the institution's whole history (``history_days``)."""

    since: Mapping[str, datetime]
    until: datetime
    # What the source's last read of the connection kept for this one (Reading.state).
    state: Mapping | None = None
    # The person's address and user agent (``ip``, ``user_agent``) when they asked for this
    # read themselves (a PSD2 bank's "attended" read); None for the background loop's.
    present: Mapping[str, str | None] | None = None

    def start(self, external_id: str, history_days: int) -> datetime:
        return self.since.get(external_id) or self.until - timedelta(days=history_days)


KINDS = {"trade", "dividend", "interest", "deposit", "withdrawal", "transfer", "fee", "card"}


def timestamp(value, where: str) -> datetime | None:
    """An institution's timestamp: ISO 8601 with ``Z``, ``+00:00`` or Schwab's ``+0000``; a
    bare date is midnight UTC; a naive time is taken as UTC."""
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise SourceError(
            "invalid_response", f"{where} is not a timestamp", transient=False
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class SourceError(Exception):
    """A source failed to read. ``transient``: the same read may pass later; ``unauthorized``:
    the access token was refused (an OAuth2 source refreshes once and tries again);
    ``needs_person``: only the person can fix it (reconnect, or mend the connection at the
    institution's side): the connection turns ``error`` and is not read again until they do;
    ``retry_after``: seconds the source asked us to wait; ``ended``: the authorization ran out
    (with ``needs_person``: the connection turns ``expired``, not ``error``); ``budget_spent``:
    the institution refused the read for its daily limit: the connection is healthy, the
    day's budget is spent (the sync answers as for one of ours spent)."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        transient: bool,
        unauthorized: bool = False,
        needs_person: bool = False,
        retry_after: int | None = None,
        ended: bool = False,
        budget_spent: bool = False,
    ):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.transient = transient
        self.unauthorized = unauthorized
        self.needs_person = needs_person
        self.retry_after = retry_after
        self.ended = ended
        self.budget_spent = budget_spent


def decimal(value, field: str) -> Decimal:
    """An exact amount from what an institution sent (string, integer or JSON number)."""
    if isinstance(value, bool | float):
        raise SourceError("invalid_response", f"{field} is not an exact number", transient=False)
    try:
        result = Decimal(str(value)) if isinstance(value, str | int) else value
    except InvalidOperation:
        raise SourceError("invalid_response", f"{field} is not a number", transient=False) from None
    if not isinstance(result, Decimal) or not result.is_finite():
        raise SourceError("invalid_response", f"{field} is not a finite number", transient=False)
    return result


def maybe_decimal(value, field: str) -> Decimal | None:
    return None if value is None else decimal(value, field)


def last4(number: str | None) -> str | None:
    """Only the last four characters of an account number are ever kept."""
    return str(number)[-4:] if number else None


def shape_error(where: str) -> SourceError:
    return SourceError("invalid_response", f"unexpected shape of {where}", transient=False)


def merged(holdings) -> list[Holding]:
    """One holding per (asset type, symbol): an institution or a file listing a symbol twice
    (long and short lots) gets its lines added up."""
    by_key: dict[tuple[str, str], Holding] = {}
    for h in holdings:
        prior = by_key.get((h.asset_type, h.symbol))
        if prior is not None:
            h = replace(
                prior,
                description=prior.description or h.description,
                quantity=prior.quantity + h.quantity,
                market_value=prior.market_value + h.market_value,
                cost_basis=(
                    prior.cost_basis + h.cost_basis
                    if prior.cost_basis is not None and h.cost_basis is not None
                    else None
                ),
            )
        by_key[(h.asset_type, h.symbol)] = h
    return list(by_key.values())
