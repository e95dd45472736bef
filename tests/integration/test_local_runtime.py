"""The local runtime and the task workflows end to end, on a private project (own ports).

It never touches the shared servers: it builds a second project layout in a temporary folder,
starts PostgreSQL, Valkey and the apps there, and checks what `inv up`/`down`/`status`/`logs`/
`clean`/`test-clean` promise.
"""

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import uuid
from dataclasses import replace

import asyncpg
import pytest
import redis

import infra.__main__ as infra_main
from dashtam_core.test_database_guard import clone_marker, read_markers, template_marker
from infra import apps, ports, private_project, workflows
from infra.envfiles import ensure_env_files, read_both
from infra.errors import InfraError
from infra.layout import ROOT_DATA_BASE, running_as_root
from infra.mail import MailReader
from infra.runtime import process
from infra.runtime.local import LocalRuntime
from infra.runtime.valkey import valkey_ping
from tests.fixtures.smtp import MailCatcher


@pytest.fixture
def private_runtime(tmp_path):
    with private_project.project(tmp_path) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def _shared_project(tmp_path_factory):
    with private_project.project(tmp_path_factory.mktemp("shared-project")) as runtime:
        yield runtime


@pytest.fixture
def stopped_runtime(_shared_project):
    """A private project whose cluster several tests share (initdb, the roles and databases,
    the mail catcher's first start: ~2 s of CPU each time): each test finds its servers
    stopped and its secrets its own, and must leave them so; they are stopped after it
    whatever happened."""
    for server in ("postgres", "valkey", "mail"):
        assert process.running(_shared_project.layout.pid_file(server)) is None, server
    try:
        yield _shared_project
    finally:
        _shared_project.stop_servers()


def sql(creds, query: str, *, database: str | None = None, fetch: bool = False):
    """One statement as the environment's own role (the runtime under test is synchronous)."""

    async def run():
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=creds.db_port,
            user=creds.db_user,
            password=creds.db_password,
            database=database or creds.db_name,
        )
        try:
            return await (conn.fetch(query) if fetch else conn.execute(query))
        finally:
            await conn.close()

    return asyncio.run(run())


def database_names(runtime, port: int) -> set[str]:
    async def run():
        conn = await runtime.superuser_connect(port)
        try:
            return {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
        finally:
            await conn.close()

    return asyncio.run(run())


def private_mail(layout, creds) -> MailCatcher:
    """The private project's mail catcher, read as development's."""
    reader = MailReader(f"https://localhost:{creds.mail_http_port}", layout.ca_file)
    return MailCatcher(smtp_port=creds.mail_smtp_port, reader=reader, environment="development")


def valkey(creds) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=creds.redis_port,
        db=creds.redis_db,
        username=creds.redis_user,
        password=creds.redis_password,
    )


