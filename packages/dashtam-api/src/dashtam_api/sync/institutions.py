"""The data APIs Dashtam can read, each mapped to the same shapes, Decimal end to end.

JSON numbers are parsed straight into Decimal (``parse_float=Decimal``): Schwab sends amounts
as JSON numbers, and a detour through float would already have changed them. A float never
appears; an amount that is not a number is refused, not guessed.
"""

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
class AccountData:
    external_id: str
    account_type: str
    name: str
    number_last4: str | None
    currency: str
    balance: Balance | None
    positions: tuple[Holding, ...]


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


async def fetch_sandbox(spec: ProviderSpec, api: DataAPI) -> list[AccountData]:
    """The sandbox: GET /accounts (with balances), then /accounts/{id}/positions for each."""
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


async def fetch_schwab(spec: ProviderSpec, api: DataAPI) -> list[AccountData]:
    """Schwab Trader API: accountNumbers (number -> hashValue, the id every per-account path
    takes), then every account with its positions in one call."""
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
                )
            )
    except (KeyError, TypeError):
        raise _shape_error("accounts") from None
    return result


DATA_APIS: dict[str, Callable[[ProviderSpec, DataAPI], Awaitable[list[AccountData]]]] = {
    "sandbox": fetch_sandbox,
    "schwab": fetch_schwab,
}
