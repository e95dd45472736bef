"""The local runtime: one PostgreSQL, one Valkey and one mail catcher as processes, shared by
dev and test, and the development apps as uvicorn processes (infra/apps.py).

``LocalRuntime`` implements the tasks' interface (infra/runtime/base.py) by orchestrating the
servers, each in a module of its own: postgres.py, valkey.py and mail_catcher.py, on the data
directories and as the user data.py says. The private projects of tests and benchmarks
(infra/private_project.py) use the same objects directly.

State lives under .dashtam/ (pid files, logs, the servers' admin secrets); the data directories
under .dashtam/data, or, as root, under /var/lib/dashtam/<key of the checkout's path and id> owned
by an unprivileged service user (PostgreSQL refuses to run as root).
"""

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import asyncpg

from infra import apps, ports, schema, testrun
from infra.envfiles import Credentials, read_both, read_credentials
from infra.errors import InfraError
from infra.layout import Layout
from infra.mail import MailReader, environment_query
from infra.runtime import postgres, process
from infra.runtime.base import say
from infra.runtime.data import ServerData
from infra.runtime.mail_catcher import MailCatcher, mail_url
from infra.runtime.postgres import Postgres
from infra.runtime.valkey import Valkey

SERVERS = ("postgres", "valkey", "mail")


