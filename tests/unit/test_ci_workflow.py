"""The GitHub Actions workflow forks run: valid for actionlint, and running the one CI script."""

import subprocess
import sys
from pathlib import Path

import yaml

from tests.fixtures.environment import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def test_actionlint_finds_nothing():
    actionlint = Path(sys.executable).parent / "actionlint"
    result = subprocess.run(
        [str(actionlint), "-no-color", str(WORKFLOW)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_would_catch_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        WORKFLOW.read_text().replace("runs-on: ${{ matrix.os }}", "runs-on: ${{ matrix.oss }}")
    )
    actionlint = Path(sys.executable).parent / "actionlint"
    result = subprocess.run(
        [str(actionlint), "-no-color", str(broken)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "oss" in result.stdout


def test_the_workflow_runs_ci_run_on_linux_and_macos_with_every_supported_python():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["test"]
    assert set(job["strategy"]["matrix"]["os"]) == {"ubuntu-latest", "macos-latest"}
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.11"' in pyproject
    assert job["strategy"]["matrix"]["python"][0] == "3.11"
    assert {k: v for k, v in job["steps"][2].items() if k == "run"} == {"run": "./.ci/run"}


def test_a_job_runs_the_suite_under_compose_and_the_other_stays_local():
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    assert jobs["test"]["steps"][2]["env"]["DASHTAM_RUNTIME"] == "local"
    compose = jobs["compose"]
    assert compose["runs-on"] == "ubuntu-latest"  # GitHub's Linux runners have Docker
    assert compose["env"]["DASHTAM_RUNTIME"] == "compose"
    runs = [step.get("run", "") for step in compose["steps"]]
    assert "inv test --parallel" in runs
    assert runs.index("inv test --parallel") > next(
        n for n, run in enumerate(runs) if "pip install" in run and "invoke" in run
    )
