"""Where the local servers keep their data, as whom they run, and their admin secrets.

Everyone else: under the checkout's .dashtam/data, as whoever runs `inv`. As root (PostgreSQL
refuses to run as root): under /var/lib/dashtam/<key of the checkout's path and id>, owned by an
unprivileged system user made on first use, the directory stamped with the checkout it belongs
to so that the data of a checkout that is gone can be swept.
"""

import hashlib
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError
from infra.files import read_env, token, write_private
from infra.layout import ROOT_DATA_BASE, Layout, running_as_root, service_user

# How long a server may take to answer after it was spawned.
START_TIMEOUT = 60.0


@dataclass
class ServerSecrets:
    postgres_password: str
    valkey_password: str


def server_secrets(layout: Layout) -> ServerSecrets:
    """The servers' own admin passwords (never in the app's env files), made once; both
    runtimes use them (compose writes them into .dashtam/compose/)."""
    path = layout.secrets_file
    if not path.exists():
        write_private(
            path, f"POSTGRES_SUPERUSER_PASSWORD={token()}\nVALKEY_ADMIN_PASSWORD={token()}\n"
        )
    values = read_env(path)
    return ServerSecrets(values["POSTGRES_SUPERUSER_PASSWORD"], values["VALKEY_ADMIN_PASSWORD"])


class ServerData:
    """A checkout's server data directory and the user the servers run as."""

    def __init__(self, layout: Layout):
        self.layout = layout

    @property
    def user(self) -> str | None:
        """The unprivileged user the servers run as when we are root; None otherwise."""
        return service_user() if running_as_root() else None

    def dir(self, server: str) -> Path:
        return self.layout.data_dir / server

    def secrets(self) -> ServerSecrets:
        return server_secrets(self.layout)

    def ensure_user(self) -> None:
        if self.user is not None:  # pragma: root only
            _ensure_system_user(self.user)

    def own_dir(self, path: Path) -> None:
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
                self.stamp()
        else:
            os.chmod(path, 0o700)

    def write_as_owner(self, path: Path, content: str) -> None:
        write_private(path, content)
        if self.user is not None:  # pragma: root only
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def stamp(self) -> None:  # pragma: root only
        """Say in the data directory which checkout (path, id) it belongs to."""
        stamp = f"{self.layout.root}\n{self.layout.project_id()}\n"
        write_private(self.layout.data_owner_file, stamp)

    def adopt_unstamped(self) -> None:  # pragma: root only
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
        self.stamp()

    def remove_orphaned(self) -> list[tuple[Path, str]]:  # pragma: root only
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

    def delete(self) -> None:
        shutil.rmtree(self.layout.data_dir, ignore_errors=True)


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
