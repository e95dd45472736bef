"""Trust the local CA where browsers and tools look, as mkcert does, and take it back.

Two kinds of store:

- the system store (curl, Python's ``truststore``, Chrome on most distributions, every program
  that reads the distribution's bundle): the CA file is copied into the anchors folder and the
  distribution's own command rebuilds the bundle;
- NSS databases: Chromium and Chrome on Linux read ``~/.pki/nssdb``, Firefox its profiles'
  ``cert9.db``. They are changed with NSS's ``certutil`` (Debian/Ubuntu: libnss3-tools).

Everything is added under a name that carries this checkout's project id, so ``--untrust``
removes exactly what ``--trust`` added here and nothing another checkout (or person) trusted.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.errors import InfraError

# Where distributions put administrators' commands: not on a normal user's PATH on Debian, yet
# present and runnable (update-ca-certificates lives in /usr/sbin).
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")

CERTUTIL_HINT = (
    "certutil not found: install it (Debian/Ubuntu: apt-get install libnss3-tools; "
    "Fedora: dnf install nss-tools; Arch: pacman -S nss; macOS: brew install nss)"
)


@dataclass(frozen=True)
class SystemStore:
    """A distribution's folder of extra CA files and the command that rebuilds its bundle."""

    anchors: Path
    suffix: str
    update: tuple[str, ...]

    def file_for(self, name: str) -> Path:
        return self.anchors / f"{name}{self.suffix}"

    def update_command(self) -> list[str]:
        """The rebuild command with its program's full path, wherever the machine keeps it."""
        program = find_tool(self.update[0])
        if program is None:
            raise InfraError(f"{self.update[0]} not found on PATH or in {', '.join(SBIN_DIRS)}")
        return [program, *self.update[1:]]


def find_tool(name: str) -> str | None:
    """``name`` on PATH, else in the sbin folders a normal user's PATH leaves out."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_DIRS))


# Debian/Ubuntu/Alpine, Fedora/RHEL, Arch: the first whose command exists is this machine's.
KNOWN_SYSTEM_STORES = (
    SystemStore(Path("/usr/local/share/ca-certificates"), ".crt", ("update-ca-certificates",)),
    SystemStore(Path("/etc/pki/ca-trust/source/anchors"), ".pem", ("update-ca-trust", "extract")),
    SystemStore(
        Path("/etc/ca-certificates/trust-source/anchors"), ".crt", ("trust", "extract-compat")
    ),
)


def system_store() -> SystemStore | None:
    for store in KNOWN_SYSTEM_STORES:
        if find_tool(store.update[0]) and store.anchors.parent.is_dir():
            return store
    return None


def nss_databases(home: Path) -> list[Path]:
    """The NSS databases of ``home``: Chromium's (trust makes it when missing) and those of
    Firefox profiles."""
    found = [home / ".pki" / "nssdb"]
    for profiles in (
        home / ".mozilla" / "firefox",
        home / "snap" / "firefox" / "common" / ".mozilla" / "firefox",
        home / "Library" / "Application Support" / "Firefox" / "Profiles",
    ):
        if profiles.is_dir():
            found += sorted(p for p in profiles.iterdir() if (p / "cert9.db").exists())
    return found


@dataclass
class Outcome:
    """What each store said; ``failed`` makes the command exit non-zero."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _run(command: Sequence[str]) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise InfraError(f"{exc.strerror}: {command[0]}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise InfraError(f"{command[0]} failed: {detail[-1] if detail else result.returncode}")


def _as_root(command: Sequence[str]) -> list[str]:
    """The command itself as root; else through sudo (which may ask for a password), as mkcert."""
    if not hasattr(os, "geteuid") or os.geteuid() == 0:
        return list(command)
    sudo = shutil.which("sudo")
    if sudo is None:
        raise InfraError("the system trust store needs root, and sudo is not installed")
    return [sudo, *command]


def _ours_to_change(anchors: Path) -> bool:
    """Whether this process may write the anchors folder (or make it): then the bundle it
    rebuilds is ours too (root, or a store in a folder of our own). Otherwise sudo asks."""
    return os.access(anchors if anchors.is_dir() else anchors.parent, os.W_OK)


