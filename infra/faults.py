"""The fault drill: steady load on a Dashtam of its own while its database restarts, its cache
restarts, the sandbox institution fails and then answers late, and at last the API is stopped;
afterwards, what the API acknowledged is looked for in the database.

It runs on a private project (infra/private_project.py), never on the shared servers: the tests run it
with a little load (tests/faults/), `inv bench faults` with more.

Load: ``clients`` clients at once (one person, signed in once, with a connected sandbox provider
per client), each running two loops side by side: ``GET /health``, the provider list and a new
provider (a write: its id is kept when the API acknowledges it); and a sync of its connection
(the institution) with a token refresh in the first round and every fourth after it
(acknowledged refreshes are counted). An answer counts
toward the phase in which its request started, and may be what any phase allows from that one
to the one in which it ended (a sync that starts before a restart may end during it).

Phases, each ``phase_seconds`` long, in this order, with what each may answer besides 2xx
(anything else, a 500 above all, fails the drill):

==================  ==========================================================================
steady              nothing else
postgres restart    503 (the database is down), 409 (a sync the restart cut short holds its
                    claim until the database is back and takes it back)
valkey restart      503 (the cache is down), 502/504 (the sandbox keeps its state in Valkey: to
                    Dashtam it is an institution failing)
institution down    502, 504: the sandbox's token and data endpoints answer 503
institution slow    502, 504: its data API answers after the API's per-call timeout
graceful stop       502 (the sandbox stops with the API), "refused" once the API is gone,
                    "closed" for a request sent on a kept-alive connection as the stopping
                    server closed it; requests under way when it was told to stop must still
                    be answered (one cut off would be a 500)
==================  ==========================================================================

Webhooks: the person has an endpoint for sync.succeeded and sync.failed on a receiver of the
drill's own, which answers 503 from the start until the database has restarted and is back, so
events are due (and being retried) while PostgreSQL is down. Before the stop, the drill waits
for those events to be delivered; afterwards every finished sync run must have its event in the
outbox (a commit never loses one) and every delivery marked delivered must have reached the
receiver.

"Recovered": seconds from the fault's end (the server started again, the sandbox healed) to the
first healthy ``/health`` (database, cache) or the first successful sync (institution); for the
graceful stop, the seconds the API took to stop.
"""

import asyncio
import collections
import contextlib
import secrets
import ssl
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import httpx

from infra import apps, workflows
from infra.demo import Browser, Receiver
from infra.envfiles import read_both
from infra.errors import InfraError
from infra.files import read_env
from infra.runtime.local import LocalRuntime

PHASES = (
    "steady",
    "postgres restart",
    "valkey restart",
    "institution down",
    "institution slow",
    "graceful stop",
)
ALLOWED = {
    "steady": set(),
    "postgres restart": {"503", "409"},
    "valkey restart": {"503", "502", "504"},
    "institution down": {"502", "504"},
    "institution slow": {"502", "504"},
    "graceful stop": {"502", "refused", "closed"},
}
# The private API's settings for a drill: institutions time out fast; a stop gives requests
# under way 3 s, and then goes. (It takes all of it: the load's idle kept-alive TLS connections
# never answer the server's close_notify, and uvicorn waits for every connection to close.)
# Webhook retries start at 0.5 s (x4 each, at most 4 s apart), so the events the receiver
# refused while the database restarted come due again within the drill.
DRILL_SETTINGS = {
    "OAUTH_HTTP_TIMEOUT_SECONDS": "2",
    "SHUTDOWN_GRACE_SECONDS": "3",
    "WEBHOOK_RETRY_BASE_SECONDS": "0.5",
    "WEBHOOK_RETRY_MAX_SECONDS": "4",
}
WEBHOOK_DRAIN_SECONDS = 30.0
REFRESH_EVERY = 4
FAULT_HOLD_SECONDS = 10.0
SETTLE_SECONDS = 1.0


