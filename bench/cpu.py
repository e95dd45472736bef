"""The CPU a command costs: itself and every process it starts, daemonised servers included.

Where this user may make a cgroup (v2: root on most machines), the command runs in one of its
own and the kernel counts every descendant, whether or not its parent waits for it (a server
that daemonises is reaped by init, and `getrusage(RUSAGE_CHILDREN)` never sees it). Elsewhere
the figure is what this process reaped, and says so.
"""

import contextlib
import os
import resource
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path


def own_cgroup2() -> Path | None:
    """The cgroup v2 group this process is in, if this user may make a group inside it (a
    group of its own, inside: whoever measures this process still counts what runs there)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        own = [
            line[3:].strip()
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        ]
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2" and own:
            group = Path(fields[1]) / own[0].lstrip("/")
            if os.access(group, os.W_OK) and (group / "cgroup.procs").exists():
                return group
    return None


@dataclass
class Measured:
    result: subprocess.CompletedProcess
    cpu_seconds: float
    how: str  # "cgroup" or "reaped children"


def run(argv: list[str], **kwargs) -> Measured:
    """``subprocess.run(argv, **kwargs)``, with the CPU it and its descendants used."""
    parent = own_cgroup2()
    group = _new_group(parent) if parent is not None else None
    if group is None:
        before = _reaped()
        result = subprocess.run(argv, **kwargs)
        return Measured(result, _reaped() - before, "reaped children")
    try:
        # The shell joins the group, then becomes the command: nothing runs outside it.
        joined = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(group / "cgroup.procs")]
        result = subprocess.run([*joined, *argv], **kwargs)
        return Measured(result, _usage_seconds(group), "cgroup")
    finally:
        _remove(group, parent)


def _new_group(parent: Path) -> Path | None:
    group = parent / f"dashtam-bench-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
    except OSError:
        return None
    return group


def _usage_seconds(group: Path) -> float:
    for line in (group / "cpu.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise RuntimeError(f"no usage_usec in {group / 'cpu.stat'}")


def _remove(group: Path, parent: Path) -> None:
    """A group can only go once empty: what the command left running moves back up."""
    for pid in (group / "cgroup.procs").read_text().split():
        with contextlib.suppress(OSError):  # gone meanwhile
            (parent / "cgroup.procs").write_text(pid)
    with contextlib.suppress(OSError):
        group.rmdir()


def _reaped() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime
