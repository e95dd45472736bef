"""Pid files: we signal only processes we started, never a recycled pid."""

import json
import os
import sys

from infra.runtime import process


def test_spawn_track_and_stop(tmp_path):
    pid_file, log = tmp_path / "sleeper.pid", tmp_path / "sleeper.log"
    tracked = process.spawn(
        [sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(60)"],
        pid_file=pid_file,
        log_file=log,
    )
    try:
        assert process.running(pid_file) == tracked
        assert process.wait_until(lambda: "hi" in log.read_text(), timeout=10)
    finally:
        assert process.stop(pid_file, timeout=10) is True
    assert process.running(pid_file) is None
    assert not pid_file.exists()


def test_a_pid_file_naming_someone_elses_process_is_stale(tmp_path):
    pid_file = tmp_path / "x.pid"
    # Our own pid, but with a start time that is not ours: a recycled pid.
    pid_file.write_text(json.dumps({"pid": os.getpid(), "started": 12345.0}))
    assert process.running(pid_file) is None
    assert not pid_file.exists()
    assert process.stop(pid_file) is False


def test_garbage_pid_file_is_ignored(tmp_path):
    pid_file = tmp_path / "x.pid"
    pid_file.write_text("not json")
    assert process.running(pid_file) is None
