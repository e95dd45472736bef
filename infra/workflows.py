"""What each task does. tasks.py parses options and calls these through ``python -m infra``."""

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra import apps, schema
from infra import trust as trust_store
from infra.certs import ensure_certs
from infra.envfiles import ensure_env_files, read_both, read_credentials
from infra.errors import InfraError
from infra.files import read_env, write_private
from infra.layout import Layout
from infra.mail import MailReader, environment_query
from infra.runtime import process, selected_runtime
from infra.runtime.local import SERVERS, LocalRuntime, valkey_ping

# dashtam_core (SQLAlchemy, Alembic) and redis are imported inside the workflows that use them:
# quick tasks such as `inv status` do not pay for them.

TEST_SUITES = ("unit", "integration", "api", "e2e", "faults", "browser")


def say(message: str) -> None:
    print(message, flush=True)


def _runtime(layout: Layout) -> LocalRuntime:
    return LocalRuntime(layout)


def _compose(layout: Layout, task: str, *extra: str) -> bool:
    """Under the compose runtime, run ``task`` there (a failure is one line and its exit code)
    and say True; under the local runtime, False: the caller goes on with processes."""
    if selected_runtime() != "compose":
        return False
    from infra import compose  # YAML and the rest only where Compose is used

    code = compose.run_task(layout, task, *extra)
    if code:
        raise InfraError(f"docker compose failed (exit {code})", code=code)
    return True


def _start_servers(runtime: LocalRuntime, *, when_postgres_is_up=None) -> list[str]:
    for directory, checkout in runtime.remove_orphaned_data():
        say(f"  removed {directory}: the servers' data of {checkout}, a checkout that is gone")
    return runtime.start_servers(when_postgres_is_up=when_postgres_is_up)


def setup(layout: Layout, *, quiet: bool = False) -> None:
    """Certificates and env files, made only where missing."""
    written = ensure_certs(layout.certs_dir) + ensure_env_files(layout)
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
    _run_initializer("dashtam_api.users", layout.dev_env_file, layout, *args, name="users")


def _run_initializer(
    module: str, env_file: Path, layout: Layout, *args: str, name: str | None = None
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=apps.child_env(env_file),
        cwd=layout.root,
        check=False,
    )
    if result.returncode != 0:
        raise InfraError(
            f"{name or module.rsplit('.', 1)[-1].replace('_', '-')} failed (exit {result.returncode})",
            code=result.returncode,
        )


