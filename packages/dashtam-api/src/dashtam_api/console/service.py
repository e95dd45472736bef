"""What the console's pages show, from the API's own services (no SQL here: each domain's
queries module holds its statements)."""

import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.accounts import history
from dashtam_api.accounts import service as accounts
from dashtam_api.connections import service as connections
from dashtam_api.console import charts
from dashtam_api.context import AppContext
from dashtam_api.providers import service as providers
from dashtam_api.sync import runs
from dashtam_api.transactions import service as transactions
from dashtam_api.transactions.schemas import TransactionQuery
from dashtam_core.database import Reader
from dashtam_models import User

# What fixes each status (the one action the overview offers).
FIXES = {
    "pending": "Connect it",
    "revoked": "Connect it again",
    "expired": "Reconnect",
    "error": "Reconnect",
}


async def net_worth(*, reader: Reader, user: User, interval: str) -> list[dict]:
    """Net worth per currency over the last 30 periods (the API's own series), each with its
    chart drawn here."""
    raw = json.loads(
        await history.net_worth(
            reader=reader, user_id=user.id, query=history.HistoryQuery(interval=interval)
        )
    )
    series: dict[str, list[tuple[str, Decimal]]] = defaultdict(list)
    for item in raw["items"]:
        series[item["currency"]].append((item["period"][:10], Decimal(str(item["total"]))))
    shown = []
    for currency, points in sorted(series.items()):
        first, last = points[0], points[-1]
        shown.append(
            {
                "currency": currency,
                "points": points,
                "chart": charts.line(
                    points,
                    key=f"worth-{currency.lower()}",
                    title=f"Net worth in {currency}, by {interval}",
                    description=f"From {first[1]:,} {currency} on {first[0]} to {last[1]:,} "
                    f"{currency} on {last[0]}.",
                ),
            }
        )
    return shown


async def overview(*, session: AsyncSession, reader: Reader, ctx: AppContext, user: User) -> dict:
    """The person's institutions with their accounts and balances, the connections that need
    them first, and the total per currency."""
    listed = json.loads(
        await providers.list_page(reader=reader, user_id=user.id, limit=100, offset=0)
    )
    held = (await accounts.page(session=session, user=user, limit=500, offset=0))["items"]
    by_provider: dict[str, list[dict]] = defaultdict(list)
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for account in held:
        by_provider[str(account["provider_id"])].append(account)
        balance = account["balance"]
        if balance is not None and account["closed_at"] is None and balance["current"] is not None:
            totals[account["currency"]] += Decimal(balance["current"])
    now = datetime.now(UTC)
    # A deadline is said as the connection.reauth_required webhook says it: within its hours.
    notice = timedelta(hours=ctx.settings.WEBHOOK_REAUTH_NOTICE_HOURS)
    institutions, attention = [], []
    for provider in listed["items"]:
        spec = ctx.registry.get(provider["provider_key"])
        state = await connections.status(
            session=session, settings=ctx.settings, user=user, provider_id=provider["id"]
        )
        institution = {
            "id": provider["id"],
            "alias": provider["alias"],
            "name": spec.name if spec else provider["provider_key"],
            "kind": spec.kind.value if spec else None,
            "status": state["status"],
            "synced_at": state["synced_at"],
            "sync_error": state["sync_error"],
            "accounts": by_provider.get(str(provider["id"]), []),
        }
        institutions.append(institution)
        due = state["reconnect_by"]
        if state["status"] in FIXES:
            reason = (
                state["error"] or state["sync_error"] or f"The connection is {state['status']}."
            )
            attention.append(institution | {"fix": FIXES[state["status"]], "reason": reason})
        elif due is not None and due < now + notice:
            attention.append(
                institution
                | {"fix": "Reconnect", "reason": f"Its access ends {due:%Y-%m-%d %H:%M} UTC."}
            )
    return {
        "institutions": institutions,
        "attention": attention,
        "totals": sorted(totals.items()),
    }


async def account_names(*, session: AsyncSession, user: User) -> dict[str, dict]:
    """The person's accounts by id (for a filter's choices and a row's account column)."""
    held = (await accounts.page(session=session, user=user, limit=500, offset=0))["items"]
    return {str(a["id"]): a for a in held}


async def transactions_page(
    *, reader: Reader, user: User, query: TransactionQuery, account_id: uuid.UUID | None
) -> dict:
    """One page of the person's transactions (of one account, or all), newest first."""
    raw = await transactions.page(
        reader=reader, user_id=user.id, query=query, account_id=account_id
    )
    return json.loads(raw)


async def transaction(*, reader: Reader, user: User, transaction_id: uuid.UUID) -> dict:
    return json.loads(
        await transactions.get(reader=reader, user_id=user.id, transaction_id=transaction_id)
    )


async def sync_runs(*, reader: Reader, user: User, provider_id, query) -> dict:
    """The provider's newest sync runs (the API's own page of them)."""
    return json.loads(
        await runs.page(reader=reader, user_id=user.id, provider_id=provider_id, query=query)
    )
