"""The runtimes behind the same tasks: local (processes, infra/runtime/local.py) and compose
(Docker Compose, infra/compose.py)."""

import os
import shutil
import subprocess

from infra.errors import InfraError


def selected_runtime() -> str:
    """``DASHTAM_RUNTIME``: local (also ``auto``, the default) or compose. Compose is used only
    when asked for: a Docker engine on the machine is no reason to switch a developer to a stack
    that has not run green anywhere yet (docs/compose.md says what has)."""
    choice = os.environ.get("DASHTAM_RUNTIME", "auto")
    if choice in ("auto", "local"):
        return "local"
    if choice == "compose":
        if not engine_answers():
            raise InfraError(
                "DASHTAM_RUNTIME=compose needs a Docker engine with the compose plugin "
                "(`docker info` and `docker compose version` must work); unset it to use the "
                "local runtime"
            )
        return "compose"
    raise InfraError(f"DASHTAM_RUNTIME must be auto, local or compose, not {choice!r}")


def engine_answers(timeout: float = 5.0) -> bool:
    """A Docker engine this user may use, with the compose plugin (what auto looks for)."""
    return _docker_answers(["info", "--format", "{{.ServerVersion}}"], timeout) and (
        compose_plugin(timeout)
    )


def compose_plugin(timeout: float = 5.0) -> bool:
    """The Docker CLI with its compose plugin (no engine is needed to read compose files)."""
    return _docker_answers(["compose", "version"], timeout)


def _docker_answers(args: list[str], timeout: float) -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        run = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0
