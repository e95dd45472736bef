"""Ingesting transactions: a first read of N into PostgreSQL, and the same window read again.

What is measured is the sync's write step for one account, exactly as a sync runs it
(``dashtam_api.sync.transactions.reconcile`` in one transaction, committed): the listing already
parsed, so the figure is Dashtam's and PostgreSQL's, not an institution's. The re-read must
write nothing (the counts say so, and every row's ``xmin`` is checked unchanged) and take at most
a fifth of the first read's time.

Set-up: a scratch clone of the test template; per run the table emptied first. The listing is
deterministic: a year of card purchases, deposits, transfers and trades with fees, some pending.
"""

import asyncio
import shutil
import ssl
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from bench import api as api_bench
from bench.scratch import scratch_database, serve_api
from dashtam_api.accounts import history
from dashtam_api.accounts import queries as account_queries
from dashtam_api.cursors import encode_cursor
from dashtam_api.sources.shapes import TransactionData
from dashtam_api.sync.transactions import reconcile
from dashtam_api.transactions.queries import item_lateral, page_query
from dashtam_api.transactions.schemas import TransactionQuery
from dashtam_core.database import create_engine
from infra.errors import InfraError
from infra.layout import Layout

KINDS = ("card", "card", "card", "deposit", "transfer", "trade", "dividend", "fee")


