"""What each task does. tasks.py parses options and calls these through ``python -m infra``."""

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra import apps, commands, enablebanking_key
from infra import trust as trust_store
from infra.certs import ensure_certs
from infra.envfiles import ensure_env_files, read_both, read_credentials
from infra.errors import InfraError
from infra.files import read_env, write_private
from infra.layout import Layout
from infra.mail import MailReader, environment_query
from infra.runtime import CHOICES, chosen, engine_answers, process, runtime_for, selected_runtime
from infra.runtime.base import Runtime, say
from infra.runtime.mail_catcher import mail_url

# dashtam_core (SQLAlchemy, Alembic) and redis are imported inside the workflows that use them:
# quick tasks such as `inv status` do not pay for them.

TEST_SUITES = commands.TEST_SUITES


def setup(layout: Layout, *, quiet: bool = False) -> None:
    """Certificates and env files, made only where missing."""
    written = ensure_certs(layout.certs_dir) + ensure_env_files(layout)
    written += enablebanking_key.ensure_key(layout.certs_dir)
    layout.state.mkdir(mode=0o700, exist_ok=True)
    for path in written:
        say(f"  wrote {path.relative_to(layout.root)}")
    if not quiet and not written:
        say("setup: certificates and env files already in place (nothing overwritten)")


def certs(layout: Layout, *, force: bool, trust: bool = False, untrust: bool = False) -> None:
    if trust and untrust:
        raise InfraError("certs: --trust and --untrust together make no sense; pick one")
    if untrust:
        _trust_report(
            "no longer trusted",
            "it was not trusted here: nothing to remove",
            trust_store.untrust(
                layout.project_id(), system=trust_store.system_store(), databases=_nss_databases()
            ),
        )
        return
    written = ensure_certs(layout.certs_dir, force=force)
    for path in written:
        say(f"  wrote {path.relative_to(layout.root)}")
    if not written and not trust:
        say("certs: certs/ already holds the CA and server certificate (use --force to remake)")
    if trust:
        _trust_report(
            "trusted",
            "no trust store found on this machine",
            trust_store.trust(
                layout.ca_file,
                layout.project_id(),
                system=trust_store.system_store(),
                databases=_nss_databases(),
            ),
        )
    elif layout.ca_file in written and _trusted_before(layout):
        say("certs: a new CA; the one trusted before is still trusted: inv certs --trust")


def _nss_databases() -> list[Path]:
    return trust_store.nss_databases(Path.home())


def _trusted_before(layout: Layout) -> bool:
    store = trust_store.system_store()
    file_name, _ = trust_store.names(layout.project_id())
    return store is not None and store.file_for(file_name).exists()


def _trust_report(what: str, none_found: str, outcome: trust_store.Outcome) -> None:
    if outcome.done:
        say(f"certs: the local CA is {what} in:")
    for line in outcome.done:
        say(f"  {line}")
    if not outcome.done and not outcome.failed:
        say(f"certs: {none_found}")
    if outcome.failed:
        raise InfraError("; ".join(outcome.failed))


def users(layout: Layout, *args: str) -> None:
    """`dashtam-users` against the development database (the servers must be up)."""
    apps.run_module("dashtam_api.users", layout.dev_env_file, layout, *args, name="users")


def runtime(layout: Layout, choice: str | None = None) -> None:
    """Say which runtime the tasks use here and why; with ``choice``, make it this checkout's."""
    if choice is not None:
        if choice not in CHOICES:
            raise InfraError(f"the runtime must be auto, local or compose, not {choice!r}")
        if choice == "compose" and not engine_answers():
            raise InfraError(
                "the compose runtime needs a Docker engine with the compose plugin (`docker info` "
                "and `docker compose version` must work); nothing changed"
            )
        layout.state.mkdir(mode=0o700, exist_ok=True)
        if choice == "auto":
            layout.runtime_file.unlink(missing_ok=True)
        else:
            layout.runtime_file.write_text(choice + "\n")
    asked, where = chosen(layout)
    say(f"runtime: {selected_runtime(layout)} ({asked}, from {where})")
    if where == "DASHTAM_RUNTIME" and choice is not None:
        say("  DASHTAM_RUNTIME is set in this shell and wins over the checkout's setting")


UP = commands.COMMANDS["up"].options