@dataclass
class Phase:
    name: str
    answers: collections.Counter = field(default_factory=collections.Counter)
    recovered_seconds: float | None = None
    # every answer as "<answer> <METHOD> <route>"
    by_route: collections.Counter = field(default_factory=collections.Counter)
    # the same, of the answers the phase may not give...
    misplaced: collections.Counter = field(default_factory=collections.Counter)
    # ...and the first of each as the API wrote it (also why a phase did not recover)
    examples: dict[str, str] = field(default_factory=dict)

    def count(
        self, answer: str, method: str, route: str, *, body: str = "", until: str | None = None
    ) -> None:
        """An answer to a request that started in this phase and ended in phase ``until``
        (this one if None): it may give what any phase from here to there allows."""
        where = f"{answer} {method} {route}"
        self.answers[answer] += 1
        self.by_route[where] += 1
        spanned = PHASES[PHASES.index(self.name) : PHASES.index(until or self.name) + 1]
        allowed = set().union(*(ALLOWED[name] for name in spanned))
        if not (answer.startswith("2") or answer in allowed):
            self.misplaced[where] += 1
            self.examples.setdefault(where, body[:300])


@dataclass
class Report:
    phases: dict[str, Phase]
    written: list[str] = field(default_factory=list)  # ids of the acknowledged new providers
    writes_found: int = 0
    refreshed: collections.Counter = field(default_factory=collections.Counter)  # per provider
    refresh_audit_rows: int = 0
    short_audited: list[str] = field(default_factory=list)  # connections missing audit rows
    # provider id -> its status and its last audit rows, for connections no longer active
    not_active: dict[str, list] = field(default_factory=dict)
    # Webhooks: events the receiver refused until the database was back, and how many of them
    # were delivered before the stop; finished sync runs without an event in the outbox;
    # deliveries marked delivered that the receiver never got.
    webhooks_due_in_restart: int = 0
    webhooks_delivered_after: int = 0
    runs_without_event: int = 0
    delivered_not_received: int = 0
    webhooks_received: int = 0
    healed_at: datetime | None = None
    # (status, attempts, next attempt, last error) of the ones not delivered: why not
    webhook_stragglers: list[tuple] = field(default_factory=list)

    @property
    def acknowledged_writes(self) -> int:
        return len(self.written)

    @property
    def acknowledged_refreshes(self) -> int:
        return sum(self.refreshed.values())

    def problems(self) -> list[str]:
        found = [
            f"{phase.name}: answered {dict(phase.misplaced)}, e.g. {phase.examples}"
            for phase in self.phases.values()
            if phase.misplaced
        ]
        if self.writes_found != self.acknowledged_writes:
            found.append(
                f"{self.acknowledged_writes - self.writes_found} of "
                f"{self.acknowledged_writes} acknowledged writes are missing"
            )
        if self.short_audited:
            found.append(f"refreshes acknowledged without an audit row: {self.short_audited}")
        if self.not_active:
            found.append(f"connections no longer active: {self.not_active}")
        if self.webhooks_delivered_after != self.webhooks_due_in_restart:
            found.append(
                f"webhooks: {self.webhooks_due_in_restart - self.webhooks_delivered_after} of "
                f"{self.webhooks_due_in_restart} events due while the database restarted were "
                f"not delivered within {WEBHOOK_DRAIN_SECONDS:.0f} s: {self.webhook_stragglers}"
            )
        if self.runs_without_event:
            found.append(f"webhooks: {self.runs_without_event} finished sync runs have no event")
        if self.delivered_not_received:
            found.append(
                f"webhooks: {self.delivered_not_received} deliveries marked delivered never "
                "reached the receiver"
            )
        for phase in self.phases.values():
            if phase.name != "graceful stop" and phase.recovered_seconds is None:
                last = phase.examples.get("did not recover", "")
                found.append(f"{phase.name}: did not recover in 30 s (last: {last})")
        return found

    def table(self) -> list[str]:
        lines = [f"{'phase':<18} {'2xx':>6} {'503':>5} {'502/504':>8} {'other':>6}  recovered"]
        for phase in self.phases.values():
            a = phase.answers
            ok = sum(n for k, n in a.items() if k.startswith("2"))
            gateway = a["502"] + a["504"]
            other = sum(a.values()) - ok - a["503"] - gateway
            recovered = (
                f"{phase.recovered_seconds:.2f} s" if phase.recovered_seconds is not None else "-"
            )
            detail = {
                k: n
                for k, n in a.items()
                if not k.startswith("2") and k not in ("503", "502", "504")
            }
            lines.append(
                f"{phase.name:<18} {ok:>6} {a['503']:>5} {gateway:>8} {other:>6}  {recovered}"
                + (f"  {dict(detail)}" if detail else "")
            )
        lines.append(
            f"acknowledged writes found afterwards: {self.writes_found} of "
            f"{self.acknowledged_writes}; acknowledged refreshes {self.acknowledged_refreshes}, "
            f"`refreshed` audit rows {self.refresh_audit_rows}"
        )
        lines.append(
            f"webhook events due while the database restarted: {self.webhooks_due_in_restart}, "
            f"delivered after it: {self.webhooks_delivered_after}; received in all "
            f"{self.webhooks_received}"
        )
        return lines


