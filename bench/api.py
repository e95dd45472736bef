"""The API under load, side by side with a bare FastAPI app, in one run.

Both are served the same way: uvicorn from this environment, HTTPS with the project's
certificates, no reload, first one worker process and then two. `wrk` drives every endpoint
with the same settings (`-t1 -c32 -d<duration>s --latency`). The API runs with the development
env file (its database, Valkey, argon2 costs and log level) on a free port, with the background
jobs off so that only requests are measured; a person signed up for the run (with 3 providers,
one connected and synced) is deleted afterwards. The development servers are started if they
are down (and stopped again), the development API is left as it is.

Endpoints: /health; the authenticated provider list; an account read; a page of 50 of the
person's transactions (the synced sandbox's history); session refresh (each
refresh token works once: wrk passes the new one on); login (argon2-bound: reported, no target).
Each row: requests/s, p50, p99, and the ratio to bare with the same number of workers.

Side by side means at the same moment: a shared machine's speed drifts within a minute by more
than the differences measured. Each endpoint with a target is measured in ROUNDS short runs,
each right after a run of bare; its ratio is its requests over bare's in those rounds, its
p50/p99 the median of the rounds'. Refresh and login (tokens spent, no target) run once, after
one run of bare.
"""

import asyncio
import json
import re
import secrets
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import delete

from bench.scratch import serve_api
from dashtam_api.context import AppContext
from dashtam_api.sandbox.seed import connected_sandbox
from dashtam_core.config import load_settings
from dashtam_models import User
from infra import apps, workflows
from infra.errors import InfraError
from infra.layout import Layout
from infra.runtime import process

WRK_MISSING = (
    "wrk is not installed: `apt-get install wrk` (Debian/Ubuntu) or `brew install wrk` (macOS)"
)
HERE = Path(__file__).resolve().parent
WORKER_COUNTS = (1, 2)
ROUNDS = 3


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def run(*, duration: int, connections: int) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise InfraError(WRK_MISSING)
    layout = Layout()
    started_dev = not all(process.running(layout.pid_file(n)) for n in ("postgres", "valkey"))
    if started_dev:
        workflows.up(layout, reload=False)
    rows: list[tuple[str, int, Result, Result]] = []
    try:
        for workers in WORKER_COUNTS:
            rows += _measure_with(layout, wrk, workers, duration=duration, connections=connections)
    finally:
        if started_dev:
            workflows.down(layout)
    _report(rows, duration, connections)


def _measure_with(layout: Layout, wrk: str, workers: int, *, duration: int, connections: int):
    bare_port, api_port = _free_port(), _free_port()
    bare = _serve_bare(layout, bare_port, workers)
    overrides = {
        "API_BASE_URL": f"https://localhost:{api_port}",
        "BACKGROUND_JOBS_ENABLED": "false",
    }
    try:
        with serve_api(
            layout,
            pid_name=f"bench-api-{workers}",
            port=api_port,
            overrides=overrides,
            env_file=layout.dev_env_file,
            workers=workers,
        ):
            _wait_bare(layout, bare_port)
            base = f"https://localhost:{api_port}"
            person = _sign_up(layout, base, sessions=connections * 4)
            try:
                return _rows(
                    wrk,
                    workers,
                    person,
                    base,
                    f"https://localhost:{bare_port}/",
                    duration=duration,
                    connections=connections,
                )
            finally:
                asyncio.run(_delete_person(layout, person["email"]))
    finally:
        process.stop(bare)


