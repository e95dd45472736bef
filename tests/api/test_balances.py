"""Balance history per period and net worth per currency, from snapshots on the real PostgreSQL."""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select, text

from dashtam_models import Account, BalanceSnapshot, User
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in
from tests.fixtures.factories import create_connection, create_provider

DAY1 = datetime(2026, 10, 1, tzinfo=UTC)


async def accounts_of(session, email_headers, client, *currencies) -> list[Account]:
    me = (await client.get("/api/v1/auth/me", headers=email_headers)).json()
    user = await session.get(User, me["id"])
    connection = await create_connection(
        session, provider=await create_provider(session, user=user)
    )
    made = []
    for i, currency in enumerate(currencies):
        account = Account(
            user_id=user.id,
            connection_id=connection.id,
            external_id=f"A{i}",
            account_type="checking",
            name=f"Account {i}",
            currency=currency,
            synced_at=DAY1,
        )
        session.add(account)
        made.append(account)
    await session.flush()
    return made


def snapshot(account, when, amount) -> BalanceSnapshot:
    return BalanceSnapshot(
        account_id=account.id, as_of=when, currency=account.currency, current=Decimal(amount)
    )


async def test_balances_are_the_last_snapshot_of_each_period(client, session):
    headers = await signed_in(client, "history")
    (account,) = await accounts_of(session, headers, client, "USD")
    session.add_all(
        [
            snapshot(account, DAY1 + timedelta(hours=1), "100.00"),
            snapshot(account, DAY1 + timedelta(hours=23), "110.50"),  # the day's last
            snapshot(account, DAY1 + timedelta(days=2, hours=5), "90.25"),
            snapshot(account, DAY1 + timedelta(days=40), "1000.01"),
        ]
    )
    await session.flush()
    path = f"/api/v1/accounts/{account.id}/balances"
    daily = (
        await client.get(path, headers=headers, params={"from": "2026-10-01", "to": "2026-10-05"})
    ).json()
    assert [(p["period"], p["current"]) for p in daily["items"]] == [
        ("2026-10-01", "110.50"),
        ("2026-10-03", "90.25"),
    ]
    monthly = (
        await client.get(
            path,
            headers=headers,
            params={"from": "2026-10-01", "to": "2026-11-30", "interval": "month"},
        )
    ).json()
    assert [(p["period"], p["current"]) for p in monthly["items"]] == [
        ("2026-10-01", "90.25"),
        ("2026-11-01", "1000.01"),
    ]

    stranger = await signed_in(client, "history-stranger")
    is_problem(await client.get(path, headers=stranger), 404)
    # A long series comes a page of 1,000 periods at a time (tests/api/test_contract_cases.py);
    # `to` before `from` is an empty range.
    too_long = await client.get(
        path, headers=headers, params={"from": "2000-01-01", "to": "2026-01-01"}
    )
    assert too_long.json()["next_from"] == "2002-09-27"
    backwards = await client.get(
        path, headers=headers, params={"from": "2026-02-01", "to": "2026-01-01"}
    )
    assert backwards.status_code == 200
    assert backwards.json()["items"] == []


async def test_net_worth_sums_each_currency_carrying_the_last_balance_forward(client, session):
    headers = await signed_in(client, "networth")
    usd1, usd2, eur = await accounts_of(session, headers, client, "USD", "USD", "EUR")
    session.add_all(
        [
            snapshot(usd1, DAY1 + timedelta(hours=10), "100.10"),
            snapshot(usd2, DAY1 + timedelta(hours=11), "0.01"),
            snapshot(eur, DAY1 + timedelta(hours=12), "50.00"),
            # Day 2: only usd1 synced; usd2 counts with what it last had.
            snapshot(usd1, DAY1 + timedelta(days=1, hours=9), "200.20"),
        ]
    )
    usd2.closed_at = DAY1 + timedelta(days=2, hours=1)  # gone on day 3
    await session.flush()
    answer = await client.get(
        "/api/v1/net-worth", headers=headers, params={"from": "2026-09-30", "to": "2026-10-03"}
    )
    assert answer.status_code == 200, answer.text
    assert [
        (p["period"], p["currency"], p["total"], p["accounts"]) for p in answer.json()["items"]
    ] == [
        ("2026-10-01", "EUR", "50.00", 1),
        ("2026-10-01", "USD", "100.11", 2),
        ("2026-10-02", "EUR", "50.00", 1),
        ("2026-10-02", "USD", "200.21", 2),
        ("2026-10-03", "EUR", "50.00", 1),
        ("2026-10-03", "USD", "200.20", 1),
    ]
    weekly = await client.get(
        "/api/v1/net-worth",
        headers=headers,
        params={"from": "2026-10-01", "to": "2026-10-03", "interval": "week"},
    )
    # The ISO week of 2026-10-01 starts on Monday 2026-09-28; it ends with the last day asked.
    assert [(p["period"], p["currency"], p["total"]) for p in weekly.json()["items"]] == [
        ("2026-09-28", "EUR", "50.00"),
        ("2026-09-28", "USD", "200.20"),
    ]
    rows = await session.scalars(
        select(BalanceSnapshot.current).where(BalanceSnapshot.account_id == usd1.id)
    )
    assert sorted(rows) == [Decimal("100.10"), Decimal("200.20")]