def test_data_survives_a_restart_test_clean_spares_dev_and_other_secrets_are_refused(
    stopped_runtime, capsys
):
    runtime, layout = stopped_runtime, stopped_runtime.layout
    dev, test_creds = read_both(layout)

    assert runtime.start_servers() == ["postgres", "valkey", "mail"]
    assert runtime.start_servers() == []  # already up: a no-op
    catcher = private_mail(layout, dev)
    asyncio.run(catcher.send(to="dev@home.lan", environment="development"))
    asyncio.run(catcher.send(to="test@home.lan", environment="testing"))

    sql(dev, "CREATE TABLE notes (body text)")
    sql(dev, "INSERT INTO notes VALUES ('kept across restarts')")
    with valkey(dev) as cache:
        cache.set("dev-key", "dev-value")
    with valkey(test_creds) as cache:
        cache.set("test-key", "x")

    assert workflows.status(layout) == 0
    table = capsys.readouterr().out
    assert "postgres" in table
    assert "yes" in table

    assert runtime.stop_servers() == ["mail", "valkey", "postgres"]
    assert not process.port_in_use(dev.db_port)
    assert not process.port_in_use(dev.redis_port)
    assert not process.port_in_use(dev.mail_smtp_port)
    assert runtime.start_servers() == ["postgres", "valkey", "mail"]
    assert [len(catcher.to(a)) for a in ("dev@home.lan", "test@home.lan")] == [1, 0]
    catcher = replace(catcher, environment="testing")
    assert len(catcher.to("test@home.lan")) == 1  # mail survives a restart too

    assert [r["body"] for r in sql(dev, "SELECT body FROM notes", fetch=True)] == [
        "kept across restarts"
    ]
    with valkey(dev) as cache:
        assert cache.get("dev-key") == b"dev-value"

    # A leftover worker clone (marked by the clone step) and test keys: test-clean removes them,
    # and only them; a database merely named like a clone is not this project's and stays.
    marker = clone_marker(test_creds.project_id, test_creds.db_name)
    sql(test_creds, 'CREATE DATABASE "dashtam_test_gw7"')
    sql(test_creds, f"COMMENT ON DATABASE \"dashtam_test_gw7\" IS '{marker}'")
    sql(test_creds, 'CREATE DATABASE "dashtam_test_gw8"')
    workflows.test_clean(layout)
    assert "dashtam_test_gw7" in capsys.readouterr().out
    names = database_names(runtime, dev.db_port)
    assert {dev.db_name, "dashtam_test_gw8"} <= names
    assert not {"dashtam_test_gw7", test_creds.db_name} & names
    with valkey(dev) as cache:
        assert cache.get("dev-key") == b"dev-value"
    with valkey(test_creds) as cache:
        assert cache.get("test-key") is None
    assert catcher.to("test@home.lan") == []  # the test mail went, development's stayed
    assert len(replace(catcher, environment="development").to("dev@home.lan")) == 1

    # The next start recreates the test database (the bootstrap is idempotent), marked.
    runtime.postgres.bootstrap(dev, test_creds)
    assert test_creds.db_name in database_names(runtime, dev.db_port)
    assert comment_on_test_database(runtime, test_creds) == template_marker(test_creds.project_id)

    # A test database an older checkout made, before markers: marked only while it holds
    # nothing but Dashtam's tables; with somebody else's table in it, it stays unmarked.
    sql(test_creds, f'COMMENT ON DATABASE "{test_creds.db_name}" IS NULL')
    sql(test_creds, "CREATE TABLE users (id int)")
    runtime.postgres.bootstrap(dev, test_creds)
    assert comment_on_test_database(runtime, test_creds) == template_marker(test_creds.project_id)
    sql(test_creds, f'COMMENT ON DATABASE "{test_creds.db_name}" IS NULL')
    sql(test_creds, "CREATE TABLE ledger (id int)")
    runtime.postgres.bootstrap(dev, test_creds)
    assert comment_on_test_database(runtime, test_creds) is None

    # A cluster made with other secrets than the checkout's: one clear error at once (not the
    # start timeout), and nothing left running.
    runtime.stop_servers()
    secrets = layout.secrets_file.read_text()
    layout.secrets_file.write_text(
        secrets.replace("POSTGRES_SUPERUSER_PASSWORD=", "POSTGRES_SUPERUSER_PASSWORD=x")
    )
    try:
        with pytest.raises(InfraError, match="refuses this checkout's superuser password"):
            runtime.postgres.start(dev.db_port)
        assert process.running(layout.pid_file("postgres")) is None
        assert not process.port_in_use(dev.db_port)
    finally:
        layout.secrets_file.write_text(secrets)  # the project is shared (stopped_runtime)


def comment_on_test_database(runtime: LocalRuntime, creds) -> str | None:
    async def run():
        conn = await runtime.superuser_connect(creds.db_port)
        try:
            found = await read_markers(conn, names=[creds.db_name])
        finally:
            await conn.close()
        return found[creds.db_name].marker if creds.db_name in found else None

    return asyncio.run(run())


def test_a_taken_port_is_one_clear_error(private_runtime):
    dev, _ = read_both(private_runtime.layout)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", dev.db_port))
        blocker.listen()
        from infra.errors import InfraError

        with pytest.raises(
            InfraError, match=f"port {dev.db_port} for PostgreSQL is already in use"
        ):
            private_runtime.postgres.start(dev.db_port)