def configure(runtime: LocalRuntime) -> None:
    """The drill's settings in the private project's development env file (before `up`)."""
    for key, value in DRILL_SETTINGS.items():
        workflows.set_env_value(runtime.layout.dev_env_file, key, value)


def run(runtime: LocalRuntime, *, clients: int, phase_seconds: float, pause: float = 0.0) -> Report:
    """Start the private project, run every phase under load, stop it, check the database.
    ``pause``: seconds each loop waits between its requests (0: as fast as the API answers)."""
    layout = runtime.layout
    configure(runtime)
    workflows.up(layout, reload=False)
    env = read_env(layout.dev_env_file)
    people = _connect(layout, env, clients + 1)  # one more: the recovery probe's
    receiver = Receiver(layout)
    try:
        _subscribe(layout, env, people, receiver)
        report = asyncio.run(_drill(runtime, env, people, phase_seconds, pause, receiver))
        asyncio.run(_check(runtime, people, report, receiver))
    finally:
        receiver.close()
    return report


@dataclass
class Person:
    headers: dict[str, str]
    provider_ids: list[str]


def _connect(layout, env: dict[str, str], connections: int) -> Person:
    """One person, signed in, with ``connections`` connected sandbox providers."""
    api = env["API_BASE_URL"].rstrip("/")
    tls = ssl.create_default_context(cafile=str(layout.ca_file))
    email, password = f"drill-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(18)
    with httpx.Client(base_url=api, verify=tls, timeout=30) as client:

        def call(method: str, path: str, expect: int, **kwargs) -> dict:
            response = client.request(method, path, **kwargs)
            if response.status_code != expect:
                raise InfraError(f"drill set-up: {method} {path} answered {response.status_code}")
            return response.json()

        call("POST", "/api/v1/auth/register", 201, json={"email": email, "password": password})
        token = call("POST", "/api/v1/auth/login", 200, json={"email": email, "password": password})
        client.headers["Authorization"] = f"Bearer {token['access_token']}"
        ids = []
        browser = Browser(layout.ca_file)
        try:
            for n in range(connections):
                provider = call(
                    "POST",
                    "/api/v1/providers",
                    201,
                    json={"provider_key": "sandbox", "alias": f"drill {n}"},
                )
                path = f"/api/v1/providers/{provider['id']}/authorization"
                browser.authorize(call("POST", path, 201)["authorization_url"])
                if call("GET", path, 200)["status"] != "active":
                    raise InfraError("drill set-up: a sandbox connection did not become active")
                ids.append(provider["id"])
        finally:
            browser.close()
    return Person(headers=dict(client.headers), provider_ids=ids)


