"""The local runtime: one PostgreSQL, one Valkey and one mail catcher as processes, shared by
dev and test, and the development apps as uvicorn processes (infra/apps.py).

``LocalRuntime`` implements the tasks' interface (infra/runtime/base.py) first, then the
servers' mechanics it is built on (start, stop, bootstrap, adopt, data), which the private
projects of tests and benchmarks also use directly.

State lives under .dashtam/ (pid files, logs, the servers' admin secrets); the data directories
under .dashtam/data, or, as root, under /var/lib/dashtam/<key of the checkout's path and id> owned
by an unprivileged service user (PostgreSQL refuses to run as root).
"""

import asyncio
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil

from infra import apps, schema, testrun
from infra.envfiles import Credentials, read_both, read_credentials
from infra.errors import InfraError
from infra.files import read_env, token, write_private
from infra.layout import ROOT, ROOT_DATA_BASE, Layout, running_as_root, service_user
from infra.mail import MailReader, environment_query
from infra.runtime import binaries, process
from infra.runtime.base import say

SERVERS = ("postgres", "valkey", "mail")
START_TIMEOUT = 60.0
SUPERUSER = "postgres"


@dataclass
class ServerSecrets:
    postgres_password: str
    valkey_password: str


class WrongSecrets(Exception):
    """The server answers, and refuses the password in .dashtam/secrets.env."""


