"""The sandbox institution (dashtam_api/sandbox, served by this API in development and testing):
GET /accounts (with balances), then each account's positions and its transactions since its
window's start, page by page."""

from datetime import datetime

import httpx

from dashtam_api.sources.http import DataAPI
from dashtam_api.sources.protocol import Kind, Limits, Reading
from dashtam_api.sources.shapes import (
    KINDS,
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

name = "sandbox"
kind = Kind.OAUTH2
limits = Limits(history_days=120)


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


async def _accounts(api: DataAPI, base: str, windows: Windows) -> list[AccountData]:
    """The sandbox: GET /accounts (with balances), then each account's positions and its
    transactions since its window's start, page by page."""
    listing = await api.get_json(f"{base}/accounts")
    try:
        raw_accounts = list(listing["accounts"])
    except (KeyError, TypeError):
        raise shape_error("the accounts list") from None
    accounts = []
    for raw in raw_accounts:
        try:
            held = await api.get_json(f"{base}/accounts/{raw['id']}/positions")
            start = windows.start(str(raw["id"]), limits.history_days)
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
            raise shape_error("an account") from None
    return accounts
