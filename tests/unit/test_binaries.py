"""Where the server binaries come from, and the copy made for the service user under root."""

import os
import stat
import tempfile
from pathlib import Path

import pytest

from infra.errors import InfraError
from infra.runtime import binaries


def make_executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_system_postgres_directory_must_hold_postgres(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHTAM_POSTGRES_BIN_DIR", str(tmp_path))
    with pytest.raises(InfraError, match="holds no postgres binary"):
        binaries.postgres_bin_dir()
    make_executable(tmp_path / "postgres")
    assert binaries.postgres_bin_dir() == tmp_path


def test_the_wheel_provides_postgres_by_default(monkeypatch):
    monkeypatch.delenv("DASHTAM_POSTGRES_BIN_DIR", raising=False)
    assert (binaries.postgres_bin_dir() / "postgres").exists()


def test_missing_wheel_says_what_to_do(monkeypatch):
    monkeypatch.delenv("DASHTAM_POSTGRES_BIN_DIR", raising=False)
    monkeypatch.setattr(binaries, "_package_dir", lambda name: None)
    with pytest.raises(InfraError, match="DASHTAM_POSTGRES_BIN_DIR"):
        binaries.postgres_bin_dir()


def test_valkey_setting_must_be_an_executable(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHTAM_VALKEY_SERVER", str(tmp_path / "nope"))
    with pytest.raises(InfraError, match="is not an executable"):
        binaries.valkey_server()


def test_without_the_wheel_a_server_on_path_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHTAM_VALKEY_SERVER", raising=False)
    monkeypatch.setattr(binaries, "_package_dir", lambda name: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InfraError, match="apt-get install valkey-server"):
        binaries.valkey_server()
    redis_server = make_executable(tmp_path / "redis-server")
    assert binaries.valkey_server() == redis_server


def test_reachable_by_others_follows_every_parent():
    top = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        inner = top / "bin"
        inner.mkdir()
        binary = make_executable(inner / "server")
        top.chmod(0o755)
        inner.chmod(0o755)
        assert binaries.reachable_by_others(binary) is True
        top.chmod(0o700)
        assert binaries.reachable_by_others(binary) is False
    finally:
        top.chmod(0o700)
        for path in sorted(top.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        top.rmdir()


def test_unreachable_binaries_are_copied_once(tmp_path, monkeypatch):
    monkeypatch.setattr(binaries, "ROOT_DATA_BASE", tmp_path / "system")
    private = tmp_path / "private"
    (private / "pginstall" / "bin").mkdir(parents=True)
    (private / "pginstall" / "share").mkdir()
    make_executable(private / "pginstall" / "bin" / "postgres")
    private.chmod(0o700)

    bin_dir = binaries.shareable_postgres(private / "pginstall" / "bin", "18.6")
    assert (bin_dir / "postgres").exists()
    assert bin_dir.is_relative_to(tmp_path / "system" / "bin" / "postgresql-18.6")
    assert stat.S_IMODE(bin_dir.stat().st_mode) == 0o755
    marker = tmp_path / "system" / "bin" / "postgresql-18.6" / ".complete"
    stamp = marker.stat().st_mtime_ns
    assert binaries.shareable_postgres(private / "pginstall" / "bin", "18.6") == bin_dir
    assert marker.stat().st_mtime_ns == stamp  # not copied again

    server = make_executable(private / "valkey-server")
    copied = binaries.shareable_file(server, "valkey-8")
    assert copied.name == "valkey-server"
    assert os.access(copied, os.X_OK)