def _subscribe(layout, env: dict[str, str], person: Person, receiver: Receiver) -> None:
    """The person's webhook endpoint on the drill's receiver, for every sync's end."""
    tls = ssl.create_default_context(cafile=str(layout.ca_file))
    with httpx.Client(base_url=env["API_BASE_URL"], verify=tls, timeout=30) as client:
        response = client.post(
            "/api/v1/webhooks",
            headers=person.headers,
            json={"url": receiver.url, "events": ["sync.succeeded", "sync.failed"]},
        )
    if response.status_code != 201:
        raise InfraError(f"drill set-up: POST /api/v1/webhooks answered {response.status_code}")


async def _connect_db(runtime: LocalRuntime) -> asyncpg.Connection:
    dev, _ = read_both(runtime.layout)
    return await asyncpg.connect(
        host=dev.db_host,
        port=dev.db_port,
        user=dev.db_user,
        password=dev.db_password,
        database=dev.db_name,
    )


# Deliveries the receiver refused (503) until the database was back, i.e. created before it
# healed, and of those the ones delivered since.
_DUE_IN_RESTART = """
SELECT count(*) AS due, count(*) FILTER (WHERE status = 'delivered') AS delivered
  FROM webhook_deliveries WHERE created_at < $1
"""


async def _drain_webhooks(runtime: LocalRuntime, healed_at) -> None:
    """Until every event due while the database restarted has been delivered (bounded)."""
    deadline = time.monotonic() + WEBHOOK_DRAIN_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await _connect_db(runtime)
            try:
                row = await conn.fetchrow(_DUE_IN_RESTART, healed_at)
            finally:
                await conn.close()
            if row["due"] == row["delivered"]:
                return
        await asyncio.sleep(0.25)


class _Load:
    def __init__(
        self, http: httpx.AsyncClient, person: Person, phases: dict[str, Phase], pause: float
    ):
        self.http, self.person, self.phases, self.pause = http, person, phases, pause
        self.phase = PHASES[0]
        self.stop = asyncio.Event()
        self.acknowledged_writes: list[str] = []
        self.acknowledged_refreshes: collections.Counter = collections.Counter()
        # Set by an answer of 502/504 to a request started while the institution was down.
        self.upstream_failed = asyncio.Event()

    async def call(self, method: str, path: str, route: str, **kwargs) -> httpx.Response | None:
        if self.pause:
            await asyncio.sleep(self.pause)
        phase = self.phases[self.phase]
        try:
            response = await self.http.request(method, path, headers=self.person.headers, **kwargs)
        except httpx.ConnectError:
            phase.count("refused", method, route, until=self.phase)
            await asyncio.sleep(0.05)  # the API is gone: do not spin
            return None
        except httpx.RemoteProtocolError:
            # The server closed a kept-alive connection as this request went out on it (what
            # a server that stops does with idle connections): it was never a request under way.
            phase.count("closed", method, route, until=self.phase)
            return None
        except httpx.TransportError as exc:
            phase.count(type(exc).__name__, method, route, until=self.phase)
            return None
        phase.count(str(response.status_code), method, route, body=response.text, until=self.phase)
        if phase.name == "institution down" and response.status_code in (502, 504):
            self.upstream_failed.set()
        return response

    async def reads_and_writes(self, n: int) -> None:
        """Health, the provider list and a new provider (the writes checked afterwards)."""
        round_ = 0
        while not self.stop.is_set():
            round_ += 1
            await self.call("GET", "/health", "/health")
            await self.call("GET", "/api/v1/providers", "providers", params={"limit": 20})
            created = await self.call(
                "POST",
                "/api/v1/providers",
                "providers",
                json={"provider_key": "sandbox", "alias": f"drill {n}-{round_}"},
            )
            if created is not None and created.status_code == 201:
                self.acknowledged_writes.append(created.json()["id"])

    async def institution_calls(self, provider_id: str) -> None:
        """Syncs of one connection, and every few a token refresh: the calls that reach the
        institution (slow when it is), in a loop of their own beside the reads and writes."""
        provider = f"/api/v1/providers/{provider_id}"
        round_ = 0
        while not self.stop.is_set():
            round_ += 1
            await self.call("POST", f"{provider}/sync", "sync")
            # The first round's too: a drill whose few refreshes all met a fault would check
            # no refresh's audit row.
            if round_ % REFRESH_EVERY == 1:
                refreshed = await self.call("POST", f"{provider}/authorization/refresh", "refresh")
                if refreshed is not None and refreshed.status_code == 200:
                    self.acknowledged_refreshes[provider_id] += 1


