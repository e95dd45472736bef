"""Job processes started together and measured, as bench/refresh.py and bench/webhooks.py
compare one against two: ``python -m dashtam_api.jobs <job> --until-idle`` each, the wall clock
from their start to the last exit (interpreter start-up included: as a person meets it), what
each says it did on its last line, and the CPU they and the machine spent meanwhile.
"""

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError


@dataclass(frozen=True)
class JobRun:
    wall: float
    counts: list[int]
    """Each process's count of what the run counted (``refreshed=``, ``delivered=``)."""
    cpu: dict[str, float]
    """CPU seconds during the run: ``jobs`` (the processes), ``here`` (this process: a receiver
    in its threads) and ``machine`` (everything, PostgreSQL included)."""


def run_together(
    job: str, *, processes: int, counted: str, env: dict[str, str], cwd: Path
) -> JobRun:
    """``processes`` job processes started at once, waited for, and what each counted."""
    before = cpu_seconds()
    started = time.perf_counter()
    running = [
        subprocess.Popen(
            [sys.executable, "-m", "dashtam_api.jobs", job, "--until-idle"],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    counts = [_count(one, job, counted) for one in running]
    wall = time.perf_counter() - started
    cpu = {key: value - before[key] for key, value in cpu_seconds().items()}
    return JobRun(wall, counts, cpu)


def _count(process: subprocess.Popen, job: str, counted: str) -> int:
    out, err = process.communicate(timeout=1800)
    if process.returncode != 0:
        raise InfraError(f"a {job} process failed: {err.strip()[-500:]}")
    last = out.strip().splitlines()[-1]  # e.g. "refresh: busy=3 not_due=40 refreshed=67"
    counts = dict(part.split("=") for part in last.split(": ", 1)[1].split() if "=" in part)
    return int(counts.get(counted, 0))


def cpu_seconds() -> dict[str, float]:
    """CPU time so far of this process's finished children (the job processes), of this
    process, and of the whole machine."""
    tick = os.sysconf("SC_CLK_TCK")
    times = os.times()
    with open("/proc/stat") as stat:
        cpu = [int(v) for v in stat.readline().split()[1:]]
    return {
        "jobs": times.children_user + times.children_system,
        "here": times.user + times.system,
        "machine": (sum(cpu) - cpu[3] - cpu[4]) / tick,  # all but idle and iowait
    }


def process_cpu_seconds(pid: int) -> float:
    """CPU time so far of another process (a server the benchmark started)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