def listing(count: int, now: datetime) -> tuple[TransactionData, ...]:
    """``count`` transactions over the year before ``now``; the newest hundred pending."""
    made = []
    for i in range(count):
        when = now - timedelta(seconds=(count - i) * 365 * 86400 // count)
        kind = KINDS[i % len(KINDS)]
        pending = i >= count - 100
        trade = kind == "trade"
        made.append(
            TransactionData(
                external_id=f"T{i:08d}",
                status="pending" if pending else "posted",
                amount=Decimal(-((i * 7919) % 100_000)) / 100
                if kind != "deposit"
                else Decimal("2650.00"),
                description=f"MERCHANT {i % 997} #{i % 10_000:04d} CITY ST",
                kind=kind,
                transacted_at=when,
                posted_at=None if pending else when + timedelta(days=1),
                payee=f"Merchant {i % 997}",
                institution_type=kind.upper(),
                symbol="VTI" if trade else None,
                asset_type="etf" if trade else None,
                quantity=Decimal(i % 50 + 1) if trade else None,
                price=Decimal("267.92") if trade else None,
                fees=Decimal("4.95") if trade else None,
            )
        )
    return tuple(made)


async def _account(sessions) -> tuple[uuid.UUID, uuid.UUID]:
    async with sessions() as session:
        user_id = await session.scalar(
            text(
                "INSERT INTO users (email, name, password_hash) "
                "VALUES ('bench@example.com', 'Bench', 'x') RETURNING id"
            )
        )
        provider_id = await session.scalar(
            text(
                "INSERT INTO providers (user_id, provider_key, alias) "
                "VALUES (:u, 'sandbox', 'Bench') RETURNING id"
            ),
            {"u": user_id},
        )
        connection_id = await session.scalar(
            text("INSERT INTO provider_connections (provider_id) VALUES (:p) RETURNING id"),
            {"p": provider_id},
        )
        account_id = await session.scalar(
            text(
                "INSERT INTO accounts (user_id, connection_id, external_id, account_type, name, "
                "synced_at) VALUES (:u, :c, 'BENCH-1', 'brokerage', 'Bench', now()) RETURNING id"
            ),
            {"u": user_id, "c": connection_id},
        )
        await session.commit()
    return user_id, account_id


async def _read(sessions, user_id, account_id, listed, window) -> tuple[float, object]:
    started = time.perf_counter()
    async with sessions() as session:
        counts = await reconcile(
            session,
            user_id=user_id,
            account_id=account_id,
            listed=listed,
            window=window,
            match_days=7,
        )
        await session.commit()
    return time.perf_counter() - started, counts


async def _measure(settings, url, *, repeat: int, count: int) -> dict[str, list[float]]:
    engine = create_engine(settings.model_copy(update={"DATABASE_URL": url}), pool_size=2)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    samples: dict[str, list[float]] = {"first": [], "again": []}
    try:
        user_id, account_id = await _account(sessions)
        now = datetime.now(UTC)
        listed = listing(count, now)
        window = (now - timedelta(days=366), now)
        for _ in range(repeat):
            async with engine.begin() as conn:
                await conn.execute(text("TRUNCATE transactions"))
            first, counts = await _read(sessions, user_id, account_id, listed, window)
            if (counts.added, counts.modified, counts.removed) != (count, 0, 0):
                raise InfraError(f"the first read counted {counts}, not {count} added")
            async with engine.connect() as conn:
                before = (
                    await conn.execute(text("SELECT sum(xmin::text::bigint) FROM transactions"))
                ).scalar()
            again, counts = await _read(sessions, user_id, account_id, listed, window)
            async with engine.connect() as conn:
                after = (
                    await conn.execute(text("SELECT sum(xmin::text::bigint) FROM transactions"))
                ).scalar()
                rows = (await conn.execute(text("SELECT count(*) FROM transactions"))).scalar()
            if (counts.added, counts.modified, counts.removed) != (0, 0, 0) or before != after:
                raise InfraError(f"reading the same window again wrote rows ({counts})")
            if rows != count:
                raise InfraError(f"{rows} rows after two reads of {count} transactions")
            samples["first"].append(first)
            samples["again"].append(again)
            print(f"  first read {first:.2f} s, again {again:.2f} s", flush=True)
    finally:
        await engine.dispose()
    return samples


def run(*, repeat: int, count: int) -> None:
    with scratch_database(Layout(), "benchtx") as (template, url):
        samples = asyncio.run(_measure(template, url, repeat=repeat, count=count))
    first, again = (statistics.median(samples[k]) for k in ("first", "again"))
    print()
    print(f"Ingesting {count:,} transactions of one account (median of {repeat} runs):")
    print(f"{'':<34} {'seconds':>8} {'transactions/s':>15}")
    print(f"{'first read (all new)':<34} {first:>8.2f} {count / first:>15,.0f}")
    print(f"{'same window again (0 rows written)':<34} {again:>8.2f} {count / again:>15,.0f}")
    print(f"again / first: {again / first:.2f} (target <= 0.20); first read target >= 10,000/s")


# --- reads: one API worker against 1,000,000 transactions over 10,000 accounts --------------

OTHER_PEOPLE = 499  # besides the one measured; 20 accounts each, like theirs: 10,000 accounts
ACCOUNTS_EACH = 20
THEIRS_PER_ACCOUNT = 3000  # 60,000: more than 1,000 pages of 50
OTHERS_PER_ACCOUNT = 94  # 938,120: a million in all
PAGE = 50

SEED = [
    """INSERT INTO users (email, name)
       SELECT 'bench-reads-' || g || '@example.com', 'Bench ' || g
         FROM generate_series(1, CAST(:others AS integer)) g""",
    """INSERT INTO providers (user_id, provider_key, alias)
       SELECT id, 'sandbox', 'Bench reads' FROM users
        WHERE email LIKE 'bench-reads-%' OR id = CAST(:person AS uuid)""",
    """INSERT INTO provider_connections (provider_id, status)
       SELECT id, 'active' FROM providers WHERE alias = 'Bench reads'""",
    """INSERT INTO accounts (user_id, connection_id, external_id, account_type, name, synced_at)
       SELECT p.user_id, c.id, 'A' || n, 'checking', 'Account ' || n, now()
         FROM providers p JOIN provider_connections c ON c.provider_id = p.id
        CROSS JOIN generate_series(1, CAST(:accounts_each AS integer)) n
        WHERE p.alias = 'Bench reads'""",
    # A year of each account's activity, evenly spread, a few minutes apart between accounts;
    # each row with its JSON, as the sync writes it.
    f"""INSERT INTO transactions (id, user_id, account_id, external_id, status, occurred_at,
                                 posted_at, transacted_at, settlement_date, amount, currency,
                                 description, payee, memo, kind, institution_type, symbol,
                                 asset_type, quantity, price, fees, pending_external_id,
                                 import_id, item_json)
       SELECT s.*, row_to_json(item)::text FROM (
       SELECT gen_random_uuid() AS id, a.user_id, a.id AS account_id, 'T' || n AS external_id,
              'posted' AS status, t AS occurred_at, t AS posted_at,
              t - interval '1 day' AS transacted_at, NULL::date AS settlement_date,
              -((n * 7919) % 100000) / 100.0 AS amount, 'USD' AS currency,
              'MERCHANT ' || (n % 997) || ' CITY ST' AS description,
              'Merchant ' || (n % 997) AS payee, NULL AS memo, 'card' AS kind,
              NULL AS institution_type, NULL AS symbol, NULL AS asset_type,
              NULL::numeric AS quantity, NULL::numeric AS price, NULL::numeric AS fees,
              NULL AS pending_external_id, NULL::uuid AS import_id
         FROM accounts a
        CROSS JOIN LATERAL generate_series(
              1, CASE WHEN a.user_id = CAST(:person AS uuid) THEN CAST(:theirs AS integer) ELSE CAST(:others_each AS integer) END) n
        CROSS JOIN LATERAL (
              SELECT now() - n * (interval '365 days' / CASE WHEN a.user_id = CAST(:person AS uuid)
                                  THEN CAST(:theirs AS integer) ELSE CAST(:others_each AS integer) END)
                     - (abs(hashtext(a.id::text)) % 3600) * interval '1 second' AS t) moment
       ) s {item_lateral("s")}""",  # noqa: S608 (fixed fragments)
    # Their 20 accounts: a snapshot every hour for a year (175,200).
    """INSERT INTO balance_snapshots (account_id, as_of, currency, current)
       SELECT a.id, date_trunc('hour', now()) - h * interval '1 hour', 'USD',
              1000 + (h % 500) + (abs(hashtext(a.id::text)) % 100)
         FROM accounts a CROSS JOIN generate_series(0, 8759) h
        WHERE a.user_id = CAST(:person AS uuid)""",
    # Everyone else's accounts: a month of daily snapshots (299,400), so that a plan reading
    # balance_days by day for all accounts, not by account, shows.
    """INSERT INTO balance_snapshots (account_id, as_of, currency, current)
       SELECT a.id, date_trunc('day', now()) - d * interval '1 day', 'USD', 500 + d
         FROM accounts a CROSS JOIN generate_series(0, 29) d
        WHERE a.user_id <> CAST(:person AS uuid)""",
    "ANALYZE",
]
NTH_ROW = text(
    """SELECT occurred_at, id FROM transactions WHERE user_id = :person
        ORDER BY occurred_at DESC, id DESC OFFSET :skip LIMIT 1"""
)


async def _seed(url, settings, person_id: uuid.UUID) -> dict:
    engine = create_engine(settings.model_copy(update={"DATABASE_URL": url}), pool_size=1)
    params = {
        "person": person_id,
        "others": OTHER_PEOPLE,
        "accounts_each": ACCOUNTS_EACH,
        "theirs": THEIRS_PER_ACCOUNT,
        "others_each": OTHERS_PER_ACCOUNT,
    }
    try:
        started = time.perf_counter()
        async with engine.connect() as conn:
            for statement in SEED:
                async with conn.begin():
                    used = {k: v for k, v in params.items() if f":{k}" in statement}
                    await conn.execute(text(statement), used)
            counts = (
                await conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM transactions), "
                        "(SELECT count(*) FROM accounts), "
                        "(SELECT count(*) FROM transactions WHERE user_id = :p), "
                        "(SELECT count(*) FROM balance_snapshots)"
                    ),
                    {"p": person_id},
                )
            ).one()
            deep = (
                await conn.execute(NTH_ROW, {"person": person_id, "skip": PAGE * 999 - 1})
            ).one()
            account_id = await conn.scalar(
                text("SELECT id FROM accounts WHERE user_id = :p ORDER BY id LIMIT 1"),
                {"p": person_id},
            )
            plans = await _plans(conn, person_id, account_id, deep)
        print(
            f"  seeded {counts[0]:,} transactions over {counts[1]:,} accounts ({counts[2]:,} of "
            f"the person measured), {counts[3]:,} balance snapshots in "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
    finally:
        await engine.dispose()
    return {
        "cursor": encode_cursor(deep.occurred_at, deep.id),
        "account_id": account_id,
        "plans": plans,
        "rows": counts[0],
    }


async def _plans(conn, person_id, account_id, deep) -> dict[str, str]:
    """EXPLAIN ANALYZE of the statements the endpoints run, with their parameters."""
    deep_cursor = encode_cursor(deep.occurred_at, deep.id)
    year = history.HistoryQuery(**{"from": date_of(-364), "to": date_of(0)})
    start, stop, _next_from = year.bounds()  # a year by day: one page of periods
    statements = {
        "first page": page_query(person_id, TransactionQuery()),
        "1,000th page": page_query(person_id, TransactionQuery(cursor=deep_cursor)),
        "net worth, a year by day": (
            account_queries.NET_WORTH,
            [person_id, "day", account_queries.STEP["day"], start, stop],
        ),
        "balances, a year by day": (
            account_queries.BALANCES,
            [person_id, account_id, "day", start, stop],
        ),
    }
    driver = (await conn.get_raw_connection()).driver_connection
    plans = {}
    for label, (sql, args) in statements.items():
        rows = await driver.fetch(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", *args)
        plans[label] = "\n".join(r[0] for r in rows)
    return plans


def date_of(days: int):
    return (datetime.now(UTC) + timedelta(days=days)).date()


def reads(*, duration: int, connections: int) -> None:
    """Seed a scratch database with a million transactions, serve it with one API worker and
    measure the reads with wrk; print the plans (docs/performance.md keeps them)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise InfraError(api_bench.WRK_MISSING)
    layout = Layout()
    with scratch_database(layout, "benchreads") as (template, url):
        port = api_bench._free_port()
        base = f"https://localhost:{port}"
        overrides = {
            "DATABASE_URL": url.render_as_string(hide_password=False),
            "API_BASE_URL": base,
            "BACKGROUND_JOBS_ENABLED": "false",
        }
        with serve_api(layout, pid_name="bench-reads", port=port, overrides=overrides):
            tls = ssl.create_default_context(cafile=str(layout.ca_file))
            login = {"email": "bench-reads@example.com", "password": uuid.uuid4().hex}
            with httpx.Client(base_url=base, verify=tls, timeout=60) as http:
                person_id = http.post("/api/v1/auth/register", json=login).json()["id"]
                token = http.post("/api/v1/auth/login", json=login).json()["access_token"]
            seeded = asyncio.run(_seed(url, template, uuid.UUID(person_id)))
            auth = {"Authorization": f"Bearer {token}"}
            year = f"from={date_of(-364)}&to={date_of(0)}&interval=day"
            endpoints = {
                "first page of 50": f"/api/v1/transactions?limit={PAGE}",
                "1,000th page of 50 (cursor)": (
                    f"/api/v1/transactions?limit={PAGE}&cursor={seeded['cursor']}"
                ),
                "net worth, a year by day": f"/api/v1/net-worth?{year}",
                "an account's balances, a year by day": (
                    f"/api/v1/accounts/{seeded['account_id']}/balances?{year}"
                ),
            }
            # As one person meets it (one client), and under load (``connections`` clients).
            alone = api_bench._Load(wrk, connections=1)
            loaded = api_bench._Load(wrk, connections=connections)
            measured = {
                label: (
                    alone.get(f"{base}{path}", label, headers=auth, duration=duration),
                    loaded.get(f"{base}{path}", label, headers=auth, duration=duration),
                )
                for label, path in endpoints.items()
            }
    print()
    print(
        f"Reads, one API worker, {seeded['rows']:,} transactions over 10,000 accounts "
        f"(wrk -d{duration}s; p50/p99 in ms):"
    )
    print(f"{'':<38} {'one client':>20}   {f'{connections} clients':>26}")
    print(f"{'':<38} {'p50':>9} {'p99':>10}   {'req/s':>8} {'p50':>8} {'p99':>8}")
    for label, (one, many) in measured.items():
        print(
            f"{label:<38} {one.p50_ms:>9.2f} {one.p99_ms:>10.2f}   "
            f"{many.rps:>8.0f} {many.p50_ms:>8.2f} {many.p99_ms:>8.2f}"
        )
    first, deep = measured["first page of 50"][0], measured["1,000th page of 50 (cursor)"][0]
    print(
        f"1,000th page / first page, one client: p50 {deep.p50_ms / first.p50_ms:.2f}x, "
        f"p99 {deep.p99_ms / first.p99_ms:.2f}x (target <= 1.5x). Targets: a page p99 < 25 ms, "
        "net worth < 50 ms"
    )
    for label, plan in seeded["plans"].items():
        print(f"\nEXPLAIN ANALYZE, {label}:\n{plan}")