def up(
    layout: Layout,
    *,
    reload: bool = UP["reload"].default,
    workers: int = UP["workers"].default,
    timeout: float = commands.CONFIG["up_timeout"],
) -> None:
    started_at = time.monotonic()
    chosen_runtime = runtime_for(layout)
    setup(layout, quiet=True)
    # Several workers are production-like: they never reload.
    reload = reload and not workers
    started = chosen_runtime.up(reload=reload, workers=workers, timeout=timeout)
    if not started:
        say("Dashtam is already up (nothing to start):")
    else:
        say(
            f"Dashtam is up in {time.monotonic() - started_at:.1f}s (started: "
            f"{', '.join(started)}):"
        )
    env_file = layout.dev_env_file
    dev = read_credentials(env_file)
    say(
        f"  API        {apps.health_url(apps.APPS[0], env_file).removesuffix('/health')}  (docs at /docs)"
    )
    say(f"  callback   {apps.health_url(apps.APPS[1], env_file).removesuffix('/health')}")
    say(f"  PostgreSQL 127.0.0.1:{dev.db_port}  database {dev.db_name}")
    say(f"  Valkey     127.0.0.1:{dev.redis_port}  index {dev.redis_db}")
    say(
        f"  mail       {mail_url(dev)}  (SMTP on localhost:{dev.mail_smtp_port}; "
        "`inv mail` lists what was sent)"
    )
    say(
        f"  CA         {layout.ca_file.relative_to(layout.root)}  (curl --cacert {layout.ca_file.relative_to(layout.root)} ...)"
    )
    say("  logs: inv logs -f    stop: inv down")


MIGRATION_COMMANDS = ("upgrade", "downgrade", "current", "history", "revision", "check")


def migrate(layout: Layout, command: str, *args: str) -> None:
    """Run ``dashtam-migrate COMMAND ARGS`` against the development database."""
    if command not in MIGRATION_COMMANDS:
        raise InfraError(f"unknown migration command {command!r}")
    if not layout.dev_env_file.exists():
        raise InfraError("env/.env.dev is missing: run `inv up` (or `inv setup`) first")
    chosen_runtime = runtime_for(layout)
    if not chosen_runtime.servers_running():
        raise InfraError("PostgreSQL is not running: start the dev environment with `inv up`")
    apps.run_module(
        "dashtam_core.migrate_cli", layout.dev_env_file, layout, command, *args, name="migrate"
    )
    if command in ("upgrade", "downgrade"):
        # A revision may have (re)created the audit log: hand it to its owner again.
        chosen_runtime.after_schema(read_credentials(layout.dev_env_file))


def down(layout: Layout) -> None:
    stopped = runtime_for(layout).down()
    say(f"stopped: {', '.join(stopped)} (data kept)" if stopped else "nothing was running")


def status(layout: Layout) -> int:
    """Print a table of the services; 0 if every running one is healthy."""
    chosen_runtime = runtime_for(layout)
    say(f"runtime: {chosen_runtime.described}")
    return chosen_runtime.status()


def logs(layout: Layout, *, service: str | None, follow: bool, lines: int) -> None:
    runtime_for(layout).logs(service=service, follow=follow, lines=lines)


def clean(layout: Layout) -> None:
    down(layout)
    runtime_for(layout).clean()


def test_setup(layout: Layout) -> list[str]:
    """Shared servers up (never the dev apps), test schema rebuilt; returns servers started."""
    return _prepare_tests(layout, runtime_for(layout))


def _prepare_tests(layout: Layout, chosen_runtime: Runtime) -> list[str]:
    setup(layout, quiet=True)
    return chosen_runtime.prepare_tests()


def test_servers(layout: Layout):
    """The shared servers up and the template built for a test run (or a benchmark).

    Servers this run started go down again afterwards, unless a developer's `inv up` now uses
    them; the development apps are never started, stopped or restarted.
    """
    return _servers_for_tests(layout, runtime_for(layout))


@contextmanager
def _servers_for_tests(layout: Layout, chosen_runtime: Runtime) -> Iterator[None]:
    started = _prepare_tests(layout, chosen_runtime)
    try:
        yield
    finally:
        chosen_runtime.release_tests(started)


def _mail_reader(layout: Layout, creds) -> MailReader:
    return MailReader(mail_url(creds), layout.ca_file)