# Net worth by definition: for each period, each open account's newest snapshot before the
# period's end, probed one account and period at a time (what the API computed before
# balance_days; the roll-up must agree with it on any history).
REFERENCE_NET_WORTH = text(
    """
WITH periods AS (
    SELECT p AS period_start, LEAST(p + CAST(:step AS text)::interval, :stop) AS period_end
      FROM generate_series(
             date_trunc(:unit, CAST(:start AS timestamptz) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
             CAST(:stop AS timestamptz) - interval '1 microsecond',
             CAST(:step AS text)::interval) AS p
)
SELECT (periods.period_start AT TIME ZONE 'UTC')::date AS period,
       s.currency, sum(s.current) AS total, count(*) AS accounts
  FROM periods
  JOIN accounts a ON a.user_id = :user_id
                 AND (a.closed_at IS NULL OR a.closed_at >= periods.period_end)
  JOIN LATERAL (
        SELECT b.currency, b.current FROM balance_snapshots b
         WHERE b.account_id = a.id AND b.as_of < periods.period_end
         ORDER BY b.as_of DESC LIMIT 1) s ON true
 GROUP BY periods.period_start, s.currency
 ORDER BY 1, 2
"""
)


async def test_net_worth_agrees_with_its_definition_on_a_random_history(client, session):
    """balance_days (kept by a trigger) and the carried-forward series against the probe of
    every account and period: days with several snapshots, gaps, snapshots written out of
    order, a closed account, an account that starts late, windows that start mid-history."""
    headers = await signed_in(client, "networth-random")
    accounts = await accounts_of(session, headers, client, "USD", "USD", "EUR", "USD")
    rng = random.Random(20261201)
    written = []
    for n, account in enumerate(accounts):
        start_day = 0 if n != 3 else 20  # the fourth starts late
        for day in range(start_day, 70):
            for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
                when = DAY1 + timedelta(days=day, seconds=rng.randrange(86400))
                written.append(snapshot(account, when, f"{rng.randrange(-5000, 900000) / 100:.2f}"))
    rng.shuffle(written)  # late snapshots of a day already folded must not win
    for batch in range(0, len(written), 40):
        session.add_all(written[batch : batch + 40])
        await session.flush()
    accounts[1].closed_at = DAY1 + timedelta(days=33, hours=7)
    await session.flush()
    user_id = accounts[0].user_id

    for first, last, unit in [
        ("2026-09-25", "2026-12-15", "day"),
        ("2026-10-17", "2026-11-20", "day"),
        ("2026-10-03", "2026-12-10", "week"),
        ("2026-09-01", "2026-12-31", "month"),
    ]:
        start = datetime.fromisoformat(first).replace(tzinfo=UTC)
        stop = datetime.fromisoformat(last).replace(tzinfo=UTC) + timedelta(days=1)
        expected = [
            (str(r.period), r.currency, f"{r.total}", r.accounts)
            for r in await session.execute(
                REFERENCE_NET_WORTH,
                {
                    "unit": unit,
                    "step": f"1 {unit}",
                    "start": start,
                    "stop": stop,
                    "user_id": user_id,
                },
            )
        ]
        answer = await client.get(
            "/api/v1/net-worth",
            headers=headers,
            params={"from": first, "to": last, "interval": unit},
        )
        assert answer.status_code == 200, answer.text
        got = [
            (p["period"], p["currency"], p["total"], p["accounts"]) for p in answer.json()["items"]
        ]
        assert got == expected, (first, last, unit)
        assert len(expected) > 5