class LocalRuntime:
    name = "local"
    described = "local (processes; `inv runtime --use compose` or DASHTAM_RUNTIME=compose for Docker Compose)"
    measures_coverage = True

    def __init__(self, layout: Layout | None = None):
        self.layout = layout or Layout()

    # --- the tasks (infra/runtime/base.py) -----------------------------------------------------

    def up(self, *, reload: bool, workers: int, timeout: float) -> list[str]:
        env_file = self.layout.dev_env_file
        dev = read_credentials(env_file)
        apps_started: list[str] = []
        apps_were_up = all(process.running(self.layout.pid_file(a.name)) for a in apps.APPS)
        at_head: str | None = None

        def start_apps() -> None:
            for app in apps.APPS:
                # Only the API scales out; the callback server forwards a handful of redirects.
                app_workers = workers if app is apps.APPS[0] else 0
                if apps.start_app(
                    app, layout=self.layout, env_file=env_file, reload=reload, workers=app_workers
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

        servers = self._start_servers(when_postgres_is_up=as_soon_as_postgres_is_up)
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
        return servers + apps_started

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
        for name in SERVERS:
            tracked = self.tracked(name)
            port = None
            if creds:
                port = {
                    "postgres": creds.db_port,
                    "valkey": creds.redis_port,
                    "mail": creds.mail_http_port,
                }[name]
            healthy = None
            if tracked and port and name == "mail":
                healthy = self.mail_ready(creds)
            elif tracked and port and layout.secrets_file.exists():
                if name == "postgres":
                    healthy = self.postgres_ready(port)
                else:
                    healthy = valkey_ping(port, self.secrets().valkey_password)
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
        MailReader(self.mail_url(test_creds), self.layout.ca_file).delete(
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

    def _start_servers(self, *, when_postgres_is_up=None) -> list[str]:
        for directory, checkout in self.remove_orphaned_data():
            say(f"  removed {directory}: the servers' data of {checkout}, a checkout that is gone")
        return self.start_servers(when_postgres_is_up=when_postgres_is_up)

    # --- identity and places -----------------------------------------------------------------

    @property
    def user(self) -> str | None:
        """The unprivileged user the servers run as when we are root; None otherwise."""
        return service_user() if running_as_root() else None

    @property
    def postgres_data(self) -> Path:
        return self.layout.data_dir / "postgres"

    @property
    def valkey_dir(self) -> Path:
        return self.layout.data_dir / "valkey"

    @property
    def mail_dir(self) -> Path:
        return self.layout.data_dir / "mail"

    def secrets(self) -> ServerSecrets:
        """The servers' own admin passwords (never in the app's env files), made once."""
        path = self.layout.secrets_file
        if not path.exists():
            write_private(
                path,
                f"POSTGRES_SUPERUSER_PASSWORD={token()}\nVALKEY_ADMIN_PASSWORD={token()}\n",
            )
        values = read_env(path)
        return ServerSecrets(values["POSTGRES_SUPERUSER_PASSWORD"], values["VALKEY_ADMIN_PASSWORD"])

    def _ensure_service_user(self) -> None:
        if self.user is not None:  # pragma: root only
            _ensure_system_user(self.user)

    def _own_dir(self, path: Path) -> None:
        """Create path (mode 0700) owned by whoever runs the servers."""
        path.mkdir(parents=True, exist_ok=True)
        if self.user is not None:  # pragma: root only
            self.layout.data_dir.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.layout.data_dir.parent, 0o755)
            entry = pwd.getpwnam(self.user)
            for p in (self.layout.data_dir, path):
                os.chown(p, entry.pw_uid, entry.pw_gid)
                os.chmod(p, 0o700)
            if not self.layout.data_owner_file.exists():
                self._stamp_data()
        else:
            os.chmod(path, 0o700)

    def _write_as_owner(self, path: Path, content: str) -> None:
        write_private(path, content)
        if self.user is not None:  # pragma: root only
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    # --- PostgreSQL ----------------------------------------------------------------------------

    def _pg_bin(self) -> Path:
        bin_dir = binaries.postgres_bin_dir()
        if self.user is None:
            return bin_dir
        return binaries.shareable_postgres(
            bin_dir, _version_of(bin_dir / "postgres")
        )  # pragma: root only

    def _initdb(self, bin_dir: Path, secrets: ServerSecrets) -> None:
        self._own_dir(self.postgres_data)
        pwfile = self.postgres_data.parent / ".pgpass-init"
        self._write_as_owner(pwfile, secrets.postgres_password + "\n")
        try:
            result = subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.postgres_data),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-instructions",
                ],
                capture_output=True,
                text=True,
                check=False,
                user=self.user,
                cwd=self.postgres_data.parent,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(self.postgres_data, ignore_errors=True)
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise InfraError(f"initdb failed: {detail[-1] if detail else 'no output'}")

    def start_postgres(self, port: int) -> bool:
        """Start PostgreSQL unless running; True if this call started it."""
        pid_file = self.layout.pid_file("postgres")
        if self.tracked("postgres"):
            return False
        process.require_free_port(
            port, "PostgreSQL", "DASHTAM_POSTGRES_PORT (then re-run `inv setup`)"
        )
        self._ensure_service_user()
        secrets = self.secrets()
        bin_dir = self._pg_bin()
        if not (self.postgres_data / "PG_VERSION").exists():
            self._initdb(bin_dir, secrets)
        argv = [
            str(bin_dir / "postgres"),
            "-D",
            str(self.postgres_data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            # TCP only: no socket files in shared /tmp, and every login goes through a password.
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
            "-c",
            "password_encryption=scram-sha-256",
        ]
        log = self.layout.log_file("postgres")
        tracked = process.spawn(
            argv, pid_file=pid_file, log_file=log, user=self.user, cwd=self.postgres_data.parent
        )

        alive = lambda: process.running(pid_file) is not None  # noqa: E731
        ready = lambda: self.postgres_ready(port, strict=True)  # noqa: E731
        try:
            started = process.wait_until(ready, timeout=START_TIMEOUT, interval=0.2, alive=alive)
        except WrongSecrets:
            process.stop(pid_file, sig=signal.SIGINT, timeout=60)
            raise InfraError(
                f"PostgreSQL in {self.postgres_data} refuses this checkout's superuser password: "
                f"the cluster was made with other secrets than {self.layout.secrets_file}; "
                "`inv clean` deletes it (and its data) so that the next `inv up` makes a new one"
            ) from None
        if not started:
            process.stop(pid_file, sig=signal.SIGQUIT)
            raise InfraError(
                f"PostgreSQL did not start (pid {tracked.pid}); last lines of {log}:\n"
                + process.tail(log)
            )
        return True

    def postgres_ready(self, port: int, *, strict: bool = False) -> bool:
        """Does PostgreSQL on port accept the superuser's password login?

        strict: a refused password raises WrongSecrets instead of answering False, for the
        caller that started the server and would otherwise wait out its whole timeout.
        """
        return asyncio.run(self._can_login(port, self.secrets().postgres_password, strict))

    async def _can_login(self, port: int, password: str, strict: bool = False) -> bool:
        try:
            conn = await asyncpg.connect(
                host="127.0.0.1",
                port=port,
                user=SUPERUSER,
                password=password,
                database="postgres",
                timeout=2,
            )
        except asyncpg.InvalidPasswordError:
            if strict:
                raise WrongSecrets from None
            return False
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    def stop_postgres(self) -> bool:
        # SIGINT is PostgreSQL's "fast" shutdown: sessions are closed, data is flushed.
        self.tracked("postgres")
        return process.stop(self.layout.pid_file("postgres"), sig=signal.SIGINT, timeout=60)

    def bootstrap(self, dev: Credentials, test: Credentials) -> None:
        """Roles and databases of both environments (infra/postgres/bootstrap.sql)."""
        self._psql(
            dev.db_port,
            "postgres",
            self.layout.bootstrap_sql,
            bootstrap_variables(dev, test),
        )
        asyncio.run(self._mark_older_test_database(test))

    async def _mark_older_test_database(self, test: Credentials) -> None:
        """Mark a test database that a checkout made before markers existed, if it is one.

        Only an unmarked database the test role owns, on this checkout's own server, holding
        nothing but Dashtam's tables: anything else stays unmarked, and init-test-db refuses it.
        """
        conn = await self.superuser_connect(test.db_port)
        try:
            row = await conn.fetchrow(
                "SELECT shobj_description(d.oid, 'pg_database') AS comment, r.rolname AS owner "
                "FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = $1",
                test.db_name,
            )
            if row is None or row["comment"] is not None or row["owner"] != test.db_user:
                return
            # Only now (rarely): these import SQLAlchemy and the models, half a second.
            from dashtam_core.migrate import dashtam_table_names
            from dashtam_core.safety import (
                RELATIONS_QUERY,
                comment_on_database,
                foreign_tables,
                template_marker,
            )

            inside = await self.superuser_connect(test.db_port, test.db_name)
            try:
                relations = [tuple(r) for r in await inside.fetch(RELATIONS_QUERY)]
            finally:
                await inside.close()
            if not foreign_tables(relations, dashtam_table_names()):
                marker = template_marker(test.project_id)
                await conn.execute(comment_on_database(test.db_name, marker))
        finally:
            await conn.close()

    def after_schema(self, creds: Credentials, *, janitor: bool = False) -> None:
        """Superuser steps once a schema exists (infra/postgres/after_schema.sql)."""
        self._psql(
            creds.db_port,
            creds.db_name,
            self.layout.root / "infra/postgres/after_schema.sql",
            {
                "DASHTAM_APP_USER": creds.db_user,
                "DASHTAM_JANITOR_GRANT": "TRUNCATE" if janitor else "",
                "DASHTAM_LOCK_SCHEMA": "off" if janitor else "on",
            },
        )

    def _psql(self, port: int, database: str, script: Path, variables: dict[str, str]) -> None:
        psql = binaries.postgres_bin_dir() / "psql"
        env = {
            **os.environ,
            "PGPASSWORD": self.secrets().postgres_password,
            "PGCONNECT_TIMEOUT": "5",
            **variables,
        }
        result = subprocess.run(
            [
                str(psql),
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                str(script),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise InfraError(f"{script.name} failed on {database}: {result.stderr.strip()}")

    async def superuser_connect(self, port: int, database: str = "postgres") -> asyncpg.Connection:
        return await asyncpg.connect(
            host="127.0.0.1",
            port=port,
            user=SUPERUSER,
            password=self.secrets().postgres_password,
            database=database,
        )

    # --- Valkey ----------------------------------------------------------------------------

    def _valkey_config(self, port: int, dev: Credentials, test: Credentials, admin: str) -> str:
        users = "\n".join(valkey_acl_lines(dev, test))
        return f"""# Generated by infra/runtime/local.py at each start; edits are overwritten.
bind 127.0.0.1
port {port}
protected-mode yes
daemonize no
dir {self.valkey_dir}
# Written even in the foreground: how the runtime knows this server after a restart elsewhere.
pidfile {self.valkey_dir / "valkey.pid"}
dbfilename dump.rdb
save 60 1 300 10
appendonly no
# Index 0 is development; tests take one index per xdist worker.
databases 64
logfile ""
requirepass {admin}
{users}
"""

    def start_valkey(self, dev: Credentials, test: Credentials) -> bool:
        pid_file = self.layout.pid_file("valkey")
        if self.tracked("valkey"):
            return False
        port = dev.redis_port
        process.require_free_port(port, "Valkey", "DASHTAM_VALKEY_PORT (then re-run `inv setup`)")
        self._ensure_service_user()
        server = binaries.valkey_server()
        if self.user is not None:  # pragma: root only
            server = binaries.shareable_file(server, f"valkey-{_version_of(server)}")
        self._own_dir(self.valkey_dir)
        admin = self.secrets().valkey_password
        config = self.valkey_dir / "valkey.conf"
        self._write_as_owner(config, self._valkey_config(port, dev, test, admin))
        log = self.layout.log_file("valkey")
        tracked = process.spawn(
            [str(server), str(config)],
            pid_file=pid_file,
            log_file=log,
            user=self.user,
            cwd=self.valkey_dir,
        )
        alive = lambda: process.running(pid_file) is not None  # noqa: E731
        if not process.wait_until(
            lambda: valkey_ping(port, admin), timeout=START_TIMEOUT, alive=alive
        ):
            process.stop(pid_file, sig=signal.SIGKILL)
            raise InfraError(
                f"Valkey did not start (pid {tracked.pid}); last lines of {log}:\n"
                + process.tail(log)
            )
        return True

    def stop_valkey(self) -> bool:
        # SIGTERM: Valkey saves its snapshot, then exits.
        self.tracked("valkey")
        return process.stop(self.layout.pid_file("valkey"), sig=signal.SIGTERM, timeout=60)

    # --- the mail catcher ---------------------------------------------------------------------

    def mail_url(self, creds: Credentials) -> str:
        return f"https://localhost:{creds.mail_http_port}"

    def start_mail(self, creds: Credentials) -> bool:
        """infra/mailcatcher.py under uvicorn (HTTPS), its SMTP server inside; as whoever runs
        `inv` (it reads the project's certificate key), keeping mail in the servers' data."""
        pid_file = self.layout.pid_file("mail")
        if process.running(pid_file):
            return False
        for port, setting in ((creds.mail_smtp_port, "SMTP"), (creds.mail_http_port, "HTTP")):
            process.require_free_port(
                port, f"the mail catcher's {setting} server", f"MAIL_CATCHER_{setting}_PORT"
            )
        self._own_dir(self.mail_dir)
        cert, key = self.layout.certs_dir / "server.pem", self.layout.certs_dir / "server-key.pem"
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "infra.mailcatcher:create_app",
            "--factory",
            "--app-dir",
            str(ROOT),  # infra/ is the checkout's, also for a project elsewhere (infra/private.py)
            "--host",
            "127.0.0.1",
            "--port",
            str(creds.mail_http_port),
            "--ssl-certfile",
            str(cert),
            "--ssl-keyfile",
            str(key),
            "--no-server-header",
            "--no-access-log",
        ]
        env = {
            **os.environ,
            "DASHTAM_MAIL_DIR": str(self.mail_dir),
            "DASHTAM_MAIL_SMTP_PORT": str(creds.mail_smtp_port),
            "DASHTAM_MAIL_TLS_CERT": str(cert),
            "DASHTAM_MAIL_TLS_KEY": str(key),
        }
        log = self.layout.log_file("mail")
        tracked = process.spawn(
            argv, pid_file=pid_file, log_file=log, env=env, cwd=self.layout.root
        )
        alive = lambda: process.running(pid_file) is not None  # noqa: E731
        if not process.wait_until(
            lambda: self.mail_ready(creds), timeout=START_TIMEOUT, alive=alive
        ):
            process.stop(pid_file, sig=signal.SIGKILL)
            raise InfraError(
                f"the mail catcher did not start (pid {tracked.pid}); last lines of {log}:\n"
                + process.tail(log)
            )
        return True

    def mail_ready(self, creds: Credentials) -> bool:
        from infra.apps import check_health

        code, _ = check_health(f"{self.mail_url(creds)}/health", self.layout.ca_file, timeout=2)
        return code == 200

    def stop_mail(self) -> bool:
        return process.stop(self.layout.pid_file("mail"), sig=signal.SIGTERM, timeout=15)

    # --- all ------------------------------------------------------------------------------

    def tracked(self, server: str) -> process.Tracked | None:
        """The server if it runs on this checkout's data, whether we started it or not.

        One restarted outside the runtime (after a crash, `pg_ctl restart`, a Valkey started
        by hand with our config) is known by the pid file it keeps in its own data directory
        (PostgreSQL's postmaster.pid, the pidfile in valkey.conf), checked against the running
        process, and tracked like ours from then on: status shows it, up leaves it running,
        down stops it.
        """
        pid_file = self.layout.pid_file(server)
        found = process.running(pid_file)
        if found is not None or server == "mail":
            return found
        pid = self._postmaster_pid() if server == "postgres" else self._valkey_pid()
        return process.adopt(pid, pid_file=pid_file) if pid else None

    def _postmaster_pid(self) -> int | None:
        """postmaster.pid: the pid on its first line, the data directory on its second."""
        try:
            lines = (self.postgres_data / "postmaster.pid").read_text().splitlines()
            pid, data = int(lines[0]), lines[1]
            proc = psutil.Process(pid)
            ours = Path(data) == self.postgres_data and "postgres" in proc.name()
        except (OSError, ValueError, IndexError, psutil.Error):
            return None
        return pid if ours else None

    def _valkey_pid(self) -> int | None:
        """valkey.pid in its data directory, for a Valkey working in that directory."""
        try:
            pid = int((self.valkey_dir / "valkey.pid").read_text().strip())
            proc = psutil.Process(pid)
            ours = Path(proc.cwd()) == self.valkey_dir and (
                "valkey" in proc.name() or "redis" in proc.name()
            )
        except (OSError, ValueError, psutil.Error):
            return None
        return pid if ours else None

    def start_servers(self, *, when_postgres_is_up: Callable[[], None] | None = None) -> list[str]:
        """Start whatever is down and bootstrap; returns the servers this call started.
        ``when_postgres_is_up`` runs as soon as PostgreSQL answers, before the rest."""
        dev, test = read_both(self.layout)
        started = []
        self._adopt_unstamped_data()
        if self.start_postgres(dev.db_port):
            started.append("postgres")
        if when_postgres_is_up is not None:
            when_postgres_is_up()
        if self.start_valkey(dev, test):
            started.append("valkey")
        if self.start_mail(dev):
            started.append("mail")
        self.bootstrap(dev, test)
        return started

    def stop_servers(self, which: tuple[str, ...] = SERVERS) -> list[str]:
        """The mail catcher and Valkey at once (Valkey saves its data as it stops), then
        PostgreSQL, the last anything may still write to."""
        first = [name for name in ("mail", "valkey") if name in which]
        stops = {"mail": self.stop_mail, "valkey": self.stop_valkey}
        stopped = [
            n for n, done in zip(first, _at_once(lambda n: stops[n](), first), strict=True) if done
        ]
        if "postgres" in which and self.stop_postgres():
            stopped.append("postgres")
        return stopped

    def _adopt_unstamped_data(self) -> None:  # pragma: root only
        """Move data made before checkouts were stamped (keyed by the path alone) to its new key.

        Only when this checkout's secrets are older than that cluster, that is, made it: a
        checkout deleted and cloned again at the same path has newer secrets and starts afresh.
        """
        data = self.layout.data_dir
        if self.user is None or data.exists() or data.parent != ROOT_DATA_BASE:
            return
        key = hashlib.sha256(str(self.layout.root).encode()).hexdigest()[:12]
        legacy, secrets_file = ROOT_DATA_BASE / key, self.layout.secrets_file
        made = legacy / "postgres" / "PG_VERSION"
        if (legacy / "checkout").exists() or not made.exists() or not secrets_file.exists():
            return
        if secrets_file.stat().st_mtime > made.stat().st_mtime:
            return
        legacy.rename(data)
        self._stamp_data()

    def _stamp_data(self) -> None:  # pragma: root only
        """Say in the data directory which checkout (path, id) it belongs to."""
        stamp = f"{self.layout.root}\n{self.layout.project_id()}\n"
        write_private(self.layout.data_owner_file, stamp)

    def remove_orphaned_data(self) -> list[tuple[Path, str]]:  # pragma: root only
        """As root: delete data directories whose checkout is gone; returns (directory, checkout).

        Such a directory lives outside its checkout only because PostgreSQL will not run as
        root; it is part of the checkout as .dashtam/data is for everyone else, and useless
        without it: the passwords that open it were in that checkout's .dashtam/secrets.env.
        Only directories stamped with their checkout go, and only while no server runs on them.
        """
        if self.user is None or not ROOT_DATA_BASE.is_dir():
            return []
        removed = []
        for directory in ROOT_DATA_BASE.iterdir():
            try:
                checkout, project_id = (directory / "checkout").read_text().splitlines()[:2]
            except (OSError, ValueError):
                continue  # not ours, or from before the stamp: left alone
            id_file = Layout(Path(checkout)).project_id_file
            if id_file.is_file() and id_file.read_text().strip() == project_id:
                continue
            if _postmaster_alive(directory / "postgres"):
                continue
            shutil.rmtree(directory, ignore_errors=True)
            removed.append((directory, checkout))
        return removed

    def delete_data(self) -> None:
        if any(self.tracked(s) for s in SERVERS):
            raise InfraError("stop the servers before deleting their data (`inv down`)")
        shutil.rmtree(self.layout.data_dir, ignore_errors=True)


def _at_once(stop: Callable, things: Sequence) -> list:
    """``stop`` applied to each of ``things`` in threads of its own (each is mostly a wait for a
    process to exit); the results in order."""
    with ThreadPoolExecutor(max_workers=max(1, len(things))) as pool:
        return list(pool.map(stop, things))


def _ensure_system_user(name: str) -> None:  # pragma: root only
    """Make the unprivileged system user the servers run as under root, unless it exists."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        nologin = shutil.which("nologin") or "/usr/sbin/nologin"
        result = subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                nologin,
                name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise InfraError(
                f"cannot create the service user {name!r} the servers run as under root: "
                f"{result.stderr.strip() or 'useradd failed'}"
            ) from None


def _postmaster_alive(data: Path) -> bool:  # pragma: root only
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def bootstrap_variables(main: Credentials, test: Credentials) -> dict[str, str]:
    """What infra/postgres/bootstrap.sql reads (with psql's getenv), in both runtimes."""
    # Imported here, not at the top: `inv status` and friends import this module and should
    # not pay for SQLAlchemy and Alembic.
    from dashtam_core.safety import template_marker

    return {
        "DASHTAM_DEV_DB_USER": main.db_user,
        "DASHTAM_DEV_DB_PASSWORD": main.db_password,
        "DASHTAM_DEV_DB_NAME": main.db_name,
        "DASHTAM_TEST_DB_USER": test.db_user,
        "DASHTAM_TEST_DB_PASSWORD": test.db_password,
        "DASHTAM_TEST_DB_NAME": test.db_name,
        "DASHTAM_TEST_DB_MARKER": template_marker(test.project_id),
    }


def valkey_acl_lines(*environments: Credentials) -> list[str]:
    """Valkey's users, one per environment (both runtimes): each logs in as its own user, and
    -@admin keeps CONFIG, SHUTDOWN, DEBUG and friends for the runtime (the default user) alone."""
    return [f"user {c.redis_user} on >{c.redis_password} ~* &* +@all -@admin" for c in environments]


def valkey_ping(port: int, password: str, user: str = "default") -> bool:
    import redis

    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        username=user,
        password=password,
        socket_connect_timeout=1,
        socket_timeout=1,
    )
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _version_of(binary: Path) -> str:  # pragma: root only
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False)
    words = result.stdout.split()
    for word in words:
        if word[:1].isdigit():
            return word
        if word.startswith("v=") and word[2:3].isdigit():
            return word[2:]
    return "unknown"
