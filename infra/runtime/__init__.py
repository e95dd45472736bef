"""The runtimes behind the same tasks: local (processes, infra/runtime/local.py) and compose
(Docker Compose, infra/compose.py)."""

import os
import shutil
import subprocess

from infra.errors import InfraError


def selected_runtime() -> str:
    """``DASHTAM_RUNTIME``: local, compose, or auto (compose only when a Docker engine with the
    compose plugin answers; local everywhere else, which includes every machine without Docker)."""
    choice = os.environ.get("DASHTAM_RUNTIME", "auto")
    if choice == "local":
        return "local"
    if choice in ("auto", "compose"):
        if engine_answers():
            return "compose"
        if choice == "compose":
            raise InfraError(
                "DASHTAM_RUNTIME=compose needs a Docker engine with the compose plugin "
                "(`docker info` and `docker compose version` must work); unset it to use the "
                "local runtime"
            )
        return "local"
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
