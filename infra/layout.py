"""Where everything lives, and the knobs that move it (environment variables)."""

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from infra.files import write_private

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_POSTGRES_PORT = 55432  # not 5432: a system PostgreSQL may be there
DEFAULT_VALKEY_PORT = 56379  # not 6379: a system Redis may be there
# The local mail catcher (infra/mailcatcher.py): SMTP, and HTTPS to read what it kept.
DEFAULT_MAIL_SMTP_PORT = 51025
DEFAULT_MAIL_HTTP_PORT = 58025
DEFAULT_SERVICE_USER = "dashtam"
# As root, the servers' data lives where the unprivileged service user can reach it: the
# checkout may sit under a directory only root may enter (/root, a mktemp -d folder).
ROOT_DATA_BASE = Path(os.environ.get("DASHTAM_SYSTEM_DATA_DIR", "/var/lib/dashtam"))


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass(frozen=True)
class Layout:
    root: Path = ROOT

    @property
    def state(self) -> Path:
        return self.root / ".dashtam"

    @property
    def run_dir(self) -> Path:
        return self.state / "run"

    @property
    def log_dir(self) -> Path:
        return self.state / "logs"

    @property
    def runtime_file(self) -> Path:
        """The runtime this checkout asked for (``inv runtime``), when it asked."""
        return self.state / "runtime"

    @property
    def picked_ports_file(self) -> Path:
        """The ports a private project picked for itself (infra/ports.py); none in a checkout."""
        return self.state / "picked-ports"

    @property
    def secrets_file(self) -> Path:
        return self.state / "secrets.env"

    @property
    def project_id_file(self) -> Path:
        """This checkout's id (marks its test databases); made once, moves with the checkout."""
        return self.state / "project-id"

    def project_id(self) -> str:
        """This checkout's id, made once and kept in .dashtam/project-id.

        Kept outside the env files so that regenerating them (delete, `inv setup`) keeps the id the
        existing test databases are marked with.
        """
        path = self.project_id_file
        if not path.exists():
            self.state.mkdir(mode=0o700, exist_ok=True)
            write_private(path, secrets.token_hex(8) + "\n")
        return path.read_text().strip()

    @property
    def env_dir(self) -> Path:
        return self.root / "env"

    @property
    def dev_env_file(self) -> Path:
        return self.env_dir / ".env.dev"

    @property
    def test_env_file(self) -> Path:
        return self.env_dir / ".env.test"

    @property
    def certs_dir(self) -> Path:
        return self.root / "certs"

    @property
    def ca_file(self) -> Path:
        return self.certs_dir / "ca.pem"

    @property
    def data_dir(self) -> Path:
        """The servers' data (PostgreSQL cluster, Valkey snapshots)."""
        explicit = os.environ.get("DASHTAM_DATA_DIR")
        if explicit:
            return Path(explicit)
        if running_as_root():  # pragma: root only
            # Keyed by the checkout's place *and* its id: a checkout deleted and cloned again at
            # the same path has new secrets, and must never meet the cluster the old ones opened.
            key = f"{self.root}\n{self.project_id()}"
            return ROOT_DATA_BASE / hashlib.sha256(key.encode()).hexdigest()[:12]
        return self.state / "data"

    @property
    def data_owner_file(self) -> Path:  # pragma: root only
        """In a data directory outside the checkout: which checkout (path, id) it belongs to."""
        return self.data_dir / "checkout"

    @property
    def bootstrap_sql(self) -> Path:
        return self.root / "infra" / "postgres" / "bootstrap.sql"

    def pid_file(self, service: str) -> Path:
        return self.run_dir / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        return self.log_dir / f"{service}.log"


def postgres_port() -> int:
    return int(os.environ.get("DASHTAM_POSTGRES_PORT", DEFAULT_POSTGRES_PORT))


def valkey_port() -> int:
    return int(os.environ.get("DASHTAM_VALKEY_PORT", DEFAULT_VALKEY_PORT))


def mail_smtp_port() -> int:
    return int(os.environ.get("DASHTAM_MAIL_SMTP_PORT", DEFAULT_MAIL_SMTP_PORT))


def mail_http_port() -> int:
    return int(os.environ.get("DASHTAM_MAIL_HTTP_PORT", DEFAULT_MAIL_HTTP_PORT))


def service_user() -> str:
    return os.environ.get("DASHTAM_SERVICE_USER", DEFAULT_SERVICE_USER)
