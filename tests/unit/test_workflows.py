"""Task workflows that need no server: setup, certs, runtime choice, argument checks."""

import shutil
import subprocess
import sys

import pytest

import infra.__main__ as infra_main
from infra import workflows
from infra.errors import InfraError
from infra.layout import ROOT, Layout
from infra.runtime import selected_runtime


@pytest.fixture
def layout(tmp_path) -> Layout:
    (tmp_path / "env").mkdir()
    for name in (".env.dev.example", ".env.test.example"):
        shutil.copy(ROOT / "env" / name, tmp_path / "env" / name)
    return Layout(root=tmp_path)


def test_setup_writes_once_then_says_nothing_was_overwritten(layout, capsys):
    workflows.setup(layout)
    written = capsys.readouterr().out
    for name in ("certs/ca.pem", "certs/server-key.pem", "env/.env.dev", "env/.env.test"):
        assert f"wrote {name}" in written
    assert (layout.state.stat().st_mode & 0o777) == 0o700
    workflows.setup(layout)
    assert "already in place (nothing overwritten)" in capsys.readouterr().out


def test_certs_keeps_then_forces(layout, capsys):
    workflows.certs(layout, force=False)
    capsys.readouterr()
    before = (layout.certs_dir / "ca.pem").read_bytes()
    workflows.certs(layout, force=False)
    assert "use --force to remake" in capsys.readouterr().out
    workflows.certs(layout, force=True)
    assert (layout.certs_dir / "ca.pem").read_bytes() != before


@pytest.mark.parametrize(
    ("value", "outcome"),
    [
        ("auto", "local"),
        ("local", "local"),
        # No Docker engine here (as on every machine this is built on): auto means local, and
        # asking for compose says what is missing.
        ("compose", "needs a Docker engine with the compose plugin"),
        ("k8s", "must be"),
    ],
)
def test_runtime_choice(monkeypatch, value, outcome):
    monkeypatch.setenv("DASHTAM_RUNTIME", value)
    if value == "auto":
        # Even where a Docker engine answers: Compose only when asked for.
        import infra.runtime

        monkeypatch.setattr(infra.runtime, "engine_answers", lambda timeout=5.0: True)
    if outcome == "local":
        assert selected_runtime() == "local"
    else:
        with pytest.raises(InfraError, match=outcome):
            selected_runtime()


def test_test_clean_needs_a_running_server(layout):
    workflows.setup(layout, quiet=True)
    with pytest.raises(InfraError, match="PostgreSQL is not running"):
        workflows.test_clean(layout)


def test_unknown_test_suite_is_refused(layout):
    with pytest.raises(InfraError, match="unknown test suite 'smoke'"):
        workflows.pytest_args_for(parallel=False, workers="1", suites=["smoke"])


def test_infra_cli_prints_one_line_for_a_failure(layout, monkeypatch, capsys):
    monkeypatch.setattr(infra_main, "Layout", lambda: layout)
    monkeypatch.setenv("DASHTAM_RUNTIME", "compose")
    assert infra_main.main(["down"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: DASHTAM_RUNTIME=compose needs a Docker engine")
    assert err.count("\n") == 1


def test_status_with_nothing_running(layout, monkeypatch, capsys):
    workflows.setup(layout, quiet=True)
    capsys.readouterr()
    assert workflows.status(layout) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("runtime: local")
    assert [r.split()[1] for r in lines[2:]] == ["-", "-", "-", "-", "-"]


def test_workers_serve_without_reload_and_reload_is_the_default(tmp_path):
    from infra import apps

    env_file = tmp_path / ".env"
    env_file.write_text("API_HOST=127.0.0.1\nAPI_PORT=8000\n")
    layout = Layout(root=tmp_path)
    api = apps.APPS[0]
    reloading = apps.uvicorn_argv(api, layout=layout, env_file=env_file, reload=True)
    assert "--reload" in reloading
    assert "--workers" not in reloading
    serving = apps.uvicorn_argv(api, layout=layout, env_file=env_file, reload=True, workers=2)
    assert serving[serving.index("--workers") + 1] == "2"
    assert "--reload" not in serving
    assert "--reload" not in apps.uvicorn_argv(api, layout=layout, env_file=env_file, reload=False)


def test_inv_up_offers_no_reload_and_workers():
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "--help", "up"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--[no-]reload" in result.stdout
    assert "--workers=INT" in result.stdout


def test_the_access_log_is_off_unless_the_env_file_asks(tmp_path):
    from infra import apps

    env_file = tmp_path / ".env"
    layout = Layout(root=tmp_path)
    env_file.write_text("API_PORT=8000\n")
    assert "--no-access-log" in apps.uvicorn_argv(
        apps.APPS[0], layout=layout, env_file=env_file, reload=False
    )
    env_file.write_text("API_PORT=8000\nACCESS_LOG=true\n")
    assert "--no-access-log" not in apps.uvicorn_argv(
        apps.APPS[0], layout=layout, env_file=env_file, reload=False
    )
