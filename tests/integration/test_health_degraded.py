"""/health turns degraded when its Valkey goes away and healthy when it is back.

The Valkey here is the test's own (a private server on a free port): tests never stop the
shared servers.
"""

import asyncio
import subprocess

import httpx
import pytest

from dashtam_api.main import create_app
from infra.ports import free_port
from infra.runtime.binaries import valkey_server
from tests.helpers import wait_for

PASSWORD = "private-valkey-password"


class PrivateValkey:
    def __init__(self, port: int, workdir):
        self.port, self.workdir, self.proc = port, workdir, None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                str(valkey_server()),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--requirepass",
                PASSWORD,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def private_valkey(tmp_path):
    server = PrivateValkey(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


async def test_health_degrades_and_recovers_with_its_valkey(test_settings, private_valkey):
    settings = test_settings.model_copy(
        update={
            "REDIS_URL": f"redis://default:{PASSWORD}@127.0.0.1:{private_valkey.port}/0",
            "HEALTH_TIMEOUT_SECONDS": 1.0,
            # The promise holds for any interval; a short one keeps the test short.
            "HEALTH_CACHE_SECONDS": 0.25,
        }
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def status_is(expected: int) -> bool:
                return (await client.get("/health")).status_code == expected

            assert await wait_for(lambda: status_is(200)), (await client.get("/health")).json()

            private_valkey.stop()
            # The documented promise: an outage shows within HEALTH_CACHE_SECONDS plus the
            # probe's own deadline.
            within = settings.HEALTH_CACHE_SECONDS + settings.HEALTH_TIMEOUT_SECONDS + 1
            assert await wait_for(lambda: status_is(503), timeout=within)
            response = await client.get("/health")
            assert response.status_code == 503
            body = response.json()
            assert body["status"] == "degraded"
            assert body["down"] == ["cache"]
            assert body["checks"]["database"]["status"] == "up"
            assert PASSWORD not in response.text

            private_valkey.start()
            assert await wait_for(lambda: status_is(200), timeout=15)
            assert (await client.get("/health")).json()["status"] == "healthy"


async def test_health_reports_an_unreachable_database(test_settings):
    closed = free_port()
    url = test_settings.database_url.set(port=closed).render_as_string(hide_password=False)
    app = create_app(test_settings.model_copy(update={"DATABASE_URL": url}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/health")
    assert response.status_code == 503
    assert response.json()["down"] == ["database"]
    assert test_settings.database_url.password not in response.text


async def test_health_is_probed_once_per_interval(test_settings):
    from dashtam_api.health.service import HealthProbe
    from dashtam_core.cache import create_redis
    from dashtam_core.database import Database

    db, redis = Database.from_settings(test_settings), create_redis(test_settings)
    try:
        cached = HealthProbe(
            settings=test_settings.model_copy(update={"HEALTH_CACHE_SECONDS": 30.0}),
            db=db,
            redis=redis,
        )
        reports = await asyncio.gather(*(cached.report() for _ in range(10)))
        assert all(r is reports[0] for r in reports)  # one probe answered all ten at once
        assert await cached.report() is reports[0]  # and the next within the interval
        every_time = HealthProbe(
            settings=test_settings.model_copy(update={"HEALTH_CACHE_SECONDS": 0.0}),
            db=db,
            redis=redis,
        )
        assert await every_time.report() is not await every_time.report()
    finally:
        await redis.aclose()
        await db.dispose()


async def test_the_first_command_after_a_valkey_restart_succeeds(test_settings, private_valkey):
    """Every pooled connection died with the server: the first command on one is retried on a
    fresh connection (create_redis's Retry), not answered 503."""
    from dashtam_core.cache import create_redis

    settings = test_settings.model_copy(
        update={"REDIS_URL": f"redis://default:{PASSWORD}@127.0.0.1:{private_valkey.port}/0"}
    )
    redis = create_redis(settings)
    try:
        # The fixture started the server without waiting for it to listen.
        assert await wait_for(lambda: _pings(private_valkey.port))
        # Several connections in the pool, all idle when the server goes.
        await asyncio.gather(*(redis.set(f"k{n}", n) for n in range(6)))
        private_valkey.stop()
        private_valkey.start()
        assert await wait_for(lambda: _pings(private_valkey.port))
        for _ in range(6):
            assert await redis.set("after", "restart")
    finally:
        await redis.aclose()


async def _pings(port: int) -> bool:
    import redis.asyncio as aioredis

    probe = aioredis.Redis(port=port, password=PASSWORD)
    try:
        return await probe.ping()
    except Exception:
        return False
    finally:
        await probe.aclose()
