"""The one interface behind the tasks: both runtimes implement it, the tasks reach Compose
only through it (checked with a `docker` that records what it is asked, as no engine runs
here), and the checkout's own choice of runtime."""

import inspect
import shutil
import stat

import pytest

from infra import workflows
from infra.errors import InfraError
from infra.layout import ROOT, Layout
from infra.runtime import compose, runtime_for, selected_runtime
from infra.runtime.base import Runtime
from infra.runtime.local import LocalRuntime

MEMBERS = [name for name in vars(Runtime) if not name.startswith("_")]


@pytest.mark.parametrize("implementation", [LocalRuntime, compose.ComposeRuntime])
def test_each_runtime_has_every_member_of_the_interface(implementation):
    assert {"up", "down", "status", "run_tests", "prepare_tests"} <= set(MEMBERS)
    for name in MEMBERS:
        theirs = getattr(implementation, name)
        if callable(getattr(Runtime, name)):
            wanted = inspect.signature(getattr(Runtime, name)).parameters
            got = inspect.signature(theirs).parameters
            assert list(got) == list(wanted), f"{implementation.__name__}.{name}"
            for parameter, spec in wanted.items():
                assert got[parameter].kind == spec.kind, f"{implementation.__name__}.{name}"
    for name in Runtime.__annotations__:
        assert isinstance(getattr(implementation, name), Runtime.__annotations__[name])


@pytest.fixture
def layout(tmp_path) -> Layout:
    (tmp_path / "env").mkdir()
    for name in (".env.dev.example", ".env.test.example"):
        shutil.copy(ROOT / "env" / name, tmp_path / "env" / name)
    return Layout(root=tmp_path)


@pytest.fixture
def docker(tmp_path, monkeypatch):
    """A `docker` on PATH that answers every command with success and writes it down: what the
    tasks ask of Compose, without an engine. ``ps`` says PostgreSQL runs."""
    folder = tmp_path / "bin"
    folder.mkdir()
    log = tmp_path / "docker.log"
    script = folder / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$*\" >> '{log}'\n"
        'case "$*" in *"ps --status running --quiet postgres"*) echo 4f2a;; esac\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    monkeypatch.setenv("DASHTAM_RUNTIME", "compose")

    def asked() -> list[list[str]]:
        lines = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        # The engine checks choose the runtime; the rest are what the tasks asked.
        checks = ("info --format {{.ServerVersion}}", "compose version")
        return [line.split() for line in lines if line not in checks]

    return asked


def _tasks(layout: Layout, *names: str) -> list[list[str]]:
    return [step[1:] for name in names for step in compose.task_commands(layout, name)]


def test_the_tasks_reach_compose_through_the_interface(layout, docker, capsys):
    workflows.up(layout)
    assert docker() == _tasks(layout, "up")
    out = capsys.readouterr().out
    assert "Dashtam is up" in out
    assert "API        https://localhost:8000" in out

    assert workflows.status(layout) == 0
    assert capsys.readouterr().out.startswith("runtime: compose")
    assert docker() == _tasks(layout, "status")

    workflows.logs(layout, service="app", follow=True, lines=50)
    assert docker()[-1][-2:] == ["--follow", "app"]

    workflows.down(layout)
    assert docker() == _tasks(layout, "down")
    assert "(data kept)" in capsys.readouterr().out


def test_a_compose_test_run_prepares_then_runs_pytest_in_the_container(layout, docker, capsys):
    code = workflows.test(
        layout,
        parallel=False,
        workers="auto",
        suites=[],
        pytest_args=["-x"],
        cov=False,
        contract_deep=False,
        contract_seed=7,
    )
    assert code == 0
    asked = docker()
    assert asked[:-1] == _tasks(layout, "test-setup")
    # The contract run's seed reaches pytest inside the container.
    (exec_step,) = _tasks(layout, "test")
    at = exec_step.index("-T") + 1
    assert asked[-1] == [
        *exec_step[:at],
        *("-e", "DASHTAM_CONTRACT_DEEP=1", "-e", "DASHTAM_CONTRACT_SEED=7"),
        *exec_step[at:],
        "tests/e2e/test_contract.py",
        "-x",
    ]
    with pytest.raises(InfraError, match="--cov needs the tests on this machine"):
        workflows.test(
            layout,
            parallel=False,
            workers="auto",
            suites=[],
            pytest_args=[],
            cov=True,
            contract_deep=False,
            contract_seed=None,
        )
    assert docker() == []  # refused before anything started


def test_the_checkout_keeps_its_choice_and_the_environment_wins(layout, docker, capsys):
    monkeypatch = pytest.MonkeyPatch()
    with monkeypatch.context() as patch:
        patch.delenv("DASHTAM_RUNTIME")
        assert selected_runtime(layout) == "local"
        workflows.runtime(layout, "compose")
        assert layout.runtime_file.read_text() == "compose\n"
        assert isinstance(runtime_for(layout), compose.ComposeRuntime)
        assert capsys.readouterr().out.splitlines()[-1] == (
            f"runtime: compose (compose, from {layout.runtime_file})"
        )
        patch.setenv("DASHTAM_RUNTIME", "local")
        assert isinstance(runtime_for(layout), LocalRuntime)
        patch.delenv("DASHTAM_RUNTIME")
        workflows.runtime(layout, "auto")
        assert not layout.runtime_file.exists()
        assert capsys.readouterr().out.splitlines()[-1] == "runtime: local (auto, from the default)"
        with pytest.raises(InfraError, match="must be auto, local or compose, not 'k8s'"):
            workflows.runtime(layout, "k8s")
        # Without a Docker engine, asking for Compose is refused and nothing is written.
        patch.setenv("PATH", "/usr/bin:/bin")
        if shutil.which("docker") is None:
            with pytest.raises(InfraError, match="needs a Docker engine"):
                workflows.runtime(layout, "compose")
            assert not layout.runtime_file.exists()
