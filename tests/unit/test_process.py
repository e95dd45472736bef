"""Pid files: we signal only processes we started, never a recycled pid."""

import json
import os
import signal
import socket
import sys

import psutil
import pytest

from infra.errors import InfraError
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


def test_a_clock_that_moved_does_not_make_our_process_a_stranger(tmp_path, monkeypatch):
    """Linux reports a start time as boot time plus ticks since boot, and the boot time as the
    wall clock less the time run: after the clock is stepped, or a virtual machine resumes from
    a pause, every start time reads some seconds (or hours) off. Ours is still ours; a pid
    that started at another moment since boot is still a stranger's."""
    pid_file = tmp_path / "x.pid"
    assert process.adopt(os.getpid(), pid_file=pid_file) is not None
    recorded = json.loads(pid_file.read_text())
    boot, start = psutil.boot_time(), psutil.Process().create_time()
    monkeypatch.setattr(psutil, "boot_time", lambda: boot + 95.0)
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: start + 95.0)
    assert process.running(pid_file) == process.read_pid(pid_file)
    assert pid_file.exists()

    pid_file.write_text(json.dumps({**recorded, "started": recorded["started"] - 30.0}))
    assert process.running(pid_file) is None
    assert not pid_file.exists()


def test_garbage_pid_file_is_ignored(tmp_path):
    pid_file = tmp_path / "x.pid"
    pid_file.write_text("not json")
    assert process.running(pid_file) is None


def test_a_port_taken_after_the_check_is_told_apart_from_a_failed_start(tmp_path):
    """A client's connection holds a port as its own end without listening on it: no connect
    finds it, and the server's bind fails. start_server says so (PortTaken, which a private
    project answers with a new port), not "did not start"; a server failing for its own reasons
    is the end of its log."""
    pid_file, log = tmp_path / "server.pid", tmp_path / "server.log"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        assert not process.port_in_use(port)
        assert not process.port_bindable(port)
        with pytest.raises(process.PortTaken, match=f"port {port} was taken") as taken:
            process.start_server(
                [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                what="a web server",
                ports=(port,),
                ready=lambda: process.port_in_use(port),
                pid_file=pid_file,
                log_file=log,
                stop_signal=signal.SIGKILL,
                timeout=30,
            )
        assert taken.value.ports == (port,)
    assert process.port_bindable(port)
    with pytest.raises(InfraError, match="did not start") as failed:
        process.start_server(
            [sys.executable, "-c", "raise SystemExit('no config')"],
            what="a web server",
            ports=(port,),
            ready=lambda: process.port_in_use(port),
            pid_file=pid_file,
            log_file=log,
            stop_signal=signal.SIGKILL,
            timeout=30,
        )
    assert not isinstance(failed.value, process.PortTaken)
    assert "no config" in str(failed.value)
