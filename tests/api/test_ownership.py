"""Every authenticated read refuses a person who may no longer sign in, and another person's row.

The operations come from the app's own OpenAPI document: every GET behind the bearer scheme,
so a new route is held to the same rules without being named here. Its path ids are filled
with rows of one person (``owned``: a route naming an id this file has no row for fails, and
asks for one). Then:

- the owner reads each (200: the rows are real, whatever the other answers mean);
- another person gets 404 for each id-taking one (as if the row did not exist), and sees
  none of the owner's ids in the others;
- once the owner is deactivated (or deleted), each answers 401 with the same problem deps.get_current_user
  gives (errors.ACCOUNT_GONE): the raw statements check the person themselves
  (ownership_queries), the ORM routes through deps.
"""

import re
from decimal import Decimal

import pytest
from sqlalchemy import text

from dashtam_api.errors import ACCOUNT_GONE
from dashtam_models import (
    BalanceSnapshot,
    Import,
    Position,
    ProviderConnection,
    SyncRun,
    Transaction,
)
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in
from tests.api.test_webhooks import registered
from tests.helpers import account_of

PARAMETER = re.compile(r"\{(\w+)\}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def bearer_reads(app) -> list[str]:
    """The path of every GET operation of the document behind the bearer scheme."""
    return sorted(
        path
        for path, operations in app.openapi()["paths"].items()
        if any("HTTPBearer" in s for s in operations.get("get", {}).get("security", ()))
    )


async def owned(client, session, headers) -> dict[str, str]:
    """A row of each kind a read can name, all the person's: path parameter -> id."""
    account = await account_of(
        client, session, headers, alias="Owned",
        external_id="own-1", account_type="brokerage", name="Owned",
    )  # fmt: skip
    user_id, now = account.user_id, account.synced_at
    transaction = Transaction(
        user_id=user_id,
        account_id=account.id,
        external_id="t-1",
        status="posted",
        occurred_at=now,
        posted_at=now,
        amount=Decimal("-1.50"),
        currency="USD",
        description="COFFEE",
        kind="card",
    )
    session.add_all(
        [
            transaction,
            BalanceSnapshot(account_id=account.id, as_of=now, current=Decimal("10.00")),
            Position(
                account_id=account.id,
                symbol="AAPL",
                asset_type="equity",
                quantity=Decimal(1),
                market_value=Decimal(200),
                currency="USD",
                as_of=now,
            ),
            SyncRun(
                connection_id=account.connection_id,
                trigger="manual",
                status="running",
                started_at=now,
            ),
        ]
    )
    imported = Import(user_id=user_id, account_id=account.id, status="done", format="ofx")
    session.add(imported)
    await session.flush()
    endpoint = await registered(client, headers, "https://example.com/owned")
    return {
        "provider_id": str(
            (await session.get(ProviderConnection, account.connection_id)).provider_id
        ),
        "account_id": str(account.id),
        "transaction_id": str(transaction.id),
        "endpoint_id": endpoint["id"],
        "import_id": str(imported.id),
    }


def filled(path: str, ids: dict[str, str]) -> str:
    missing = [name for name in PARAMETER.findall(path) if name not in ids]
    assert not missing, f"{path}: give owned() a row of the person's for {missing}"
    return PARAMETER.sub(lambda m: ids[m.group(1)], path)


async def test_every_read_answers_its_owner_and_nobody_else(app, client, session):
    owner = await signed_in(client, "owner")
    other = await signed_in(client, "other")
    ids = await owned(client, session, owner)
    # Both administrators: the administrators' reads are held to the same rules.
    await session.execute(text("UPDATE users SET is_admin = true"))
    paths = bearer_reads(app)
    with_ids = [p for p in paths if PARAMETER.search(p)]
    # What this test reaches today, at least; a new read adds itself.
    assert {
        "/api/v1/accounts/{account_id}",
        "/api/v1/accounts/{account_id}/transactions",
        "/api/v1/accounts/{account_id}/transactions/export",
        "/api/v1/accounts/{account_id}/balances",
        "/api/v1/accounts/{account_id}/positions",
        "/api/v1/transactions/{transaction_id}",
        "/api/v1/providers/{provider_id}",
        "/api/v1/providers/{provider_id}/accounts",
        "/api/v1/providers/{provider_id}/authorization",
        "/api/v1/providers/{provider_id}/sync-runs",
    } <= set(with_ids)
    assert {"/api/v1/transactions", "/api/v1/accounts", "/api/v1/providers"} <= set(paths)

    for path in paths:
        answer = await client.get(filled(path, ids), headers=owner)
        assert answer.status_code == 200, (path, answer.text)

    for path in paths:
        answer = await client.get(filled(path, ids), headers=other)
        if path in with_ids:
            is_problem(answer, 404)
        else:
            assert answer.status_code == 200, (path, answer.text)
            assert not set(ids.values()) & set(UUID.findall(answer.text)), path


@pytest.mark.parametrize("change", ["UPDATE users SET is_active = false", "DELETE FROM users"])
async def test_every_read_refuses_a_person_who_may_not_sign_in(app, client, session, change):
    """Deactivated or gone, with rows of their own or not: the same 401 everywhere (never a
    404 that would tell whether a row exists)."""
    owner = await signed_in(client, "gone")
    ids = await owned(client, session, owner)
    await session.execute(text(change))
    for path in bearer_reads(app):
        problem = is_problem(await client.get(filled(path, ids), headers=owner), 401)
        assert problem["detail"] == ACCOUNT_GONE, path