async def _drill(
    runtime: LocalRuntime,
    env: dict,
    person: Person,
    phase_seconds: float,
    pause: float,
    receiver: Receiver,
):
    layout = runtime.layout
    dev, test = read_both(layout)
    phases = {name: Phase(name) for name in PHASES}
    tls = ssl.create_default_context(cafile=str(layout.ca_file))
    probe_provider, *providers = person.provider_ids
    sandbox = (env["SANDBOX_CLIENT_ID"], env["SANDBOX_CLIENT_SECRET"])
    timeout = float(env["OAUTH_HTTP_TIMEOUT_SECONDS"])
    async with (
        httpx.AsyncClient(base_url=env["API_BASE_URL"], verify=tls, timeout=60) as http,
        httpx.AsyncClient(base_url=env["API_BASE_URL"], verify=tls, timeout=10) as probe,
    ):
        load = _Load(http, person, phases, pause)

        last_probe: list[str] = [""]  # what the probe last got, said if it never recovers

        async def answered_200(method: str, path: str, **kwargs) -> bool:
            try:
                response = await probe.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                last_probe[0] = f"{method} {path}: {type(exc).__name__}"
                return False
            last_probe[0] = f"{method} {path}: {response.status_code} {response.text[:300]}"
            return response.status_code == 200

        def healthy():
            return answered_200("GET", "/health")

        def synced():
            sync = f"/api/v1/providers/{probe_provider}/sync"
            return answered_200("POST", sync, headers=person.headers)

        async def recovered(check) -> float | None:
            started = time.monotonic()
            while time.monotonic() - started < 30:
                if await check():
                    return time.monotonic() - started
                await asyncio.sleep(0.05)
            phases[load.phase].examples["did not recover"] = last_probe[0]
            return None

        async def control(what: str, **body) -> None:
            for _ in range(50):  # through a 503 of a cache that has only just come back
                response = await probe.post(f"/sandbox/_control/{what}", json=body, auth=sandbox)
                if response.status_code == 204:
                    return
                await asyncio.sleep(0.1)
            raise InfraError(f"the sandbox refused {what}: {response.status_code}")

        async def restart(stop, start) -> None:
            await asyncio.to_thread(stop)
            # Down for longer than /health's cache (HEALTH_CACHE_SECONDS, 1 s): it shows.
            await asyncio.sleep(1.5)
            await asyncio.to_thread(start)

        # Each connection's first sync reads a year of the sandbox's activity, long enough on
        # a slow machine to span a whole phase (which then saw no sync start, and the drill no
        # 502): done before the phases, which see the incremental syncs of a running Dashtam.
        for provider_id in person.provider_ids:
            first = await http.post(f"/api/v1/providers/{provider_id}/sync", headers=person.headers)
            if first.status_code != 200:
                raise InfraError(f"the drill's first sync failed: {first.status_code} {first.text}")
        receiver.failing = True  # until the database has restarted and is back
        tasks = [
            asyncio.create_task(work)
            for n, provider_id in enumerate(providers)
            for work in (load.reads_and_writes(n), load.institution_calls(provider_id))
        ]
        try:
            for name in PHASES:
                load.phase = name
                started = time.monotonic()
                phase = phases[name]
                if name == "postgres restart":
                    await restart(
                        runtime.postgres.stop, lambda: runtime.postgres.start(dev.db_port)
                    )
                    phase.recovered_seconds = await recovered(healthy)
                    receiver.failing = False
                    healed_at = datetime.now(UTC)
                    # What the outage left to put right (a sync's claim to give back, tried
                    # every 0.5 s at most) is put right before the next phase judges syncs.
                    await asyncio.sleep(SETTLE_SECONDS)
                elif name == "valkey restart":
                    await restart(runtime.valkey.stop, lambda: runtime.valkey.start(dev, test))
                    phase.recovered_seconds = await recovered(healthy)
                elif name in ("institution down", "institution slow"):
                    faults = (
                        [("fail", {"endpoint": e, "status": 503}) for e in ("token", "api")]
                        if name == "institution down"
                        else [("delay", {"endpoint": "api", "seconds": timeout * 1.5})]
                    )
                    for what, body in faults:
                        await control(what, times=100_000, **body)
                    await asyncio.sleep(phase_seconds)
                    if name == "institution down":
                        # Held until the load has met it (a sync that started in it answered
                        # 502/504), at most FAULT_HOLD_SECONDS more: a short phase on a slow
                        # machine may otherwise pass between two syncs of each connection.
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(load.upstream_failed.wait(), FAULT_HOLD_SECONDS)
                    for what, body in faults:
                        await control(what, times=0, **body)
                    phase.recovered_seconds = await recovered(synced)
                elif name == "graceful stop":
                    await _drain_webhooks(runtime, healed_at)
                    await asyncio.sleep(phase_seconds / 2)
                    stopping = time.monotonic()
                    await asyncio.to_thread(apps.stop_app, apps.APPS[0], layout=layout)
                    phase.recovered_seconds = time.monotonic() - stopping  # here: stopped in
                else:
                    phase.recovered_seconds = 0.0
                await asyncio.sleep(max(0.0, phase_seconds - (time.monotonic() - started)))
        finally:
            load.stop.set()
            await asyncio.gather(*tasks)
    return Report(
        phases=phases,
        written=load.acknowledged_writes,
        refreshed=load.acknowledged_refreshes,
        healed_at=healed_at,
    )