def mail(
    layout: Layout, *, test: bool = False, to: str = "", show: str = "", clear: bool = False
) -> None:
    """What an environment sent, as the mail catcher kept it: a list, one message, or none."""
    env_file = layout.test_env_file if test else layout.dev_env_file
    creds = read_credentials(env_file)
    reader = _mail_reader(layout, creds)
    query = environment_query(creds.environment, *([f"to:{to}"] if to else []))
    if clear:
        reader.delete(query)
        say(f"deleted the {creds.environment} mail{f' to {to}' if to else ''}")
        return
    if show:
        message_id = show
        if show == "latest":
            found = reader.search(query, limit=1)
            if not found:
                raise InfraError(f"no {creds.environment} mail{f' to {to}' if to else ''} yet")
            message_id = found[0]["ID"]
        message = reader.message(message_id)
        say(f"From:    {_address(message['From'])}")
        say(f"To:      {', '.join(_address(a) for a in message['To'])}")
        say(f"Date:    {message.get('Date') or message['Created']}")
        say(f"Subject: {message['Subject']}")
        say("")
        say(message["Text"].rstrip())
        return
    found = reader.search(query, limit=20)
    if not found:
        say(f"no {creds.environment} mail{f' to {to}' if to else ''} yet ({reader.url})")
        return
    say(f"{'id':<28} {'received (UTC)':<19}  {'to':<30} subject")
    for item in found:
        recipients = ", ".join(a["Address"] for a in item["To"])
        say(
            f"{item['ID']:<28} {item['Created'][:19].replace('T', ' '):<19}  {recipients:<30} {item['Subject']}"
        )
    say(f"`inv mail --show ID` (or --show latest) prints one; all of them: {reader.url}")


def _address(entry: dict) -> str:
    return f"{entry['Name']} <{entry['Address']}>" if entry.get("Name") else entry["Address"]


CONTRACT_TEST = "tests/e2e/test_contract.py"


def test(
    layout: Layout,
    *,
    contract_deep: bool,
    contract_seed: int | None,
    parallel: bool,
    workers: str,
    suites: list[str],
    pytest_args: list[str],
    cov: bool,
) -> int:
    env, paths = {}, []
    if contract_deep or contract_seed is not None:
        # The contract test alone, with many more cases than the suite's bounded run; the seed
        # picks them, so the same seed replays the same run.
        if suites:
            raise InfraError("--contract-deep runs the contract test alone; drop the suites")
        seed = contract_seed if contract_seed is not None else secrets.randbelow(2**32)
        say(f"contract-deep: seed {seed} (replay: inv test --contract-deep --contract-seed {seed})")
        env = {"DASHTAM_CONTRACT_DEEP": "1", "DASHTAM_CONTRACT_SEED": str(seed)}
        paths = [CONTRACT_TEST]
    args = pytest_args_for(
        parallel=parallel, workers=workers, suites=suites, extra=pytest_args, paths=paths
    )
    chosen_runtime = runtime_for(layout)
    if cov and not chosen_runtime.measures_coverage:
        raise InfraError(
            f"--cov needs the tests on this machine: the {chosen_runtime.name} "
            "runtime runs them elsewhere (DASHTAM_RUNTIME=local)"
        )
    with _servers_for_tests(layout, chosen_runtime):
        return chosen_runtime.run_tests(args, env=env, cov=cov)


def pytest_args_for(
    *,
    parallel: bool,
    workers: str = commands.CONFIG["workers"],
    suites: list[str] = (),
    extra: list[str] = (),
    paths: list[str] = (),
) -> list[str]:
    """pytest's arguments for `inv test` (also what `inv bench tests` times)."""
    unknown = [s for s in suites if s not in TEST_SUITES]
    if unknown:
        raise InfraError(f"unknown test suite {unknown[0]!r}; choose from {', '.join(TEST_SUITES)}")
    args = [*(paths or [f"tests/{s}" for s in suites] or ["tests"]), *extra]
    if parallel:
        workers = str(auto_test_workers()) if workers == "auto" else workers
        # loadgroup: tests marked with one xdist_group share a worker (tests/conftest.py).
        args = ["-n", workers, "--dist", "loadgroup", *args]
    return args


