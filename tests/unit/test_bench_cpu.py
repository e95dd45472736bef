"""bench/cpu.py: the CPU of a command and everything it starts, a server that daemonises too
(what `inv bench tests` reports for a suite whose tests start such servers)."""

import subprocess
import sys

import pytest

from bench import cpu
from tests.fixtures.environment import ROOT

# A command whose work is done by a grandchild it orphans, as a daemonising server is: the
# child exits at once, init reaps the grandchild, and the command waits for its mark.
ORPHANED_WORK = """
import os, sys, time
done = sys.argv[1]
if os.fork() == 0:
    if os.fork() == 0:
        started = time.process_time()
        while time.process_time() - started < 0.4:
            pass
        open(done, "w").close()
        os._exit(0)
    os._exit(0)
os.wait()
while not os.path.exists(done):
    time.sleep(0.01)
"""


@pytest.mark.skipif(
    cpu.own_cgroup2() is None, reason="making a cgroup takes root and a cgroup v2 hierarchy"
)
def test_a_cgroup_counts_what_a_daemonised_grandchild_did(tmp_path):
    groups = set(cpu.own_cgroup2().glob("dashtam-bench-*"))
    measured = cpu.run([sys.executable, "-c", ORPHANED_WORK, str(tmp_path / "done")])
    assert measured.result.returncode == 0
    assert measured.how == "cgroup"
    assert measured.cpu_seconds >= 0.4
    assert set(cpu.own_cgroup2().glob("dashtam-bench-*")) == groups  # its group is gone


def test_without_a_cgroup_it_is_what_was_reaped_and_says_so(tmp_path):
    # In a process of its own: what a pytest worker reaps meanwhile (the servers other tests
    # started and stopped) would count too.
    script = f"""
import sys
from bench import cpu
cpu.own_cgroup2 = lambda: None
orphaned = cpu.run([sys.executable, "-c", {ORPHANED_WORK!r}, {str(tmp_path / "done")!r}])
busy = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.4: pass"
print(orphaned.how, orphaned.cpu_seconds, cpu.run([sys.executable, "-c", busy]).cpu_seconds)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    how_1, how_2, orphaned, busy = result.stdout.split()
    assert f"{how_1} {how_2}" == "reaped children"
    assert float(orphaned) < 0.4  # the grandchild's work is not in it
    assert float(busy) >= 0.4
