"""Prometheus metrics at ``/metrics``: requests by route template and status, their latency,
the database pools, refreshes and syncs by outcome, connections by status.

Several worker processes (``inv up --workers N``: uvicorn's workers) report into one scrape
through prometheus-client's multiprocess mode: infra gives each API server an empty folder in
``PROMETHEUS_MULTIPROC_DIR`` before it starts, every process writes its samples there, and
whichever process answers the scrape adds them up. Without that variable (the in-process test
app) the samples live in this process's default registry.

``/metrics`` answers only clients in ``METRICS_ALLOW_FROM`` (default: this machine); everyone
else gets the 404 of an unknown path, so the public port does not expose it (docs/metrics.md).
"""

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashtam_api import metrics_queries as queries
from dashtam_core.config import Settings
from dashtam_models import ConnectionStatus

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("dashtam.metrics")

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Routes are labelled by template (/api/v1/providers/{provider_id}), never by raw path: an
# unknown path or a static file is "other", so no client can grow the number of series.
OTHER = "other"

REQUESTS = Counter(
    "dashtam_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "dashtam_http_request_duration_seconds",
    "Seconds from a request's arrival to the end of its answer, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REFRESHES = Counter(
    "dashtam_refreshes_total",
    "Provider token refreshes, by trigger (background, on_demand, on_use) and outcome "
    "(refreshed, failed; busy: another refresh held it; not_due, coalesced: done elsewhere).",
    ["trigger", "outcome"],
)
SYNCS = Counter(
    "dashtam_syncs_total",
    "Syncs of accounts, balances and positions, by outcome (synced, sync_failed; claimed: "
    "running elsewhere; not_due, inactive, unsupported).",
    ["outcome"],
)
WEBHOOK_DELIVERIES = Counter(
    "dashtam_webhook_deliveries_total",
    "Webhook delivery attempts, by event type and outcome (delivered; retrying: failed, tried "
    "again later; given_up: failed for WEBHOOK_RETRY_HOURS; gone: the receiver answered 410).",
    ["event", "outcome"],
)
POOL = Gauge(
    "dashtam_db_pool_connections",
    "Database connections the API processes hold, by pool (orm: SQLAlchemy's; reader: the "
    "asyncpg connections of the hot reads) and state (in_use, idle); sampled every few seconds.",
    ["pool", "state"],
    multiprocess_mode="livesum",
)
WORKERS = Gauge(
    "dashtam_worker_start_time_seconds",
    "When each API worker process started (one sample per live worker).",
    multiprocess_mode="liveall",
)
POOL_SAMPLE_SECONDS = 5.0


class RequestMetrics:
    """ASGI middleware: one count and one latency sample per answer (the status is read off
    the answer's start; an exception that escapes the app counts as the 500 it becomes)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # .labels() takes a lock and builds a key; the children are kept here instead.
        self._counted: dict[tuple[str, str, int], tuple] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            template = getattr(scope.get("route"), "path", OTHER)
            method = scope["method"] if scope["method"] in METHODS else OTHER
            key = (method, template, status)
            children = self._counted.get(key)
            if children is None:
                children = (
                    REQUESTS.labels(method, template, str(status)),
                    LATENCY.labels(method, template),
                )
                self._counted[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - started)


def networks(spec: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``METRICS_ALLOW_FROM`` (validated by the settings): comma-separated addresses/networks."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()
    )


def allowed(client_host: str | None, allow: Iterable) -> bool:
    if not client_host:
        return False
    try:
        address = ipaddress.ip_address(client_host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in allow)


def sample_pools(db) -> None:
    """This process's connections, per pool and state."""
    pool = db.engine.pool
    in_use = pool.checkedout()
    POOL.labels("orm", "in_use").set(in_use)
    POOL.labels("orm", "idle").set(pool.checkedin())
    in_use, idle = db.reader.connections()
    POOL.labels("reader", "in_use").set(in_use)
    POOL.labels("reader", "idle").set(idle)


async def keep_sampling(db) -> None:
    while True:
        try:
            sample_pools(db)
        except Exception:  # a metric must never take the server down
            log.exception("sampling the database pools failed")
        await asyncio.sleep(POOL_SAMPLE_SECONDS)


def started() -> None:
    WORKERS.set(time.time())


def stopped() -> None:
    """A worker that ends takes its live gauges out of the next scrape."""
    if MULTIPROCESS_DIR:
        multiprocess.mark_process_dead(os.getpid())


async def connections_by_status(session: AsyncSession) -> dict[str, int]:
    counts = {status.value: 0 for status in ConnectionStatus}
    counts.update(
        {str(status): count for status, count in await queries.connections_by_status(session)}
    )
    return counts


async def outbox(session: AsyncSession) -> list[Metric]:
    row = await queries.outbox(session)
    due = GaugeMetricFamily(
        "dashtam_webhook_outbox_due",
        "Webhook deliveries due now (including attempts under way), at scrape time.",
        value=row.due,
    )
    oldest = GaugeMetricFamily(
        "dashtam_webhook_outbox_oldest_due_seconds",
        "How long the oldest due webhook delivery has waited (0: none is due), at scrape time.",
        value=float(row.oldest),
    )
    return [due, oldest]


class _Scrape:
    """What one scrape shows: every process's samples, and what was read at scrape time."""

    def __init__(self, extra: list[Metric]) -> None:
        if MULTIPROCESS_DIR:
            self.source = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.source)
        else:
            self.source = REGISTRY
        self.extra = extra

    def collect(self) -> Iterable[Metric]:
        yield from self.source.collect()
        yield from self.extra


async def exposition(db, session: AsyncSession) -> tuple[bytes, str]:
    """The body and content type of a scrape."""
    sample_pools(db)
    family = GaugeMetricFamily(
        "dashtam_connections",
        "Provider connections by status, counted at scrape time.",
        labels=["status"],
    )
    for status, count in sorted((await connections_by_status(session)).items()):
        family.add_metric([status], count)
    return generate_latest(_Scrape([family, *await outbox(session)])), CONTENT_TYPE_LATEST


def install(app: "FastAPI", settings: Settings) -> None:
    """Count every request and serve ``/metrics`` (not part of the public API's document)."""
    # Imported here, not above: the refresher and dispatcher processes (dashtam-jobs) count
    # into this module's instruments but serve nothing, and FastAPI is ~0.25 s of their start.
    from fastapi import Request, Response

    from dashtam_api.deps import ContextDep, SessionDep

    allow = networks(settings.METRICS_ALLOW_FROM)
    app.add_middleware(RequestMetrics)

    async def scrape(request: Request, ctx: ContextDep, session: SessionDep) -> Response:
        if not allowed(request.client.host if request.client else None, allow):
            # The answer to an unknown path: the public port gives nothing away.
            raise StarletteHTTPException(404)
        body, content_type = await exposition(ctx.db, session)
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})

    app.add_api_route("/metrics", scrape, methods=["GET"], include_in_schema=False)