def auto_test_workers() -> int:
    """One xdist worker per core and one more, at most 8: a test waits on PostgreSQL, a server
    it started or a subprocess much of its time, and the extra worker fills those waits; more
    only add CPU (each worker imports everything and clones its database). On 2 cores with 459
    tests (2026-11-26, alternating): 2 workers 48-52 s, 3 workers 42-44 s, 4 workers 45-49 s,
    and 4 kept the machine ~10 core-seconds busier than 3. Each worker has its own database
    clone and Valkey index (64 indexes)."""
    return max(2, min(8, (os.cpu_count() or 1) + 1))


def test_clean(layout: Layout) -> None:
    """Drop this checkout's test databases (marked as its own), empty the tests' Valkey index and
    delete the test environment's mail."""
    import redis

    from dashtam_core.test_database_guard import marked_test_databases, read_markers

    _dev, test_creds = read_both(layout)
    # A server the runtime does not run is not ours to touch. Every runtime publishes the same
    # ports on 127.0.0.1 with the same passwords (infra/runtime/compose.py), so the same
    # connections reach them.
    chosen_runtime = runtime_for(layout)
    if not chosen_runtime.servers_running():
        raise InfraError(
            "PostgreSQL is not running: nothing to clean (data of a stopped server stays)"
        )

    async def drop() -> list[str]:
        conn = await chosen_runtime.superuser_connect(test_creds.db_port)
        try:
            # The same rule as init-test-db: the template or one of its clones, by marker.
            owned = await read_markers(conn, owner=test_creds.db_user)
            names = marked_test_databases(
                owned.values(), template=test_creds.db_name, project_id=test_creds.project_id
            )
            for name in names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return names
        finally:
            await conn.close()

    dropped = asyncio.run(drop())
    client = redis.Redis(
        host="127.0.0.1",
        port=test_creds.redis_port,
        db=test_creds.redis_db,
        username=test_creds.redis_user,
        password=test_creds.redis_password,
    )
    try:
        client.flushdb()
    finally:
        client.close()
    _mail_reader(layout, test_creds).delete(environment_query(test_creds.environment))
    say(
        f"dropped test databases: {', '.join(dropped) or 'none'}; flushed Valkey index "
        f"{test_creds.redis_db}; deleted the test mail"
    )
    say("the next `inv test` (or `inv test-setup`) recreates what it needs")


def rotate_token_key(layout: Layout) -> None:
    """Add a vault key, restart the API so it knows it, re-seal every token under it."""
    from dashtam_core.vault import format_keys, new_key, parse_keys

    env_file = layout.dev_env_file
    if not env_file.exists():
        raise InfraError("env/.env.dev is missing: run `inv setup` first")
    current = read_env(env_file).get("TOKEN_ENCRYPTION_KEYS", "")
    keys = parse_keys(current) if current else {}
    number = 1 + max((int(k[1:]) for k in keys if k[:1] == "k" and k[1:].isdigit()), default=0)
    key_id = f"k{number}"
    spec = ",".join(filter(None, [format_keys(keys), f"{key_id}:{new_key()}"]))
    set_env_value(env_file, "TOKEN_ENCRYPTION_KEYS", spec)
    say(
        f"added vault key {key_id} to {env_file.relative_to(layout.root)} "
        f"(keys now: {', '.join([*keys, key_id])}; the last one encrypts)"
    )
    api = apps.APPS[0]
    if process.running(layout.pid_file(api.name)):
        # Restart before re-sealing: the running API must be able to open the new ciphertexts.
        reload = "--reload" in process.recorded_argv(layout.pid_file(api.name))
        apps.stop_app(api, layout=layout)
        apps.start_app(api, layout=layout, env_file=env_file, reload=reload)
        timeout = commands.CONFIG["up_timeout"]
        apps.wait_healthy(api, layout=layout, env_file=env_file, timeout=timeout)
        say("restarted the API with the new key")
    if not runtime_for(layout).servers_running():
        raise InfraError("PostgreSQL is not running: start it with `inv up`, then run this again")
    apps.run_module("dashtam_core.reencrypt", env_file, layout)


def set_env_value(path: Path, key: str, value: str) -> None:
    """Replace one KEY=VALUE line (or append it), keeping everything else and mode 0600."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.split("=", 1)[0].strip() == key and not line.lstrip().startswith("#"):
            lines[i] = f"{key}={value}"
            break
    else:
        lines.append(f"{key}={value}")
    write_private(path, "\n".join(lines) + "\n")