def test_a_private_project_moves_a_server_whose_port_was_taken(stopped_runtime):
    """A private project's ports are its own pick, free only when picked: something may take
    one before its server starts (a program listening on it, or a client's connection holding
    it as its own end, which no connect finds). The server starts on a new port, written into
    the project's env files, instead of the project failing to come up."""
    runtime, layout = stopped_runtime, stopped_runtime.layout
    # Ports just picked (the shared project's own have served earlier tests: their closed
    # connections' TIME_WAIT would keep a plain bind here off them), taken at once.
    dev, _ = read_both(layout)
    assert ports.repick(layout, [dev.db_port, dev.redis_port])
    before, _ = read_both(layout)
    with socket.socket() as listener, socket.socket() as client_end:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", before.db_port))
        listener.listen()
        client_end.bind(("127.0.0.1", before.redis_port))
        assert runtime.start_servers() == ["postgres", "valkey", "mail"]
    dev, test_creds = read_both(layout)
    assert dev.db_port != before.db_port
    assert dev.redis_port != before.redis_port
    assert (test_creds.db_port, test_creds.redis_port) == (dev.db_port, dev.redis_port)
    assert dev.mail_http_port == before.mail_http_port  # only what was taken moved
    assert runtime.postgres.ready(dev.db_port)
    assert sql(dev, "SELECT 1", fetch=True)[0][0] == 1  # the roles' URLs moved with it
    with valkey(dev) as cache:
        assert cache.ping()


