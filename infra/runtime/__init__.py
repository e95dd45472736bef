"""The runtimes behind the same tasks, each implementing infra/runtime/base.py: local
(processes, local.py) and compose (Docker Compose, compose.py); ``runtime_for`` picks one."""

import os
import shutil
import subprocess
from typing import TYPE_CHECKING

from infra.errors import InfraError

if TYPE_CHECKING:
    from infra.layout import Layout
    from infra.runtime.base import Runtime

CHOICES = ("auto", "local", "compose")


def chosen(layout: "Layout | None" = None) -> tuple[str, str]:
    """What was asked for and where: ``DASHTAM_RUNTIME`` first, then the checkout's own setting
    (``inv runtime --use NAME`` writes .dashtam/runtime), else auto."""
    if "DASHTAM_RUNTIME" in os.environ:
        return os.environ["DASHTAM_RUNTIME"], "DASHTAM_RUNTIME"
    if layout is not None and layout.runtime_file.is_file():
        return layout.runtime_file.read_text().strip(), str(layout.runtime_file)
    return "auto", "the default"


def selected_runtime(layout: "Layout | None" = None) -> str:
    """local (also ``auto``, the default) or compose. Compose is used only when asked for: a
    Docker engine on the machine is no reason to switch a developer to a stack that has not run
    green anywhere yet (docs/compose.md says what has)."""
    choice, where = chosen(layout)
    if choice in ("auto", "local"):
        return "local"
    if choice == "compose":
        if not engine_answers():
            asked = (
                "DASHTAM_RUNTIME=compose" if where == "DASHTAM_RUNTIME" else f"compose ({where})"
            )
            undo = "unset it" if where == "DASHTAM_RUNTIME" else "`inv runtime --use local`"
            raise InfraError(
                f"{asked} needs a Docker engine with the compose plugin "
                f"(`docker info` and `docker compose version` must work); {undo} to use the "
                "local runtime"
            )
        return "compose"
    raise InfraError(f"{where}: the runtime must be auto, local or compose, not {choice!r}")


def runtime_for(layout: "Layout") -> "Runtime":
    """The runtime the tasks use in this checkout."""
    if selected_runtime(layout) == "compose":
        from infra.runtime.compose import ComposeRuntime  # YAML and the rest only here

        return ComposeRuntime(layout)
    from infra.runtime.local import LocalRuntime

    return LocalRuntime(layout)


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
