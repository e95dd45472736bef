"""The data APIs Dashtam can read, each mapped to the same shapes, Decimal end to end.

JSON numbers are parsed straight into Decimal (``parse_float=Decimal``): Schwab sends amounts
as JSON numbers, and a detour through float would already have changed them. A float never
appears; an amount that is not a number is refused, not guessed.
"""

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

import httpx

from dashtam_api import upstream
from dashtam_api.providers.registry import ProviderSpec
from dashtam_core.config import Settings


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
    def occurred_at(self) -> datetime:
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


@dataclass(frozen=True)
class Windows:
    """From when to read each account's transactions: ``since`` by the account's institution
    id (accounts read before), else the institution's whole history (``history_days``)."""

    since: Mapping[str, datetime]
    until: datetime

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
        raise DataAPIError(
            "invalid_response", f"{where} is not a timestamp", transient=False
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class DataAPIError(Exception):
    """The institution's data API failed; ``unauthorized`` means the access token was refused."""

    def __init__(self, error: str, description: str, *, transient: bool, unauthorized=False):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.transient = transient
        self.unauthorized = unauthorized


def decimal(value, field: str) -> Decimal:
    """An exact amount from what an institution sent (string, integer or JSON number)."""
    if isinstance(value, bool | float):
        raise DataAPIError("invalid_response", f"{field} is not an exact number", transient=False)
    try:
        result = Decimal(str(value)) if isinstance(value, str | int) else value
    except InvalidOperation:
        raise DataAPIError(
            "invalid_response", f"{field} is not a number", transient=False
        ) from None
    if not isinstance(result, Decimal) or not result.is_finite():
        raise DataAPIError("invalid_response", f"{field} is not a finite number", transient=False)
    return result


def maybe_decimal(value, field: str) -> Decimal | None:
    return None if value is None else decimal(value, field)


def last4(number: str | None) -> str | None:
    """Only the last four characters of an account number are ever kept."""
    return str(number)[-4:] if number else None


@dataclass(frozen=True)
class DataAPI:
    """An institution's data API as one account holder sees it: their access token on the
    shared pool, each read sent again on a transient failure (reads are idempotent)."""

    http: httpx.AsyncClient
    access_token: str
    settings: Settings

    async def get_json(self, url: str, **params):
        def send():
            return self.http.get(
                url,
                params=params or None,
                headers={
                    "Authorization": f"Bearer {self.access_token}",
                    "Accept": "application/json",
                },
            )

        try:
            response = await upstream.idempotent(self.settings, send)
        except httpx.TransportError as exc:
            raise DataAPIError(*upstream.transport_failure(exc), transient=True) from None
        if response.status_code == 401:
            raise DataAPIError(
                "invalid_token", "the access token was refused", transient=True, unauthorized=True
            )
        if response.status_code >= 400:
            error, transient = upstream.status_failure(response.status_code)
            raise DataAPIError(
                error, f"{url.split('?')[0]} answered {response.status_code}", transient=transient
            )
        try:
            return json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise DataAPIError(upstream.INVALID_RESPONSE, "not JSON", transient=False) from None


def _shape_error(where: str) -> DataAPIError:
    return DataAPIError("invalid_response", f"unexpected shape of {where}", transient=False)


SANDBOX_HISTORY_DAYS = 120


def _sandbox_transaction(raw: dict) -> TransactionData:
    kind = str(raw.get("type") or "other")
    return TransactionData(
        external_id=str(raw["id"]),
        status="pending" if raw.get("status") == "pending" else "posted",
        amount=decimal(raw["amount"], "amount"),
        description=str(raw.get("description") or ""),
        kind=kind if kind in KINDS else "other",
        institution_type=kind,
        transacted_at=timestamp(raw.get("transacted_at"), "transacted_at"),
        posted_at=timestamp(raw.get("posted"), "posted"),
        pending_external_id=raw.get("pending_id"),
        currency=str(raw.get("currency") or "USD"),
        payee=raw.get("payee"),
        memo=raw.get("memo"),
        symbol=raw.get("symbol"),
        asset_type=raw.get("asset_type"),
        quantity=maybe_decimal(raw.get("quantity"), "quantity"),
        price=maybe_decimal(raw.get("price"), "price"),
        fees=maybe_decimal(raw.get("fees"), "fees"),
    )


async def _sandbox_transactions(
    api: DataAPI, base: str, account_id: str, start: datetime, until: datetime
) -> tuple[TransactionData, ...]:
    found, page = [], 1
    while page:
        listed = await api.get_json(
            f"{base}/accounts/{account_id}/transactions",
            start=start.date().isoformat(),
            end=until.date().isoformat(),
            page=page,
        )
        found += [_sandbox_transaction(t) for t in listed["transactions"]]
        page = listed.get("next_page")
    return tuple(found)


async def fetch_sandbox(spec: ProviderSpec, api: DataAPI, windows: Windows) -> list[AccountData]:
    """The sandbox: GET /accounts (with balances), then each account's positions and its
    transactions since its window's start, page by page."""
    base = spec.api_base_url
    listing = await api.get_json(f"{base}/accounts")
    try:
        raw_accounts = list(listing["accounts"])
    except (KeyError, TypeError):
        raise _shape_error("the accounts list") from None
    accounts = []
    for raw in raw_accounts:
        try:
            held = await api.get_json(f"{base}/accounts/{raw['id']}/positions")
            start = windows.start(str(raw["id"]), SANDBOX_HISTORY_DAYS)
            activity = await _sandbox_transactions(api, base, str(raw["id"]), start, windows.until)
            balances = raw.get("balances") or {}
            accounts.append(
                AccountData(
                    external_id=str(raw["id"]),
                    account_type=str(raw.get("type") or "unknown"),
                    name=str(raw.get("name") or raw["id"]),
                    number_last4=last4(raw.get("number")),
                    currency=str(raw.get("currency") or "USD"),
                    balance=Balance(
                        current=decimal(balances["current"], "balances.current"),
                        available=maybe_decimal(balances.get("available"), "available"),
                        cash=maybe_decimal(balances.get("cash"), "cash"),
                        buying_power=maybe_decimal(balances.get("buying_power"), "buying_power"),
                    ),
                    positions=tuple(
                        Holding(
                            symbol=str(p["symbol"]),
                            asset_type=str(p.get("asset_type") or "unknown"),
                            description=p.get("description"),
                            quantity=decimal(p["quantity"], "quantity"),
                            price=maybe_decimal(p.get("price"), "price"),
                            market_value=decimal(p["market_value"], "market_value"),
                            cost_basis=maybe_decimal(p.get("cost_basis"), "cost_basis"),
                        )
                        for p in held["positions"]
                    ),
                    transactions=activity,
                    window=(start, windows.until),
                )
            )
        except (KeyError, TypeError):
            raise _shape_error("an account") from None
    return accounts


# Schwab's asset types, as Dashtam names them.
SCHWAB_ASSET_TYPES = {
    "EQUITY": "equity",
    "OPTION": "option",
    "MUTUAL_FUND": "mutual_fund",
    "FIXED_INCOME": "fixed_income",
    "CASH_EQUIVALENT": "cash_equivalent",
    "COLLECTIVE_INVESTMENT": "etf",
    "INDEX": "index",
    "CURRENCY": "currency",
}
PRICE_PLACES = Decimal("0.000001")


def _schwab_holding(raw: dict) -> Holding:
    instrument = raw["instrument"]
    quantity = decimal(raw.get("longQuantity", 0), "longQuantity") - decimal(
        raw.get("shortQuantity", 0), "shortQuantity"
    )
    market_value = decimal(raw["marketValue"], "marketValue")
    average = maybe_decimal(raw.get("averagePrice"), "averagePrice")
    # Schwab gives no price per position: derive it (rounded to 6 places, a display value).
    price = (market_value / quantity).quantize(PRICE_PLACES) if quantity else None
    asset_type = str(instrument.get("assetType") or "unknown")
    return Holding(
        symbol=str(instrument["symbol"]),
        asset_type=SCHWAB_ASSET_TYPES.get(asset_type, asset_type.lower()),
        description=instrument.get("description"),
        quantity=quantity,
        price=price,
        market_value=market_value,
        cost_basis=average * quantity if average is not None else None,
    )


# Schwab keeps a year of history and takes at most that per call; 60 days a call keeps each
# answer small (a year is 7 calls).
SCHWAB_HISTORY_DAYS = 365
SCHWAB_WINDOW_DAYS = 60
# The `types` parameter is required: every type there is.
SCHWAB_TYPES = (
    "TRADE,RECEIVE_AND_DELIVER,DIVIDEND_OR_INTEREST,ACH_RECEIPT,ACH_DISBURSEMENT,CASH_RECEIPT,"
    "CASH_DISBURSEMENT,ELECTRONIC_FUND,WIRE_OUT,WIRE_IN,JOURNAL,MEMORANDUM,MARGIN_CALL,"
    "MONEY_MARKET,SMA_ADJUSTMENT"
)
SCHWAB_KINDS = {
    "TRADE": "trade",
    "ACH_RECEIPT": "deposit",
    "CASH_RECEIPT": "deposit",
    "WIRE_IN": "deposit",
    "ACH_DISBURSEMENT": "withdrawal",
    "CASH_DISBURSEMENT": "withdrawal",
    "WIRE_OUT": "withdrawal",
    "ELECTRONIC_FUND": "transfer",
    "JOURNAL": "transfer",
    "RECEIVE_AND_DELIVER": "transfer",
}


def _schwab_time(value) -> str:
    """Schwab's query format: UTC, milliseconds, Z."""
    return (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    )


def _schwab_transaction(raw: dict) -> TransactionData | None:
    """One Schwab activity; None for one Schwab no longer counts (CANCELED, INVALID)."""
    status = str(raw.get("status") or "VALID").upper()
    if status not in ("VALID", "PENDING"):
        return None
    kind_of = str(raw.get("type") or "")
    description = str(raw.get("description") or kind_of)
    kind = SCHWAB_KINDS.get(kind_of, "other")
    if kind_of == "DIVIDEND_OR_INTEREST":
        kind = "interest" if "INTEREST" in description.upper() else "dividend"
    fees = Decimal(0)
    held = None
    for item in raw.get("transferItems") or ():
        instrument = item.get("instrument") or {}
        if item.get("feeType"):
            fees += abs(decimal(item.get("cost", 0), "transferItems.cost"))
        elif instrument.get("assetType") != "CURRENCY" and held is None:
            held = item
    symbol = asset_type = quantity = price = None
    if held is not None:
        instrument = held["instrument"]
        symbol = instrument.get("symbol")
        raw_type = str(instrument.get("assetType") or "unknown")
        asset_type = SCHWAB_ASSET_TYPES.get(raw_type, raw_type.lower())
        quantity = maybe_decimal(held.get("amount"), "transferItems.amount")
        price = maybe_decimal(held.get("price"), "transferItems.price")
    made = timestamp(raw.get("tradeDate") or raw.get("time"), "tradeDate")
    settled = timestamp(raw.get("settlementDate"), "settlementDate")
    return TransactionData(
        external_id=str(raw["activityId"]),
        status="pending" if status == "PENDING" else "posted",
        amount=decimal(raw["netAmount"], "netAmount"),
        description=description,
        kind=kind,
        institution_type=kind_of or None,
        transacted_at=made,
        posted_at=None if status == "PENDING" else timestamp(raw.get("time"), "time") or made,
        settlement_date=settled.date() if settled else None,
        symbol=symbol,
        asset_type=asset_type,
        quantity=quantity,
        price=price,
        fees=fees if fees or kind == "trade" else None,
    )


async def _schwab_transactions(
    api: DataAPI, base: str, account_hash: str, start: datetime, until: datetime
) -> tuple[TransactionData, ...]:
    found = []
    while start < until:
        end = min(start + timedelta(days=SCHWAB_WINDOW_DAYS), until)
        listed = await api.get_json(
            f"{base}/accounts/{account_hash}/transactions",
            startDate=_schwab_time(start),
            endDate=_schwab_time(end),
            types=SCHWAB_TYPES,
        )
        if not isinstance(listed, list):
            raise _shape_error("transactions")
        found += [t for t in map(_schwab_transaction, listed) if t is not None]
        start = end
    return tuple(found)


async def fetch_schwab(spec: ProviderSpec, api: DataAPI, windows: Windows) -> list[AccountData]:
    """Schwab Trader API: accountNumbers (number -> hashValue, the id every per-account path
    takes), every account with its positions in one call, then each account's transactions
    since its window's start, SCHWAB_WINDOW_DAYS a call."""
    base = spec.api_base_url
    numbers = await api.get_json(f"{base}/accounts/accountNumbers")
    accounts = await api.get_json(f"{base}/accounts", fields="positions")
    try:
        hashes = {str(n["accountNumber"]): str(n["hashValue"]) for n in numbers}
        result = []
        for entry in accounts:
            raw = entry["securitiesAccount"]
            number = str(raw["accountNumber"])
            if number not in hashes:
                raise _shape_error("accounts (an account without a hashValue)")
            balances = raw.get("currentBalances") or {}
            current = balances.get("liquidationValue")
            if current is None:
                current = (entry.get("aggregatedBalance") or {}).get("currentLiquidationValue")
            account_type = str(raw.get("type") or "unknown").lower()
            start = windows.start(hashes[number], SCHWAB_HISTORY_DAYS)
            activity = await _schwab_transactions(api, base, hashes[number], start, windows.until)
            result.append(
                AccountData(
                    external_id=hashes[number],
                    account_type=account_type,
                    name=f"Schwab {account_type} …{last4(number)}",
                    number_last4=last4(number),
                    currency="USD",
                    balance=Balance(
                        current=decimal(current, "liquidationValue"),
                        available=maybe_decimal(balances.get("availableFunds"), "availableFunds"),
                        cash=maybe_decimal(balances.get("cashBalance"), "cashBalance"),
                        buying_power=maybe_decimal(balances.get("buyingPower"), "buyingPower"),
                    ),
                    positions=tuple(_schwab_holding(p) for p in raw.get("positions") or ()),
                    transactions=activity,
                    window=(start, windows.until),
                )
            )
    except (KeyError, TypeError):
        raise _shape_error("accounts") from None
    return result


DATA_APIS: dict[str, Callable[[ProviderSpec, DataAPI, Windows], Awaitable[list[AccountData]]]] = {
    "sandbox": fetch_sandbox,
    "schwab": fetch_schwab,
}