def _system_trust(store: SystemStore, ca_pem: Path, name: str) -> str:
    target = store.file_for(name)
    update = store.update_command()
    if _ours_to_change(store.anchors):
        store.anchors.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca_pem, target)
        target.chmod(0o644)
        _run(update)
    else:
        print(f"  {store.anchors} needs root: asking sudo", file=sys.stderr, flush=True)
        _run(_as_root(["install", "-D", "-m", "644", str(ca_pem), str(target)]))
        _run(_as_root(update))
    return f"system store: {target}"


def _system_untrust(store: SystemStore, name: str) -> str | None:
    target = store.file_for(name)
    if not target.exists():
        return None
    update = store.update_command()
    if _ours_to_change(store.anchors):
        target.unlink()
        _run(update)
    else:
        _run(_as_root(["rm", "-f", str(target)]))
        _run(_as_root(update))
    return f"system store: removed {target}"


def _certutil(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    certutil = find_tool("certutil")
    if certutil is None:
        raise InfraError(CERTUTIL_HINT)
    return subprocess.run(
        [certutil, "-d", f"sql:{database}", *args], capture_output=True, text=True, check=False
    )


def _nss_remove(database: Path, nickname: str) -> bool:
    removed = False
    # A nickname can name several certificates (a CA made again with --force): remove them all.
    while _certutil(database, "-L", "-n", nickname).returncode == 0:
        result = _certutil(database, "-D", "-n", nickname)
        if result.returncode != 0:
            raise InfraError(f"certutil -D failed: {result.stderr.strip()}")
        removed = True
    return removed


def _nss_trust(database: Path, ca_pem: Path, nickname: str) -> str:
    if not (database / "cert9.db").exists():
        database.mkdir(parents=True, exist_ok=True, mode=0o700)
        result = _certutil(database, "-N", "--empty-password")
        if result.returncode != 0:
            raise InfraError(f"certutil -N failed: {result.stderr.strip()}")
    _nss_remove(database, nickname)
    # "C,,": a CA trusted to issue server certificates (not e-mail or code signing).
    result = _certutil(database, "-A", "-n", nickname, "-t", "C,,", "-i", str(ca_pem))
    if result.returncode != 0:
        raise InfraError(f"certutil -A failed: {result.stderr.strip()}")
    return f"NSS database: {database}"


def names(project_id: str) -> tuple[str, str]:
    """(file name, NSS nickname) of this checkout's CA in the stores."""
    return f"dashtam-local-ca-{project_id}", f"Dashtam Local CA ({project_id})"


def _attempt(outcome: Outcome, label: str, step: Callable[[], str | None]) -> None:
    try:
        said = step()
    except InfraError as exc:
        outcome.failed.append(f"{label}: {exc}")
    else:
        if said:
            outcome.done.append(said)


def trust(
    ca_pem: Path, project_id: str, *, system: SystemStore | None, databases: Sequence[Path]
) -> Outcome:
    """Add the CA to the system store (when given) and to each NSS database."""
    file_name, nickname = names(project_id)
    outcome = Outcome()
    if system is not None:
        _attempt(outcome, "system store", lambda: _system_trust(system, ca_pem, file_name))
    if databases and find_tool("certutil") is None:
        outcome.failed.append(CERTUTIL_HINT)
        return outcome
    for database in databases:
        _attempt(outcome, str(database), lambda d=database: _nss_trust(d, ca_pem, nickname))
    return outcome


def untrust(project_id: str, *, system: SystemStore | None, databases: Sequence[Path]) -> Outcome:
    """Remove what :func:`trust` added for this project id; what is not there is left alone."""
    file_name, nickname = names(project_id)
    outcome = Outcome()
    if system is not None:
        _attempt(outcome, "system store", lambda: _system_untrust(system, file_name))
    present = [d for d in databases if (d / "cert9.db").exists()]
    if present and find_tool("certutil") is None:
        outcome.failed.append(CERTUTIL_HINT)
        return outcome
    for database in present:
        _attempt(
            outcome,
            str(database),
            lambda d=database: (
                f"NSS database: removed from {d}" if _nss_remove(d, nickname) else None
            ),
        )
    return outcome
