"""inv setup's env files: fresh secrets, the runtime's ports, 0600, never overwritten."""

import stat
from pathlib import Path

import pytest

from infra.envfiles import PLACEHOLDER, ensure_env_files, read_credentials, render
from infra.errors import InfraError
from infra.layout import ROOT, Layout

EXAMPLES = ROOT / "env"


def make_layout(tmp_path: Path) -> Layout:
    (tmp_path / "env").mkdir()
    for name in (".env.dev.example", ".env.test.example"):
        (tmp_path / "env" / name).write_text((EXAMPLES / name).read_text())
    return Layout(root=tmp_path)


def test_render_replaces_every_placeholder_with_its_own_secret():
    text = render((EXAMPLES / ".env.dev.example").read_text(), pg_port=6000, redis_port=7000)
    values = [line for line in text.splitlines() if not line.startswith("#")]
    assert PLACEHOLDER not in "\n".join(values)
    secrets = [line.split("=", 1)[1] for line in values if line.startswith("SECRET_KEY=")]
    assert len(secrets[0]) >= 32
    assert ":6000/dashtam" in text
    assert ":7000/0" in text


def test_two_renders_never_share_a_secret():
    example = (EXAMPLES / ".env.test.example").read_text()
    first = render(example, pg_port=1, redis_port=2)
    second = render(example, pg_port=1, redis_port=2)
    assert first != second


def test_env_files_are_private_and_never_overwritten(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHTAM_POSTGRES_PORT", "55999")
    layout = make_layout(tmp_path)
    written = ensure_env_files(layout)
    assert written == [layout.dev_env_file, layout.test_env_file]
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = layout.dev_env_file.read_text()
    assert ensure_env_files(layout) == []
    assert layout.dev_env_file.read_text() == before
    creds = read_credentials(layout.test_env_file)
    assert (creds.db_name, creds.db_port, creds.db_user) == (
        "dashtam_test",
        55999,
        "dashtam_test_user",
    )
    assert creds.redis_db == 1


def test_placeholder_passwords_are_refused(tmp_path):
    layout = make_layout(tmp_path)
    layout.dev_env_file.write_text((EXAMPLES / ".env.dev.example").read_text())
    with pytest.raises(InfraError, match="placeholder"):
        read_credentials(layout.dev_env_file)


def test_the_project_id_is_made_once_and_survives_regenerated_env_files(tmp_path):
    layout = make_layout(tmp_path)
    ensure_env_files(layout)
    first = read_credentials(layout.test_env_file).project_id
    assert len(first) == 16
    assert oct(layout.project_id_file.stat().st_mode & 0o777) == "0o600"
    layout.test_env_file.unlink()
    ensure_env_files(layout)
    assert read_credentials(layout.test_env_file).project_id == first
