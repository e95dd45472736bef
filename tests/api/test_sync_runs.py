"""Every sync on record (sync_runs): what a run says after a success, a failure, a process that
died and the retention; GET /providers/{id}/sync-runs by cursor; the connection's sync status."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from dashtam_api.connections import refresh
from dashtam_api.sync import runs
from dashtam_api.sync import service as sync
from dashtam_models import ProviderConnection, SyncRun
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in
from tests.api.test_refresh import connected_schwab
from tests.api.test_sync import synced


async def runs_of(client, headers, provider_id, **params) -> dict:
    answer = await client.get(
        f"/api/v1/providers/{provider_id}/sync-runs", headers=headers, params=params
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def status_of(client, headers, provider_id) -> dict:
    return (
        await client.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
    ).json()


async def test_runs_record_successes_and_failures_newest_first(
    institution_client, institution, test_settings
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    assert (await runs_of(client, headers, provider_id))["items"] == []
    assert (await status_of(client, headers, provider_id))["last_sync_status"] is None

    first = await synced(client, headers, provider_id)
    (run,) = (await runs_of(client, headers, provider_id))["items"]
    assert run["id"] == first["run_id"]
    assert (run["trigger"], run["status"], run["error"]) == ("manual", "succeeded", None)
    assert (run["accounts"], run["positions"]) == (first["accounts"], first["positions"])
    assert run["transactions"] == first["transactions"]
    assert run["finished_at"] >= run["started_at"]
    assert run["duration_ms"] >= 0

    # The institution down for longer than the retries: a failed run, with its reason.
    institution.data_responses.extend([(503, {"message": "down"})] * 3)
    failed = await client.post(f"/api/v1/providers/{provider_id}/sync", headers=headers)
    is_problem(failed, 502)
    status = await status_of(client, headers, provider_id)
    assert status["last_sync_status"] == "failed"
    assert status["last_synced_at"] == first["synced_at"]
    assert status["stale"] is False
    await synced(client, headers, provider_id)

    newest, middle, oldest = (await runs_of(client, headers, provider_id))["items"]
    assert [r["status"] for r in (newest, middle, oldest)] == ["succeeded", "failed", "succeeded"]
    assert oldest["id"] == first["run_id"]
    assert middle["error"]["code"] == "http_503"
    assert "503" in middle["error"]["detail"]
    assert (middle["accounts"], middle["transactions"]) == (None, None)

    # By cursor, one at a time: the same runs, in the same order, each once.
    seen, cursor = [], None
    while True:
        page = await runs_of(
            client, headers, provider_id, limit=1, **({"cursor": cursor} if cursor else {})
        )
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [newest["id"], middle["id"], oldest["id"]]

    stranger = await signed_in(client, "runs-stranger")
    is_problem(
        await client.get(f"/api/v1/providers/{provider_id}/sync-runs", headers=stranger), 404
    )
    bad = await client.get(
        f"/api/v1/providers/{provider_id}/sync-runs", headers=headers, params={"cursor": "x"}
    )
    assert is_problem(bad, 400)["parameter"] == "cursor"


async def test_the_loop_s_runs_a_dead_process_s_run_staleness_and_retention(
    institution_client, test_settings, session
):
    client = institution_client
    ctx = client.app.state.ctx
    headers, provider_id = await connected_schwab(client, test_settings)
    connection_id = await session.scalar(
        select(ProviderConnection.id).where(ProviderConnection.provider_id == provider_id)
    )

    # A process that claimed the connection and died: its run stays "running" until the next
    # claim, which can only come once the lease has lapsed.
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    await session.execute(
        text(
            "INSERT INTO sync_runs (connection_id, trigger, status, started_at)"
            " VALUES (:c, 'schedule', 'running', :at)"
        ),
        {"c": connection_id, "at": long_ago},
    )
    await session.commit()
    assert (await status_of(client, headers, provider_id))["last_sync_status"] == "running"

    # The loop's first sync of a new connection is the connect's; later ones the schedule's.
    first = await sync.sync_connection(
        ctx, connection_id, trigger=refresh.Trigger.BACKGROUND, stale_only=True
    )
    assert first.kind == "synced"
    await session.execute(
        text("UPDATE provider_connections SET synced_at = :at WHERE id = :c"),
        {
            "at": datetime.now(UTC) - timedelta(seconds=3 * test_settings.SYNC_INTERVAL_SECONDS),
            "c": connection_id,
        },
    )
    await session.commit()
    assert (await status_of(client, headers, provider_id))["stale"] is True
    second = await sync.sync_connection(
        ctx, connection_id, trigger=refresh.Trigger.BACKGROUND, stale_only=True
    )
    assert second.kind == "synced"
    assert (await status_of(client, headers, provider_id))["stale"] is False

    listed = (await runs_of(client, headers, provider_id))["items"]
    assert [(r["trigger"], r["status"]) for r in listed] == [
        ("schedule", "succeeded"),
        ("connect", "succeeded"),
        ("schedule", "failed"),
    ]
    assert listed[2]["error"]["code"] == "abandoned"
    assert listed[0]["id"] == str(second.run_id)

    # Past the retention, runs go (a running one never); recent ones stay.
    old = datetime.now(UTC) - timedelta(days=test_settings.SYNC_RUNS_RETENTION_DAYS + 1)
    await session.execute(
        text("UPDATE sync_runs SET started_at = :at WHERE id = :r"),
        {"at": old, "r": listed[2]["id"]},
    )
    await session.commit()
    assert await runs.prune(ctx) == 1
    remaining = await session.scalars(
        select(SyncRun.id).where(SyncRun.connection_id == connection_id)
    )
    assert sorted(str(r) for r in remaining) == sorted(r["id"] for r in listed[:2])
