"""`inv bench faults`: the fault drill (infra/faults.py) with more load than the test gives it.

A project of its own in a temporary directory (its own PostgreSQL, Valkey, API and callback
server on free ports; the shared servers and a developer's `inv up` are never touched), then
each phase for ``phase_seconds`` under ``clients`` clients sending as fast as the API answers:
a table of the answers per phase (2xx, 503, 502/504, anything else), the seconds to recover,
and the acknowledged writes found afterwards. Anything outside what a phase allows is listed
after the table and makes the command fail.
"""

import tempfile
import time
from pathlib import Path

from infra import faults, private_project
from infra.errors import InfraError


def run(*, clients: int, phase_seconds: float) -> None:
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="dashtam-faults-") as root,
        private_project.project(Path(root)) as runtime,
    ):
        report = faults.run(runtime, clients=clients, phase_seconds=phase_seconds)
    print()
    print(
        f"fault drill: {clients} clients (2 loops each), {phase_seconds:g} s per phase, "
        f"one API worker; {time.monotonic() - started:.0f} s in all"
    )
    for line in report.table():
        print(line)
    problems = report.problems()
    if problems:
        raise InfraError("the drill found:\n  " + "\n  ".join(problems))
    print("no answer outside what each phase allows; every acknowledged write is there")
