"""PostgreSQL: the local runtime's server (``Postgres``: initdb, start, stop, bootstrap), and the
superuser's steps both runtimes share (``superuser_connect``, ``after_schema``: Compose publishes
its PostgreSQL on 127.0.0.1 at the same port with the same superuser password).

One cluster serves both environments; roles and databases come from infra/postgres/bootstrap.sql,
the same file the Compose image runs.
"""

import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path

import asyncpg
import psutil

from infra.envfiles import Credentials
from infra.errors import InfraError
from infra.layout import Layout
from infra.runtime import binaries, process
from infra.runtime.data import START_TIMEOUT, ServerData, server_secrets

SUPERUSER = "postgres"


class WrongSecrets(Exception):
    """The server answers, and refuses the password in .dashtam/secrets.env."""


async def superuser_connect(
    layout: Layout, port: int, database: str = "postgres", *, timeout: float = 60
) -> asyncpg.Connection:
    return await asyncpg.connect(
        host="127.0.0.1",
        port=port,
        user=SUPERUSER,
        password=server_secrets(layout).postgres_password,
        database=database,
        timeout=timeout,
    )


def run_script(
    layout: Layout, port: int, database: str, script: Path, variables: dict[str, str]
) -> None:
    """psql -f ``script`` as the superuser; the script reads ``variables`` with getenv."""
    env = {
        **os.environ,
        "PGPASSWORD": server_secrets(layout).postgres_password,
        "PGCONNECT_TIMEOUT": "5",
        **variables,
    }
    psql = binaries.postgres_bin_dir() / "psql"
    argv = [str(psql), "-X", "-q", "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER]
    argv += ["-d", database, "-v", "ON_ERROR_STOP=1", "-f", str(script)]
    result = subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise InfraError(f"{script.name} failed on {database}: {result.stderr.strip()}")


def after_schema(layout: Layout, creds: Credentials, *, janitor: bool = False) -> None:
    """Superuser steps once a schema exists (infra/postgres/after_schema.sql)."""
    run_script(
        layout,
        creds.db_port,
        creds.db_name,
        layout.root / "infra/postgres/after_schema.sql",
        {
            "DASHTAM_APP_USER": creds.db_user,
            "DASHTAM_JANITOR_GRANT": "TRUNCATE" if janitor else "",
            "DASHTAM_LOCK_SCHEMA": "off" if janitor else "on",
        },
    )


def bootstrap_variables(main: Credentials, test: Credentials) -> dict[str, str]:
    """What infra/postgres/bootstrap.sql reads (with psql's getenv), in both runtimes."""
    # Imported here, not at the top: `inv status` and friends import this module and should
    # not pay for SQLAlchemy and Alembic.
    from dashtam_core.test_database_guard import template_marker

    return {
        "DASHTAM_DEV_DB_USER": main.db_user,
        "DASHTAM_DEV_DB_PASSWORD": main.db_password,
        "DASHTAM_DEV_DB_NAME": main.db_name,
        "DASHTAM_TEST_DB_USER": test.db_user,
        "DASHTAM_TEST_DB_PASSWORD": test.db_password,
        "DASHTAM_TEST_DB_NAME": test.db_name,
        "DASHTAM_TEST_DB_MARKER": template_marker(test.project_id),
    }


class Postgres:
    """The checkout's PostgreSQL cluster, run as a process on 127.0.0.1 (TCP and passwords only)."""

    name = "postgres"

    def __init__(self, data: ServerData):
        self.data = data
        self.layout = data.layout

    @property
    def data_dir(self) -> Path:
        return self.data.dir("postgres")

    @property
    def pid_file(self) -> Path:
        return self.layout.pid_file(self.name)

    def bin_dir(self) -> Path:
        bin_dir = binaries.postgres_bin_dir()
        if self.data.user is None:
            return bin_dir
        return binaries.shareable_postgres(
            bin_dir, binaries.version_of(bin_dir / "postgres")
        )  # pragma: root only

    def tracked(self) -> process.Tracked | None:
        """The server on this cluster, also one restarted outside the runtime (`pg_ctl restart`):
        postmaster.pid names it, the pid on its first line, the data directory on its second."""
        found = process.running(self.pid_file)
        if found is not None:
            return found
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, data = int(lines[0]), lines[1]
            ours = Path(data) == self.data_dir and "postgres" in psutil.Process(pid).name()
        except (OSError, ValueError, IndexError, psutil.Error):
            return None
        return process.adopt(pid, pid_file=self.pid_file) if ours else None

    def _initdb(self, bin_dir: Path) -> None:
        self.data.own_dir(self.data_dir)
        pwfile = self.data_dir.parent / ".pgpass-init"
        self.data.write_as_owner(pwfile, self.data.secrets().postgres_password + "\n")
        argv = [str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER]
        argv += [f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8"]
        argv += ["--no-locale", "--no-instructions"]
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                check=False,
                user=self.data.user,
                cwd=self.data_dir.parent,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise InfraError(f"initdb failed: {detail[-1] if detail else 'no output'}")

    def start(self, port: int) -> bool:
        """Start PostgreSQL unless running; True if this call started it."""
        if self.tracked():
            return False
        setting = "DASHTAM_POSTGRES_PORT (then re-run `inv setup`)"
        process.require_free_port(port, "PostgreSQL", setting)
        self.data.ensure_user()
        bin_dir = self.bin_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir)
        argv = [str(bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(port)]
        # TCP only: no socket files in shared /tmp, and every login goes through a password.
        for option in (
            "listen_addresses=127.0.0.1",
            "unix_socket_directories=",
            "max_connections=200",
            "password_encryption=scram-sha-256",
        ):
            argv += ["-c", option]
        try:
            process.start_server(
                argv,
                what="PostgreSQL",
                ports=(port,),
                ready=lambda: self.ready(port, strict=True),
                pid_file=self.pid_file,
                log_file=self.layout.log_file(self.name),
                # "Fast" shutdown: sessions closed, data flushed.
                stop_signal=signal.SIGINT,
                timeout=START_TIMEOUT,
                interval=0.2,
                user=self.data.user,
                cwd=self.data_dir.parent,
            )
        except WrongSecrets:
            raise InfraError(
                f"PostgreSQL in {self.data_dir} refuses this checkout's superuser password: "
                f"the cluster was made with other secrets than {self.layout.secrets_file}; "
                "`inv clean` deletes it (and its data) so that the next `inv up` makes a new one"
            ) from None
        return True

    def port(self, creds: Credentials) -> int:
        return creds.db_port

    def healthy(self, creds: Credentials) -> bool:
        # Only with the secrets it was made with (status must not make new ones).
        return self.layout.secrets_file.exists() and self.ready(creds.db_port)

    def ready(self, port: int, *, strict: bool = False) -> bool:
        """Does PostgreSQL on port accept the superuser's password login?

        strict: a refused password raises WrongSecrets instead of answering False, for the
        caller that started the server and would otherwise wait out its whole timeout.
        """
        return asyncio.run(self._can_login(port, strict))

    async def _can_login(self, port: int, strict: bool) -> bool:
        try:
            conn = await superuser_connect(self.layout, port, timeout=2)
        except asyncpg.InvalidPasswordError:
            if strict:
                raise WrongSecrets from None
            return False
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    def stop(self) -> bool:
        # SIGINT is PostgreSQL's "fast" shutdown: sessions are closed, data is flushed.
        self.tracked()
        return process.stop(self.pid_file, sig=signal.SIGINT, timeout=60)

    def bootstrap(self, dev: Credentials, test: Credentials) -> None:
        """Roles and databases of both environments (infra/postgres/bootstrap.sql)."""
        variables = bootstrap_variables(dev, test)
        run_script(self.layout, dev.db_port, "postgres", self.layout.bootstrap_sql, variables)
        asyncio.run(self._mark_older_test_database(test))

    async def _mark_older_test_database(self, test: Credentials) -> None:
        """Mark a test database that a checkout made before markers existed, if it is one.

        Only an unmarked database the test role owns, on this checkout's own server, holding
        nothing but Dashtam's tables: anything else stays unmarked, and init-test-db refuses it.
        """
        from dashtam_core.test_database_guard import read_markers

        conn = await superuser_connect(self.layout, test.db_port)
        try:
            found = await read_markers(conn, names=[test.db_name])
            database = found.get(test.db_name)
            if database is None or database.marker is not None or database.owner != test.db_user:
                return
            # Only now (rarely): these import SQLAlchemy and the models, half a second.
            from dashtam_core.migrate import dashtam_table_names
            from dashtam_core.test_database_guard import (
                RELATIONS_QUERY,
                comment_on_database,
                foreign_tables,
                template_marker,
            )

            inside = await superuser_connect(self.layout, test.db_port, test.db_name)
            try:
                relations = [tuple(r) for r in await inside.fetch(RELATIONS_QUERY)]
            finally:
                await inside.close()
            if not foreign_tables(relations, dashtam_table_names()):
                marker = template_marker(test.project_id)
                await conn.execute(comment_on_database(test.db_name, marker))
        finally:
            await conn.close()