def test_servers_restarted_outside_the_runtime_are_still_its_own(stopped_runtime, capsys):
    """After `pg_ctl restart` or a Valkey crash and a start by hand, the servers run with new
    pids the runtime never recorded: it knows them by their own data directories, so status
    shows them, up neither fails on a taken port nor starts a second one, down stops them."""
    runtime, layout = stopped_runtime, stopped_runtime.layout
    dev, _ = read_both(layout)
    runtime.start_servers()
    ours = {s: process.running(layout.pid_file(s)).pid for s in ("postgres", "valkey")}

    # PostgreSQL: restarted by pg_ctl, with the options the postmaster recorded.
    pg_ctl = runtime.postgres.bin_dir() / "pg_ctl"
    restart_log = runtime.postgres.data_dir.parent / "pg_ctl.log"
    subprocess.run(
        [
            str(pg_ctl),
            "-D",
            str(runtime.postgres.data_dir),
            "-m",
            "fast",
            "-w",
            "-l",
            str(restart_log),
            "restart",
        ],
        user=runtime.data.user,
        cwd=runtime.postgres.data_dir.parent,
        check=True,
        capture_output=True,
    )
    # Valkey: killed (a crash), then started by hand with the runtime's own config.
    os.kill(ours["valkey"], signal.SIGKILL)
    process.wait_gone(ours["valkey"], 10)
    config = runtime.valkey.dir / "valkey.conf"
    by_hand = subprocess.Popen(
        [process.recorded_argv(layout.pid_file("valkey"))[0], str(config)],
        user=runtime.data.user,
        cwd=runtime.valkey.dir,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert wait_until_true(
        lambda: valkey_ping(dev.redis_port, runtime.data.secrets().valkey_password)
    )

    assert workflows.status(layout) == 0
    rows = {r.split()[0]: r.split() for r in capsys.readouterr().out.splitlines()[2:]}
    for server in ("postgres", "valkey"):
        assert rows[server][-1] == "yes", rows
        assert int(rows[server][1]) != ours[server]  # the new process, not the recorded one
    assert runtime.start_servers() == []  # nothing started twice, no "port in use"
    assert runtime.stop_servers() == ["mail", "valkey", "postgres"]
    assert not process.port_in_use(dev.db_port)
    assert not process.port_in_use(dev.redis_port)
    assert by_hand.wait(10) == 0  # stopped by the runtime, and reaped here


def wait_until_true(check, timeout: float = 20) -> bool:
    return process.wait_until(check, timeout=timeout, interval=0.1)


@pytest.mark.skipif(
    not running_as_root(),
    reason="only root keeps the servers' data outside the checkout (/var/lib/dashtam)",
)
def test_as_root_the_data_belongs_to_one_checkout(private_runtime):
    """Data kept under /var/lib/dashtam is keyed by the checkout's path and id: a checkout
    deleted and cloned again at the same path starts afresh (the old cluster's secrets went with
    the old checkout), the old data is swept, and data from before the key is adopted."""
    runtime, layout = private_runtime, private_runtime.layout
    dev, _ = read_both(layout)
    # PostgreSQL alone is enough here (no Valkey, no bootstrap): a table in its own database.
    runtime.postgres.start(dev.db_port)
    superuser_sql(runtime, dev.db_port, "CREATE TABLE notes (body text)")
    runtime.postgres.stop()
    first = layout.data_dir
    assert (first / "checkout").read_text() == f"{layout.root}\n{layout.project_id()}\n"

    # Deleted and cloned again at the same path: new secrets, new id, so a new cluster.
    shutil.rmtree(layout.state)
    for env_file in (layout.dev_env_file, layout.test_env_file):
        env_file.unlink()
    ensure_env_files(layout, pg_port=dev.db_port, redis_port=dev.redis_port)
    assert layout.data_dir != first
    runtime.data.remove_orphaned()
    assert not first.exists()
    runtime.postgres.start(dev.db_port)
    assert not superuser_sql(runtime, dev.db_port, "SELECT to_regclass('notes')")
    superuser_sql(runtime, dev.db_port, "CREATE TABLE notes (body text)")

    # Left alone: live checkouts (this one), unstamped directories, and a running postmaster's.
    strangers = [ROOT_DATA_BASE / f"test-{uuid.uuid4().hex}" for _ in range(2)]
    try:
        for directory in strangers:
            (directory / "postgres").mkdir(parents=True)
        (strangers[1] / "checkout").write_text(f"{layout.root}-gone\nabc\n")
        (strangers[1] / "postgres" / "postmaster.pid").write_text(f"{os.getpid()}\n")
        runtime.data.remove_orphaned()
        assert layout.data_dir.exists()
        assert all(d.exists() for d in strangers)
        (strangers[1] / "postgres" / "postmaster.pid").unlink()
        runtime.data.remove_orphaned()
        assert not strangers[1].exists()
    finally:
        for directory in strangers:
            shutil.rmtree(directory, ignore_errors=True)

    # Data made before the key (under a hash of the path alone) is this checkout's when its
    # secrets are older than the cluster: moved to the key, rows kept.
    runtime.postgres.stop()
    legacy = ROOT_DATA_BASE / hashlib.sha256(str(layout.root).encode()).hexdigest()[:12]
    layout.data_dir.rename(legacy)
    (legacy / "checkout").unlink()
    past = (legacy / "postgres" / "PG_VERSION").stat().st_mtime - 60
    os.utime(layout.secrets_file, (past, past))
    runtime.data.adopt_unstamped()
    assert not legacy.exists()
    runtime.postgres.start(dev.db_port)
    assert superuser_sql(runtime, dev.db_port, "SELECT to_regclass('notes')") == "notes"


def superuser_sql(runtime: LocalRuntime, port: int, query: str, *args):
    """One value from one statement as the server's superuser, in the postgres database."""

    async def run():
        conn = await runtime.superuser_connect(port)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_every_dev_task_on_a_private_project(private_runtime, capfd, monkeypatch):
    """migrate, up, status, logs, demo, rotate-token-key, down, clean: one private project
    (its own servers, built once) taken through every task, as a person would."""
    runtime, layout = private_runtime, private_runtime.layout
    dev, _ = read_both(layout)

    # The migration tasks, on a development database nothing has migrated yet.
    with pytest.raises(InfraError, match="PostgreSQL is not running"):
        workflows.migrate(layout, "current")
    runtime.start_servers()
    workflows.migrate(layout, "upgrade")
    assert "upgraded from an empty schema to head" in capfd.readouterr().out
    owner = sql(
        dev,
        "SELECT tableowner FROM pg_tables WHERE tablename = 'provider_audit_logs'",
        fetch=True,
    )
    assert owner[0]["tableowner"] == "dashtam_audit_owner"  # after_schema.sql ran after it
    # Past the revision that made the audit log: its owner is not the app's role. Refused whole.
    # (What each migration command prints is tested on the command itself, test_migrations.py.)
    with pytest.raises(InfraError, match="migrate failed"):
        workflows.migrate(layout, "downgrade", "base")
    assert "belongs to dashtam_audit_owner" in capfd.readouterr().err

    # The callback server's port taken meanwhile: the project moves it (and the API, started
    # with the old callback URL, starts again with the new one).
    callback_port = apps.app_port(apps.APPS[1], layout.dev_env_file)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", callback_port))
        squatter.listen()
        workflows.up(layout, reload=False, timeout=60)
    started = capfd.readouterr().out
    assert "init-db: database dashtam: at head" in started
    assert "Dashtam is up" in started
    assert (layout.certs_dir / "ca.pem").exists()
    moved = apps.app_port(apps.APPS[1], layout.dev_env_file)
    assert moved != callback_port
    assert f"CALLBACK_BASE_URL=https://localhost:{moved}\n" in layout.dev_env_file.read_text()

    # The development role may read and append the audit log, nothing more; not even DROP it.
    sql(dev, "INSERT INTO provider_audit_logs (action) VALUES ('probe')")
    for refused in (
        "UPDATE provider_audit_logs SET action = 'x'",
        "DELETE FROM provider_audit_logs",
        "TRUNCATE provider_audit_logs",
        "DROP TABLE provider_audit_logs",
        "ALTER TABLE provider_audit_logs DISABLE TRIGGER ALL",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            sql(dev, refused)
    sql(dev, "CREATE TABLE dev_scratch (id int)")  # creating its own tables still works
    sql(dev, "DROP TABLE dev_scratch")

    workflows.up(layout, reload=False, timeout=60)
    assert "already up" in capfd.readouterr().out

    monkeypatch.setattr(infra_main, "Layout", lambda: layout)
    assert infra_main.main(["status"]) == 0
    runtime_line, _header, *table = capfd.readouterr().out.splitlines()
    assert runtime_line.startswith("runtime: local")
    assert [row.split()[0] for row in table] == ["postgres", "valkey", "mail", "api", "callback"]
    assert all(row.split()[-1] == "yes" for row in table)

    api = apps.APPS[0]
    code, body = apps.check_health(apps.health_url(api, layout.dev_env_file), layout.ca_file)
    assert code == 200
    assert body["environment"] == "development"

    assert infra_main.main(["logs", "--service", "api", "--lines", "50"]) == 0
    assert "Application startup complete" in capfd.readouterr().out
    assert infra_main.main(["logs", "--service", "nope"]) == 1
    assert "unknown service 'nope'" in capfd.readouterr().err

    # `inv demo`: the whole connect flow through this project's own servers.
    assert infra_main.main(["demo"]) == 0
    demo = capfd.readouterr().out
    assert "callback page: Connected" in demo
    assert "status=active" in demo
    # Transactions after the first sync (pending ones among them), and after the second the
    # same transactions posted.
    first, second = demo.split("11. yesterday's pending transactions, now")
    assert " pending " in first.split("the newest transactions")[1]
    assert "(was pending)" in second
    # The webhooks the dev API's dispatcher sent to the demo's receiver, signatures checked.
    received = second.split("12. the webhooks received")[1]
    assert "connection.active  pending -> active" in received
    assert received.count("sync.succeeded") == 2
    assert "answered 204\n" in received
    assert all(" posted " in line for line in second.splitlines() if "(was pending)" in line)

    # `inv mail`: the demo's sign-up mailed a confirmation link; the catcher kept it.
    assert infra_main.main(["mail"]) == 0
    listed = capfd.readouterr().out
    assert "Confirm your address for Dashtam" in listed
    assert infra_main.main(["mail", "--show", "latest"]) == 0
    shown = capfd.readouterr().out
    assert "Subject: Confirm your address for Dashtam" in shown
    assert "/verify-email?token=dtv_" in shown
    assert infra_main.main(["mail", "--test"]) == 0
    assert "no testing mail yet" in capfd.readouterr().out

    # `inv rotate-token-key`: a new key, the API restarted with it, the demo's token re-sealed.
    api_pid = process.running(layout.pid_file("api")).pid
    workflows.rotate_token_key(layout)
    rotated = capfd.readouterr().out
    assert "added vault key k2" in rotated
    assert "restarted the API" in rotated
    assert "k2:" in layout.dev_env_file.read_text()
    assert process.running(layout.pid_file("api")).pid != api_pid

    workflows.down(layout)
    assert "stopped: api, callback, mail, valkey, postgres" in capfd.readouterr().out
    assert apps.check_health(apps.health_url(api, layout.dev_env_file), layout.ca_file)[0] is None

    workflows.clean(layout)
    assert not layout.data_dir.exists()