class LocalRuntime:
    name = "local"
    described = "local (processes; `inv runtime --use compose` or DASHTAM_RUNTIME=compose for Docker Compose)"
    measures_coverage = True

    def __init__(self, layout: Layout | None = None):
        self.layout = layout or Layout()
        self.data = ServerData(self.layout)
        self.postgres = Postgres(self.data)
        self.valkey = Valkey(self.data)
        self.mail = MailCatcher(self.data)
        self.servers = {s.name: s for s in (self.postgres, self.valkey, self.mail)}

    # --- the tasks (infra/runtime/base.py) -----------------------------------------------------

    def up(self, *, reload: bool, workers: int, timeout: float) -> list[str]:
        started: list[str] = []

        def stop_apps() -> None:
            # A port moved (a private project's, infra/ports.py): the apps read the env files
            # as they started, and start again from the new ones.
            for app in apps.APPS:
                apps.stop_app(app, layout=self.layout)
                if app.name in started:
                    started.remove(app.name)

        attempt = lambda: self._up(started, reload, workers, timeout)  # noqa: E731
        ports.retrying(self.layout, attempt, moved=stop_apps)
        return started

    def _up(self, started: list[str], reload: bool, workers: int, timeout: float) -> None:
        """Start what is down, appending its name to ``started``; again after a port of a
        private project was taken and picked anew (``ports.retrying``)."""
        env_file = self.layout.dev_env_file
        dev = read_credentials(env_file)
        apps_were_up = all(process.running(self.layout.pid_file(a.name)) for a in apps.APPS)
        at_head: str | None = None

        def start_apps() -> None:
            for app in apps.APPS:
                # Only the API scales out; the callback server forwards a handful of redirects.
                app_workers = workers if app is apps.APPS[0] else 0
                if apps.start_app(
                    app, layout=self.layout, env_file=env_file, reload=reload, workers=app_workers
                ):
                    started.append(app.name)

        def as_soon_as_postgres_is_up() -> None:
            # Nothing to migrate: the apps start now, their imports (seconds) beside the other
            # servers' start and the superuser steps, instead of after them. Anything else (a
            # schema behind, a first start) waits for init-db as before.
            nonlocal at_head
            if not apps_were_up:
                at_head = schema.at_head(dev)
                if at_head is not None:
                    start_apps()

        servers = self._start_servers(when_postgres_is_up=as_soon_as_postgres_is_up, retry=False)
        started[:0] = servers
        if servers or not apps_were_up:
            if at_head is None:
                at_head = schema.at_head(dev)
            if at_head is not None:
                say(f"init-db: database {dev.db_name}: at head {at_head}, nothing to do")
            else:
                apps.run_module("dashtam_core.init_db", env_file, self.layout)
            self.after_schema(dev)
        start_apps()
        for app in apps.APPS:
            apps.wait_healthy(app, layout=self.layout, env_file=env_file, timeout=timeout)

    def down(self) -> list[str]:
        # The apps first (their requests under way finish against the servers), both at once:
        # each stop is a wait for a process to drain and exit.
        stopped = _at_once(lambda app: apps.stop_app(app, layout=self.layout), apps.APPS)
        names = [app.name for app, done in zip(apps.APPS, stopped, strict=True) if done]
        return names + self.stop_servers()

    def status(self) -> int:
        layout = self.layout
        rows = []
        creds = read_credentials(layout.dev_env_file) if layout.dev_env_file.exists() else None
        for server in self.servers.values():
            tracked = server.tracked()
            port = server.port(creds) if creds else None
            healthy = server.healthy(creds) if tracked and creds else None
            rows.append((server.name, tracked, port, healthy))
        for app in apps.APPS:
            tracked = process.running(layout.pid_file(app.name))
            port = (
                apps.app_port(app, layout.dev_env_file)
                if layout.dev_env_file.exists()
                else app.default_port
            )
            healthy = None
            if tracked:
                code, _ = apps.check_health(
                    apps.health_url(app, layout.dev_env_file), layout.ca_file
                )
                healthy = code == 200
            rows.append((app.name, tracked, port, healthy))
        say(f"{'service':<10} {'pid':>8} {'port':>6}  healthy")
        bad = 0
        for name, tracked, port, healthy in rows:
            label = "-" if tracked is None else ("yes" if healthy else "NO")
            bad += tracked is not None and not healthy
            say(f"{name:<10} {tracked.pid if tracked else '-':>8} {port or '-':>6}  {label}")
        return 1 if bad else 0

    def logs(self, *, service: str | None, follow: bool, lines: int) -> None:
        layout = self.layout
        known = {*SERVERS, *(a.name for a in apps.APPS)}
        if service and service not in known:
            raise InfraError(f"unknown service {service!r}; choose from {', '.join(sorted(known))}")
        names = [service] if service else [*SERVERS, *(a.name for a in apps.APPS)]
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

    def clean(self) -> None:
        self.delete_data()
        for name in (*SERVERS, *(a.name for a in apps.APPS)):
            self.layout.log_file(name).unlink(missing_ok=True)
        say(f"deleted the servers' data ({self.layout.data_dir}); env files and certificates kept")

    def servers_running(self) -> bool:
        return self.tracked("postgres") is not None

    def prepare_tests(self) -> list[str]:
        started = self._start_servers()
        # Every run starts with no test mail (development's stays).
        test_creds = read_credentials(self.layout.test_env_file)
        MailReader(mail_url(test_creds), self.layout.ca_file).delete(
            environment_query(test_creds.environment)
        )
        apps.run_module("dashtam_core.init_test_db", self.layout.test_env_file, self.layout)
        # The template's audit log goes to its owner; clones copy that (and the janitor's
        # TRUNCATE).
        self.after_schema(test_creds, janitor=True)
        return started

    def release_tests(self, started: Sequence[str]) -> None:
        dev_apps_running = any(process.running(self.layout.pid_file(a.name)) for a in apps.APPS)
        if started and not dev_apps_running:
            self.stop_servers(tuple(started))

    def run_tests(self, args: Sequence[str], *, env: Mapping[str, str], cov: bool) -> int:
        test_env = {**apps.child_env(self.layout.test_env_file), **env}
        return testrun.pytest(self.layout, args, env=test_env, cov=cov)

    def _start_servers(self, *, when_postgres_is_up=None, retry: bool = True) -> list[str]:
        for directory, checkout in self.data.remove_orphaned():
            say(f"  removed {directory}: the servers' data of {checkout}, a checkout that is gone")
        return self.start_servers(when_postgres_is_up=when_postgres_is_up, retry=retry)

    # --- the superuser's steps (infra/runtime/postgres.py) ------------------------------------

    async def superuser_connect(self, port: int, database: str = "postgres") -> asyncpg.Connection:
        return await postgres.superuser_connect(self.layout, port, database)

    def after_schema(self, creds: Credentials, *, janitor: bool = False) -> None:
        postgres.after_schema(self.layout, creds, janitor=janitor)

    # --- the servers together ---------------------------------------------------------------

    def tracked(self, server: str) -> process.Tracked | None:
        """The server if it runs on this checkout's data, whether we started it or not.

        One restarted outside the runtime (after a crash, `pg_ctl restart`, a Valkey started
        by hand with our config) is known by the pid file it keeps in its own data directory
        (PostgreSQL's postmaster.pid, the pidfile in valkey.conf), checked against the running
        process, and tracked like ours from then on: status shows it, up leaves it running,
        down stops it.
        """
        return self.servers[server].tracked()

    def start_servers(
        self, *, when_postgres_is_up: Callable[[], None] | None = None, retry: bool = True
    ) -> list[str]:
        """Start whatever is down and bootstrap; returns the servers this call started.
        ``when_postgres_is_up`` runs as soon as PostgreSQL answers, before the rest. A private
        project's server whose port was taken starts on a new one (infra/ports.py), unless
        ``retry`` is off (the caller retries more than the servers)."""
        started: list[str] = []

        def start() -> None:
            dev, test = read_both(self.layout)
            self.data.adopt_unstamped()
            if self.postgres.start(dev.db_port):
                started.append("postgres")
            if when_postgres_is_up is not None:
                when_postgres_is_up()
            if self.valkey.start(dev, test):
                started.append("valkey")
            if self.mail.start(dev):
                started.append("mail")
            self.postgres.bootstrap(dev, test)

        if retry:
            ports.retrying(self.layout, start)
        else:
            start()
        return started

    def stop_servers(self, which: tuple[str, ...] = SERVERS) -> list[str]:
        """The mail catcher and Valkey at once (Valkey saves its data as it stops), then
        PostgreSQL, the last anything may still write to."""
        first = [name for name in ("mail", "valkey") if name in which]
        done = _at_once(lambda name: self.servers[name].stop(), first)
        stopped = [name for name, stopped in zip(first, done, strict=True) if stopped]
        if "postgres" in which and self.postgres.stop():
            stopped.append("postgres")
        return stopped

    def delete_data(self) -> None:
        if any(self.tracked(s) for s in SERVERS):
            raise InfraError("stop the servers before deleting their data (`inv down`)")
        self.data.delete()


def _at_once(stop: Callable, things: Sequence) -> list:
    """``stop`` applied to each of ``things`` in threads of its own (each is mostly a wait for a
    process to exit); the results in order."""
    with ThreadPoolExecutor(max_workers=max(1, len(things))) as pool:
        return list(pool.map(stop, things))