def _rows(wrk, workers, person, base, bare_url, *, duration: int, connections: int) -> list:
    load = _Load(wrk, connections=connections)
    print(f"{workers} worker(s):", flush=True)
    auth = {"Authorization": f"Bearer {person['access_token']}"}
    short = max(1, round(duration / ROUNDS))
    rows = []
    for label, path, headers in (
        ("GET /health", "/health", {}),
        ("GET /api/v1/providers (auth, 3 rows)", "/api/v1/providers", auth),
        ("GET /api/v1/accounts/{id} (auth)", f"/api/v1/accounts/{person['account_id']}", auth),
        ("GET /api/v1/transactions (auth, 50 rows)", "/api/v1/transactions?limit=50", auth),
    ):
        bares, measured = [], []
        for _ in range(ROUNDS):
            bares.append(load.get(bare_url, "bare FastAPI hello", duration=short))
            measured.append(load.get(f"{base}{path}", label, headers=headers, duration=short))
        rows.append((label, workers, _combined(measured), _combined(bares)))
    for label, measure in (
        (
            "POST /api/v1/auth/refresh (rotating)",
            lambda: load.refresh(
                f"{base}/api/v1/auth/refresh", person["refresh_tokens"], duration=duration
            ),
        ),
        (
            "POST /api/v1/auth/login (argon2)",
            lambda: load.post_json(f"{base}/api/v1/auth/login", person["login"], duration=duration),
        ),
    ):
        baseline = load.get(bare_url, "bare FastAPI hello", duration=duration)
        rows.append((label, workers, measure(), baseline))
    return rows


def _serve_bare(layout: Layout, port: int, workers: int) -> Path:
    pid_file = layout.pid_file(f"bench-bare-{workers}")
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bare:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ssl-certfile",
        str(layout.root / "certs" / "server.pem"),
        "--ssl-keyfile",
        str(layout.root / "certs" / "server-key.pem"),
        "--no-server-header",
        "--log-level",
        "warning",
        "--workers",
        str(workers),
    ]
    process.spawn(
        argv,
        pid_file=pid_file,
        log_file=layout.log_file(f"bench-bare-{workers}"),
        env=apps.child_env(layout.dev_env_file),
        cwd=layout.root,
    )
    return pid_file