def up(layout: Layout, *, reload: bool = True, workers: int = 0, timeout: float = 90.0) -> None:
    if _compose(layout, "up"):
        return
    started_at = time.monotonic()
    runtime = _runtime(layout)
    setup(layout, quiet=True)
    env_file = layout.dev_env_file
    dev = read_credentials(env_file)
    apps_started: list[str] = []
    apps_were_up = all(process.running(layout.pid_file(a.name)) for a in apps.APPS)
    at_head: str | None = None

    def start_apps() -> None:
        for app in apps.APPS:
            # Only the API scales out; the callback server forwards a handful of redirects.
            app_workers = workers if app is apps.APPS[0] else 0
            if apps.start_app(
                app, layout=layout, env_file=env_file, reload=reload, workers=app_workers
            ):
                apps_started.append(app.name)

    def as_soon_as_postgres_is_up() -> None:
        # Nothing to migrate: the apps start now, their imports (seconds) beside the other
        # servers' start and the superuser steps, instead of after them. Anything else (a
        # schema behind, a first start) waits for init-db as before.
        nonlocal at_head
        if not apps_were_up:
            at_head = schema.at_head(dev)
            if at_head is not None:
                start_apps()

    servers = _start_servers(runtime, when_postgres_is_up=as_soon_as_postgres_is_up)
    if servers or not apps_were_up:
        if at_head is None:
            at_head = schema.at_head(dev)
        if at_head is not None:
            say(f"init-db: database {dev.db_name}: at head {at_head}, nothing to do")
        else:
            _run_initializer("dashtam_core.init_db", env_file, layout)
        runtime.after_schema(dev)
    start_apps()
    for app in apps.APPS:
        apps.wait_healthy(app, layout=layout, env_file=env_file, timeout=timeout)
    if not servers and not apps_started:
        say("Dashtam is already up (nothing to start):")
    else:
        say(
            f"Dashtam is up in {time.monotonic() - started_at:.1f}s (started: "
            f"{', '.join(servers + apps_started)}):"
        )
    dev = read_credentials(env_file)
    say(
        f"  API        {apps.health_url(apps.APPS[0], env_file).removesuffix('/health')}  (docs at /docs)"
    )
    say(f"  callback   {apps.health_url(apps.APPS[1], env_file).removesuffix('/health')}")
    say(f"  PostgreSQL 127.0.0.1:{dev.db_port}  database {dev.db_name}")
    say(f"  Valkey     127.0.0.1:{dev.redis_port}  index {dev.redis_db}")
    say(
        f"  mail       {runtime.mail_url(dev)}  (SMTP on localhost:{dev.mail_smtp_port}; "
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
    if not _runtime(layout).tracked("postgres"):
        raise InfraError("PostgreSQL is not running: start the dev environment with `inv up`")
    _run_initializer(
        "dashtam_core.migrate_cli", layout.dev_env_file, layout, command, *args, name="migrate"
    )
    if command in ("upgrade", "downgrade"):
        # A revision may have (re)created the audit log: hand it to its owner again.
        _runtime(layout).after_schema(read_credentials(layout.dev_env_file))


def down(layout: Layout) -> None:
    if _compose(layout, "down"):
        return
    stopped = [a.name for a in apps.APPS if apps.stop_app(a, layout=layout)]
    stopped += _runtime(layout).stop_servers()
    say(f"stopped: {', '.join(stopped)} (data kept)" if stopped else "nothing was running")


def status(layout: Layout) -> int:
    """Print a table of the services; 0 if every running one is healthy."""
    if selected_runtime() == "compose":
        from infra import compose

        say("runtime: compose (docker compose ps)")
        return compose.run_task(layout, "status")
    say("runtime: local (processes; DASHTAM_RUNTIME=compose for Docker Compose)")
    rows = []
    secrets_file = layout.secrets_file
    creds = read_credentials(layout.dev_env_file) if layout.dev_env_file.exists() else None
    runtime = LocalRuntime(layout)
    for name in SERVERS:
        tracked = runtime.tracked(name)
        port = None
        if creds:
            port = {
                "postgres": creds.db_port,
                "valkey": creds.redis_port,
                "mail": creds.mail_http_port,
            }[name]
        healthy = None
        if tracked and port and name == "mail":
            healthy = runtime.mail_ready(creds)
        elif tracked and port and secrets_file.exists():
            if name == "postgres":
                healthy = runtime.postgres_ready(port)
            else:
                healthy = valkey_ping(port, runtime.secrets().valkey_password)
        rows.append((name, tracked, port, healthy))
    for app in apps.APPS:
        tracked = process.running(layout.pid_file(app.name))
        port = (
            apps.app_port(app, layout.dev_env_file)
            if layout.dev_env_file.exists()
            else app.default_port
        )
        healthy = None
        if tracked:
            code, _ = apps.check_health(apps.health_url(app, layout.dev_env_file), layout.ca_file)
            healthy = code == 200
        rows.append((app.name, tracked, port, healthy))
    say(f"{'service':<10} {'pid':>8} {'port':>6}  healthy")
    bad = 0
    for name, tracked, port, healthy in rows:
        label = "-" if tracked is None else ("yes" if healthy else "NO")
        bad += tracked is not None and not healthy
        say(f"{name:<10} {tracked.pid if tracked else '-':>8} {port or '-':>6}  {label}")
    return 1 if bad else 0


def logs(layout: Layout, *, service: str | None, follow: bool, lines: int) -> None:
    if _compose(layout, "logs", *(["--follow"] if follow else []), *([service] if service else [])):
        return
    names = [service] if service else [*SERVERS, *(a.name for a in apps.APPS)]
    known = {*SERVERS, *(a.name for a in apps.APPS)}
    if service and service not in known:
        raise InfraError(f"unknown service {service!r}; choose from {', '.join(sorted(known))}")
    files = {n: layout.log_file(n) for n in names if layout.log_file(n).exists()}
    if not files:
        raise InfraError("no logs yet: start the environment with `inv up`")
    prefix = len(files) > 1
    positions = {}
    for name, path in files.items():
        with open(path, errors="replace") as handle:
            tail_lines = handle.readlines()[-lines:]
            positions[name] = handle.tell()
        for line in tail_lines:
            sys.stdout.write(f"{name:>8} | {line}" if prefix else line)
    sys.stdout.flush()
    while follow:
        time.sleep(0.5)
        for name, path in files.items():
            with open(path, errors="replace") as handle:
                handle.seek(positions[name])
                for line in handle:
                    sys.stdout.write(f"{name:>8} | {line}" if prefix else line)
                positions[name] = handle.tell()
        sys.stdout.flush()


def clean(layout: Layout) -> None:
    if _compose(layout, "clean"):
        return
    down(layout)
    _runtime(layout).delete_data()
    for name in (*SERVERS, *(a.name for a in apps.APPS)):
        layout.log_file(name).unlink(missing_ok=True)
    say(f"deleted the servers' data ({layout.data_dir}); env files and certificates kept")


def test_setup(layout: Layout) -> list[str]:
    """Shared servers up (never the dev apps), test schema rebuilt; returns servers started."""
    if _compose(layout, "test-setup"):
        return []
    runtime = _runtime(layout)
    setup(layout, quiet=True)
    started = _start_servers(runtime)
    # Every run starts with no test mail (development's stays).
    test_creds = read_credentials(layout.test_env_file)
    _mail_reader(layout, test_creds).delete(environment_query(test_creds.environment))
    _run_initializer("dashtam_core.init_test_db", layout.test_env_file, layout)
    # The template's audit log goes to its owner; clones copy that (and the janitor's TRUNCATE).
    runtime.after_schema(read_credentials(layout.test_env_file), janitor=True)
    return started


@contextmanager
def test_servers(layout: Layout) -> Iterator[None]:
    """The shared servers up and the template built for a test run (or a benchmark).

    Servers this run started go down again afterwards, unless a developer's `inv up` now uses
    them; the development apps are never started, stopped or restarted.
    """
    started = test_setup(layout)
    try:
        yield
    finally:
        dev_apps_running = any(process.running(layout.pid_file(a.name)) for a in apps.APPS)
        if started and not dev_apps_running:
            _runtime(layout).stop_servers(tuple(started))


def _mail_reader(layout: Layout, creds) -> MailReader:
    return MailReader(f"https://localhost:{creds.mail_http_port}", layout.ca_file)


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


def test(layout: Layout, *, contract_deep: bool, contract_seed: int | None, **options) -> int:
    env = {}
    if contract_deep or contract_seed is not None:
        # The contract test alone, with many more cases than the suite's bounded run; the seed
        # picks them, so the same seed replays the same run.
        if options["suites"]:
            raise InfraError("--contract-deep runs the contract test alone; drop the suites")
        seed = contract_seed if contract_seed is not None else secrets.randbelow(2**32)
        say(f"contract-deep: seed {seed} (replay: inv test --contract-deep --contract-seed {seed})")
        env = {"DASHTAM_CONTRACT_DEEP": "1", "DASHTAM_CONTRACT_SEED": str(seed)}
        options["paths"] = [CONTRACT_TEST]
    if selected_runtime() == "compose":
        if options["cov"]:
            raise InfraError("--cov runs with the local runtime only (DASHTAM_RUNTIME=local)")
        # The same pytest arguments, run in the test project's app container.
        args = pytest_args_for(
            parallel=options["parallel"],
            workers=options["workers"],
            suites=options["suites"],
            extra=options["pytest_args"],
            paths=options.get("paths", ()),
        )
        from infra import compose

        _compose(layout, "test-setup")
        return compose.run_task(layout, "test", *args)
    with test_servers(layout):
        return _pytest(layout, env_overrides=env, **options)


def pytest_args_for(
    *,
    parallel: bool,
    workers: str = "auto",
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


def _pytest(
    layout: Layout,
    *,
    parallel: bool,
    workers: str,
    suites: list[str],
    pytest_args: list[str],
    cov: bool,
    paths: list[str] = (),
    env_overrides: dict[str, str] | None = None,
) -> int:
    args = pytest_args_for(
        parallel=parallel, workers=workers, suites=suites, extra=pytest_args, paths=paths
    )
    env = {**apps.child_env(layout.test_env_file), **(env_overrides or {})}
    if not cov:
        return subprocess.run(
            [sys.executable, "-m", "pytest", *args], env=env, cwd=layout.root, check=False
        ).returncode
    for old in layout.root.glob(".coverage*"):
        old.unlink()
    results = layout.run_dir / "pytest-results.xml"
    results.unlink(missing_ok=True)
    code = subprocess.run(
        [sys.executable, "-m", "coverage", "run", "-m", "pytest", *args, f"--junitxml={results}"],
        env=env,
        cwd=layout.root,
        check=False,
    ).returncode
    subprocess.run(
        [sys.executable, "-m", "coverage", "combine", "-q"], cwd=layout.root, check=False
    )
    report = subprocess.run(
        [sys.executable, "-m", "coverage", "report"], cwd=layout.root, check=False
    )
    subprocess.run([sys.executable, "-m", "coverage", "html", "-q"], cwd=layout.root, check=False)
    say("coverage: HTML report in htmlcov/index.html")
    if code:
        # The report is long: whoever reads only the end of the output (a CI log's tail) still
        # learns which tests failed.
        for line in _failed_tests(results):
            say(f"FAILED {line}")
    return code or report.returncode


def _failed_tests(results: Path) -> list[str]:
    import xml.etree.ElementTree as ET

    try:
        cases = ET.parse(results).getroot().iter("testcase")  # noqa: S314
    except (OSError, ET.ParseError):
        return ["(no test report: see the output above)"]
    failed = []
    for case in cases:
        for problem in (*case.findall("failure"), *case.findall("error")):
            message = (
                (problem.get("message") or "").splitlines()[0][:200]
                if problem.get("message")
                else ""
            )
            failed.append(f"{case.get('classname')}::{case.get('name')} - {message}")
    return failed


def test_clean(layout: Layout) -> None:
    """Drop this checkout's test databases (marked as its own), empty the tests' Valkey index and
    delete the test environment's mail."""
    import redis

    from dashtam_core.safety import expected_marker

    runtime = _runtime(layout)
    _dev, test_creds = read_both(layout)
    # Under Compose the dev project's servers publish the same ports on 127.0.0.1 with the same
    # passwords (infra/compose.py), so the same connections reach them; locally, a server this
    # runtime does not track is not ours to touch.
    if selected_runtime() != "compose" and not runtime.tracked("postgres"):
        raise InfraError(
            "PostgreSQL is not running: nothing to clean (data of a stopped server stays)"
        )

    async def drop() -> list[str]:
        conn = await runtime.superuser_connect(test_creds.db_port)
        try:
            rows = await conn.fetch(
                "SELECT d.datname, shobj_description(d.oid, 'pg_database') AS comment "
                "FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE r.rolname = $1",
                test_creds.db_user,
            )
            # The same rule as init-test-db: the template or one of its clones, by marker.
            names = [
                r["datname"]
                for r in rows
                if r["comment"] is not None
                and r["comment"]
                == expected_marker(
                    target=r["datname"],
                    template=test_creds.db_name,
                    project_id=test_creds.project_id,
                )
            ]
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
        apps.wait_healthy(api, layout=layout, env_file=env_file, timeout=90)
        say("restarted the API with the new key")
    if not _runtime(layout).tracked("postgres"):
        raise InfraError("PostgreSQL is not running: start it with `inv up`, then run this again")
    _run_initializer("dashtam_core.reencrypt", env_file, layout)


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
