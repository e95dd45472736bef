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
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from dashtam_api.sync.institutions import TransactionData
from dashtam_api.sync.transactions import reconcile
from dashtam_core.config import TestSettings, load_settings
from dashtam_core.database import create_engine
from dashtam_core.test_databases import clone_database, clone_name, drop_database
from infra import workflows
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
    layout = Layout()
    with workflows.test_servers(layout):
        template = load_settings(TestSettings, layout.test_env_file)
        name = clone_name(template.database_name, f"benchtx{uuid.uuid4().hex[:6]}")
        url = asyncio.run(
            clone_database(
                template_url=template.database_url,
                name=name,
                environment=template.ENVIRONMENT,
                dev_database_name=template.DEV_DATABASE_NAME,
                project_id=template.PROJECT_ID,
            )
        )
        try:
            samples = asyncio.run(_measure(template, url, repeat=repeat, count=count))
        finally:
            asyncio.run(drop_database(url=template.database_url, name=name))
    first, again = (statistics.median(samples[k]) for k in ("first", "again"))
    print()
    print(f"Ingesting {count:,} transactions of one account (median of {repeat} runs):")
    print(f"{'':<34} {'seconds':>8} {'transactions/s':>15}")
    print(f"{'first read (all new)':<34} {first:>8.2f} {count / first:>15,.0f}")
    print(f"{'same window again (0 rows written)':<34} {again:>8.2f} {count / again:>15,.0f}")
    print(f"again / first: {again / first:.2f} (target <= 0.20); first read target >= 10,000/s")