def _wait_bare(layout: Layout, port: int) -> None:
    tls = ssl.create_default_context(cafile=str(layout.ca_file))
    for _ in range(240):
        try:
            if httpx.get(f"https://localhost:{port}/", verify=tls, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        asyncio.run(asyncio.sleep(0.25))
    raise InfraError("the bare FastAPI app did not start")


def _sign_up(layout: Layout, base: str, *, sessions: int) -> dict:
    """A person with 3 providers (one connected to the sandbox and synced) and ``sessions``
    live refresh tokens (more than connections: each works once)."""
    tls = ssl.create_default_context(cafile=str(layout.ca_file))
    email = f"bench-{secrets.token_hex(4)}@example.com"
    login = {"email": email, "password": secrets.token_urlsafe(18)}
    with httpx.Client(base_url=base, verify=tls, timeout=60) as http:
        http.post("/api/v1/auth/register", json=login).raise_for_status()
        tokens = [http.post("/api/v1/auth/login", json=login).json() for _ in range(sessions)]
        auth = {"Authorization": f"Bearer {tokens[0]['access_token']}"}
        for n in (1, 2):
            http.post(
                "/api/v1/providers",
                headers=auth,
                json={"provider_key": "sandbox", "alias": f"Bench {n}"},
            ).raise_for_status()
        me = http.get("/api/v1/auth/me", headers=auth).json()
        provider_id = asyncio.run(_connected_provider(layout, base, me["id"]))
        http.post(f"/api/v1/providers/{provider_id}/sync", headers=auth).raise_for_status()
        account_id = http.get("/api/v1/accounts", headers=auth).json()["items"][0]["id"]
    return {
        "email": email,
        "login": login,
        "access_token": tokens[0]["access_token"],
        "refresh_tokens": [t["refresh_token"] for t in tokens],
        "account_id": account_id,
    }


async def _connected_provider(layout: Layout, base: str, user_id: str) -> str:
    settings = load_settings(env_file=layout.dev_env_file).model_copy(update={"API_BASE_URL": base})
    ctx = AppContext.open(settings)
    try:
        async with ctx.sessions() as session:
            user = await session.get(User, user_id)
            (seeded,) = await connected_sandbox(ctx, session, count=1, user=user)
            await session.commit()
    finally:
        await ctx.close()
    return str(seeded.provider_id)


async def _delete_person(layout: Layout, email: str) -> None:
    ctx = AppContext.open(load_settings(env_file=layout.dev_env_file))
    try:
        async with ctx.sessions() as session:
            await session.execute(delete(User).where(User.email == email))
            await session.commit()
    finally:
        await ctx.close()


def _combined(results: list[Result]) -> Result:
    """Rounds of equal length as one: their mean rate, the median of their percentiles."""
    return Result(
        rps=statistics.fmean(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        errors=sum(r.errors for r in results),
    )


class _Load:
    def __init__(self, wrk: str, *, connections: int):
        self.base = [wrk, "-t1", f"-c{connections}", "--latency"]

    def get(self, url: str, label: str, *, duration: int, headers: dict | None = None) -> Result:
        extra = [arg for k, v in (headers or {}).items() for arg in ("-H", f"{k}: {v}")]
        return self._run([*extra, url], label, duration)

    def post_json(self, url: str, body: dict, *, duration: int) -> Result:
        script = str(HERE / "wrk" / "post_json.lua")
        return self._run(["-s", script, url, "--", json.dumps(body)], "login", duration)

    def refresh(self, url: str, tokens: list[str], *, duration: int) -> Result:
        with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as file:
            file.write("\n".join(tokens) + "\n")
        try:
            script = str(HERE / "wrk" / "refresh.lua")
            return self._run(["-s", script, url, "--", file.name], "session refresh", duration)
        finally:
            Path(file.name).unlink()

    def _run(self, args: list[str], label: str, duration: int) -> Result:
        out = subprocess.run(
            [*self.base, f"-d{duration}s", *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout
        result = Result(
            rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            p50_ms=_ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
            p99_ms=_ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
            errors=sum(
                int(n)
                for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)|Socket errors:.*", out)
                if n
            ),
        )
        print(
            f"  {label:<24} {result.rps:8.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
            f"p99 {result.p99_ms:7.2f} ms" + (f"  {result.errors} errors" if result.errors else ""),
            flush=True,
        )
        return result


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The targets hold for one worker (2 cores, 32 connections); two workers show scaling. Every
# authenticated read: at least 0.3x bare with p99 < 50 ms.
TARGETS = {
    "GET /health": 0.5,
    "GET /api/v1/providers (auth, 3 rows)": 0.3,
    "GET /api/v1/accounts/{id} (auth)": 0.3,
    "GET /api/v1/transactions (auth, 50 rows)": 0.3,
}
TARGET_WORKERS = 1


def _report(rows, duration: int, connections: int) -> None:
    print()
    print(
        f"wrk -t1 -c{connections} over HTTPS, uvicorn, beside bare FastAPI: {ROUNDS} rounds of "
        f"{max(1, round(duration / ROUNDS))} s each, bare first (refresh, login: one of {duration} s)"
    )
    print(
        f"{'endpoint':<40} {'workers':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'bare req/s':>10} {'vs bare':>8} {'target':>12}"
    )
    for label, workers, result, baseline in rows:
        ratio = result.rps / baseline.rps
        target = TARGETS.get(label) if workers == TARGET_WORKERS else None
        verdict = ""
        if target is not None:
            met = ratio >= target and result.p99_ms < 50
            verdict = f">={target}x p99<50 {'ok' if met else 'MISSED'}"
        print(
            f"{label:<40} {workers:>7} {result.rps:>8.0f} {result.p50_ms:>8.2f} "
            f"{result.p99_ms:>8.2f} {baseline.rps:>10.0f} {ratio:>7.3f}x {verdict:>12}"
            + (f"  ({result.errors} errors)" if result.errors else "")
        )
