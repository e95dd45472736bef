"""Charles Schwab's Trader API, mapped to Dashtam's shapes (amounts as JSON numbers, parsed
straight into Decimal)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from dashtam_api.sources.http import DataAPI
from dashtam_api.sources.protocol import Kind, Limits, Reading
from dashtam_api.sources.shapes import (
    AccountData,
    Balance,
    Holding,
    TransactionData,
    Windows,
    decimal,
    last4,
    maybe_decimal,
    shape_error,
    timestamp,
)
from dashtam_core.config import Settings

name = "schwab"
kind = Kind.OAUTH2


# The operator's institution (its URLs are configuration), read on the shared pool.
person_named_servers = False


def requests_for(windows: Windows) -> None:
    """No daily budget to keep: not counted ahead."""
    return None


async def read(
    *,
    base_url: str | None,
    credential: str,
    http: httpx.AsyncClient,
    settings: Settings,
    windows: Windows,
) -> Reading:
    api = DataAPI(http, credential, settings)
    return Reading(await _accounts(api, base_url, windows))


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
limits = Limits(history_days=SCHWAB_HISTORY_DAYS, window_days=SCHWAB_WINDOW_DAYS)
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
            raise shape_error("transactions")
        found += [t for t in map(_schwab_transaction, listed) if t is not None]
        start = end
    return tuple(found)


async def _accounts(api: DataAPI, base: str, windows: Windows) -> list[AccountData]:
    """Schwab Trader API: accountNumbers (number -> hashValue, the id every per-account path
    takes), every account with its positions in one call, then each account's transactions
    since its window's start, SCHWAB_WINDOW_DAYS a call."""
    numbers = await api.get_json(f"{base}/accounts/accountNumbers")
    accounts = await api.get_json(f"{base}/accounts", fields="positions")
    try:
        hashes = {str(n["accountNumber"]): str(n["hashValue"]) for n in numbers}
        result = []
        for entry in accounts:
            raw = entry["securitiesAccount"]
            number = str(raw["accountNumber"])
            if number not in hashes:
                raise shape_error("accounts (an account without a hashValue)")
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
        raise shape_error("accounts") from None
    return result