async def _check(runtime: LocalRuntime, person: Person, report: Report, receiver: Receiver) -> None:
    """What the API acknowledged, looked for in the database (the API is down by now)."""
    conn = await _connect_db(runtime)
    try:
        row = await conn.fetchrow(_DUE_IN_RESTART, report.healed_at)
        report.webhooks_due_in_restart, report.webhooks_delivered_after = row
        report.webhook_stragglers = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT status, attempts, next_attempt_at - created_at, last_error "
                "FROM webhook_deliveries WHERE created_at < $1 AND status <> 'delivered'",
                report.healed_at,
            )
        ]
        report.runs_without_event = await conn.fetchval(
            """
            SELECT count(*) FROM sync_runs r
             WHERE r.status <> 'running'
               AND NOT EXISTS (SELECT FROM webhook_deliveries d
                                WHERE d.payload -> 'data' ->> 'run_id' = r.id::text)
            """
        )
        received = {headers["webhook-id"] for _, headers, _ in receiver.received}
        report.webhooks_received = len(received)
        delivered = {
            str(event_id)
            for (event_id,) in await conn.fetch(
                "SELECT event_id FROM webhook_deliveries WHERE status = 'delivered'"
            )
        }
        report.delivered_not_received = len(delivered - received)
        report.writes_found = await conn.fetchval(
            "SELECT count(*) FROM providers WHERE id = ANY($1::uuid[])", report.written
        )
        audited = dict(
            await conn.fetch(
                "SELECT provider_id::text, count(*) FROM provider_audit_logs "
                "WHERE action = 'refreshed' AND provider_id = ANY($1::uuid[]) GROUP BY 1",
                person.provider_ids,
            )
        )
        report.refresh_audit_rows = sum(audited.values())
        report.short_audited = [p for p, n in report.refreshed.items() if audited.get(p, 0) < n]
        for provider_id, status in await conn.fetch(
            "SELECT provider_id::text, status FROM provider_connections "
            "WHERE provider_id = ANY($1::uuid[]) AND status <> 'active'",
            person.provider_ids,
        ):
            last = await conn.fetch(
                "SELECT action, details::text FROM provider_audit_logs WHERE provider_id = $1 "
                "ORDER BY created_at DESC LIMIT 3",
                uuid.UUID(provider_id),
            )
            report.not_active[provider_id] = [status, *(tuple(row) for row in last)]
    finally:
        await conn.close()
