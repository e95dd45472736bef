"""The runtimes behind the same tasks. Only the local one (processes) exists so far."""

import os

from infra.errors import InfraError


def selected_runtime() -> str:
    choice = os.environ.get("DASHTAM_RUNTIME", "auto")
    if choice in ("auto", "local"):
        # auto would prefer a working Docker engine; the compose runtime is not built yet.
        return "local"
    if choice == "compose":
        raise InfraError("DASHTAM_RUNTIME=compose is not available yet; use local (the default)")
    raise InfraError(f"DASHTAM_RUNTIME must be auto, local or compose, not {choice!r}")
