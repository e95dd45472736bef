"""Exports as a person meets them: the API (one worker, over HTTPS) streaming an account of
100,000 and of 1,000,000 transactions as CSV and as OFX. Rows per second from the wall clock of
the download, and the API process's peak memory (VmHWM) beside what it held before the export:
streaming from a cursor, the peak must not grow with the rows.

Each export runs in an API process of its own (a fresh peak), on a scratch clone of the test
template seeded in SQL (a checking account and a brokerage account of each size).
"""

import asyncio
import ssl
import statistics
import time
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench import api as api_bench
from bench.scratch import scratch_database, serve_api
from infra.layout import Layout
from infra.runtime import process

SIZES = (100_000, 1_000_000)
FORMATS = ("csv", "ofx")

SEED = [
    """INSERT INTO providers (user_id, provider_key, alias)
       VALUES (CAST(:person AS uuid), 'sandbox', 'Bench export')""",
    """INSERT INTO provider_connections (provider_id, status)
       SELECT id, 'active' FROM providers WHERE alias = 'Bench export'""",
    """INSERT INTO accounts (user_id, connection_id, external_id, account_type, name, synced_at)
       SELECT CAST(:person AS uuid), c.id, 'A' || n, 'checking', 'Export ' || n, now()
         FROM provider_connections c CROSS JOIN unnest(CAST(:sizes AS integer[])) n""",
    # Every transaction of a year, posted, evenly spread; text with characters CSV quotes and
    # OFX escapes.
    """INSERT INTO transactions (user_id, account_id, external_id, status, occurred_at,
                                 posted_at, amount, description, payee, memo, kind)
       SELECT a.user_id, a.id, 'T' || g, 'posted', t, t, -((g::bigint * 7919) % 100000) / 100.0,
              'MERCHANT ' || (g % 997) || ' "CITY", ST & CO', 'Merchant <' || (g % 997) || '>',
              CASE WHEN g % 3 = 0 THEN 'memo ' || g END, 'card'
         FROM accounts a
        CROSS JOIN LATERAL generate_series(1, CAST(substr(a.external_id, 2) AS integer)) g
        CROSS JOIN LATERAL (SELECT now() - g * (interval '365 days' / CAST(substr(a.external_id, 2)
                             AS integer)) AS t) moment
        WHERE a.user_id = CAST(:person AS uuid)""",
    """INSERT INTO balance_snapshots (account_id, as_of, current)
       SELECT id, now(), 1000 FROM accounts WHERE user_id = CAST(:person AS uuid)""",
    "ANALYZE transactions",
]


async def _seed(url, person_id: uuid.UUID) -> dict[int, str]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in SEED:
                await conn.execute(
                    text(statement), {"person": str(person_id), "sizes": list(SIZES)}
                )
            rows = await conn.execute(
                text("SELECT id, external_id FROM accounts WHERE user_id = CAST(:p AS uuid)"),
                {"p": str(person_id)},
            )
            return {int(external[1:]): str(account_id) for account_id, external in rows}
    finally:
        await engine.dispose()


def _peak_kib(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of the process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(rest.split()[0])
    return values["VmHWM"], values["VmRSS"]


def _export_once(layout, url, person, account_id: str, fmt: str) -> dict:
    """One export in a fresh API process: seconds, bytes, peak before and after (KiB)."""
    port = api_bench._free_port()
    base = f"https://localhost:{port}"
    overrides = {
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "API_BASE_URL": base,
        "BACKGROUND_JOBS_ENABLED": "false",
    }
    pid_name = "bench-export"
    with serve_api(layout, pid_name=pid_name, port=port, overrides=overrides, workers=0):
        pid = process.running(layout.pid_file(pid_name)).pid
        tls = ssl.create_default_context(cafile=str(layout.ca_file))
        with httpx.Client(base_url=base, verify=tls, timeout=600) as http:
            token = http.post("/api/v1/auth/login", json=person).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            # Warm: the route, the reader, a small export of the same kind.
            path = f"/api/v1/accounts/{account_id}/transactions/export"
            http.get(path, headers=auth, params={"format": fmt, "from": "2999-01-01"})
            before, _ = _peak_kib(pid)
            started = time.perf_counter()
            size = 0
            with http.stream("GET", path, headers=auth, params={"format": fmt}) as answer:
                answer.raise_for_status()
                for chunk in answer.iter_raw():
                    size += len(chunk)
            seconds = time.perf_counter() - started
            after, _ = _peak_kib(pid)
    return {"seconds": seconds, "bytes": size, "before": before, "after": after}


def run(*, repeat: int) -> None:
    layout = Layout()
    results: dict[tuple[int, str], list[dict]] = {}
    with scratch_database(layout, "benchexport") as (_template, url):
        port = api_bench._free_port()
        base = f"https://localhost:{port}"
        person = {"email": "bench-export@example.com", "password": uuid.uuid4().hex}
        overrides = {
            "DATABASE_URL": url.render_as_string(hide_password=False),
            "API_BASE_URL": base,
            "BACKGROUND_JOBS_ENABLED": "false",
        }
        with serve_api(layout, pid_name="bench-export", port=port, overrides=overrides):
            tls = ssl.create_default_context(cafile=str(layout.ca_file))
            with httpx.Client(base_url=base, verify=tls, timeout=60) as http:
                person_id = http.post("/api/v1/auth/register", json=person).json()["id"]
        started = time.perf_counter()
        accounts = asyncio.run(_seed(url, uuid.UUID(person_id)))
        print(f"seeded {sum(SIZES):,} transactions in {time.perf_counter() - started:.1f}s")
        for _ in range(repeat):
            for size in SIZES:
                for fmt in FORMATS:
                    one = _export_once(layout, url, person, accounts[size], fmt)
                    results.setdefault((size, fmt), []).append(one)
                    print(
                        f"  {fmt} {size:>9,} rows: {one['seconds']:6.2f}s, "
                        f"{one['bytes'] / 2**20:7.1f} MiB, peak {one['before'] / 1024:.1f} -> "
                        f"{one['after'] / 1024:.1f} MiB",
                        flush=True,
                    )
    print()
    print(
        f"Exports through the API (one worker, HTTPS), median of {repeat} runs; peak memory of "
        "the API process (VmHWM) before the export and after it:"
    )
    print(
        f"{'format':<6} {'rows':>10} {'seconds':>8} {'rows/s':>9} {'MiB out':>8} "
        f"{'peak before':>12} {'peak after':>11} {'growth':>8}"
    )
    growth = {}
    for (size, fmt), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        seconds = statistics.median(r["seconds"] for r in runs)
        before = statistics.median(r["before"] for r in runs) / 1024
        after = statistics.median(r["after"] for r in runs) / 1024
        growth[(size, fmt)] = after - before
        print(
            f"{fmt:<6} {size:>10,} {seconds:>8.2f} {size / seconds:>9,.0f} "
            f"{statistics.median(r['bytes'] for r in runs) / 2**20:>8.1f} "
            f"{before:>10.1f} MB {after:>9.1f} MB {after - before:>+7.1f}"
        )
    for fmt in FORMATS:
        small, big = growth[(SIZES[0], fmt)], growth[(SIZES[1], fmt)]
        print(
            f"{fmt}: the peak grew {small:+.1f} MiB for {SIZES[0]:,} rows and {big:+.1f} MiB for "
            f"{SIZES[1]:,} (10x the rows; constant memory: about the same)"
        )
