"""bench/cpu.py: the CPU of a command and everything it starts, a server that daemonises too
(what `inv bench tests` reports for a suite whose tests start such servers)."""

import sys

import pytest

from bench import cpu

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
    cpu.cgroup2_root() is None, reason="making a cgroup takes root and a cgroup v2 hierarchy"
)
def test_a_cgroup_counts_what_a_daemonised_grandchild_did(tmp_path):
    measured = cpu.run([sys.executable, "-c", ORPHANED_WORK, str(tmp_path / "done")])
    assert measured.result.returncode == 0
    assert measured.how == "cgroup"
    assert measured.cpu_seconds >= 0.4
    assert not list(cpu.cgroup2_root().glob("dashtam-bench-*"))  # its group is gone


def test_without_a_cgroup_it_is_what_was_reaped_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "cgroup2_root", lambda: None)
    orphaned = cpu.run([sys.executable, "-c", ORPHANED_WORK, str(tmp_path / "done")])
    assert orphaned.how == "reaped children"
    assert orphaned.cpu_seconds < 0.4  # the grandchild's work is not in it
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass"
    assert cpu.run([sys.executable, "-c", busy]).cpu_seconds >= 0.4
