"""Background processes the project owns, tracked by pid files.

A pid file records the pid *and* the process start time, so a recycled pid is never mistaken
for ours and never signalled. The start time is read as Linux gives it, the boot time plus
ticks since boot; the boot time is itself the wall clock less the time the machine has run,
so it moves when the clock is stepped or a virtual machine resumes from a pause. The boot time
is recorded beside the start, and a start is compared as an offset from it: a clock that
moved does not make our own running servers look like strangers (whose pid files would be
removed, leaving them to hold their ports).
"""

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from infra.errors import InfraError


@dataclass(frozen=True)
class Tracked:
    pid: int
    started: float
    # psutil.boot_time() when started was read (None: a file from before it was recorded).
    boot: float | None = None

    def is_process(self, proc: psutil.Process) -> bool:
        """Whether proc is the process recorded: the same start, measured from boot."""
        moved = psutil.boot_time() - self.boot if self.boot is not None else 0.0
        return abs(proc.create_time() - moved - self.started) < 1.0


def _record(tracked: Tracked, **more) -> str:
    return json.dumps(
        {"pid": tracked.pid, "started": tracked.started, "boot": tracked.boot, **more}
    )


def _tracked(pid: int) -> Tracked:
    return Tracked(pid, psutil.Process(pid).create_time(), psutil.boot_time())


def recorded_argv(pid_file: Path) -> list[str]:
    """The command line a pid file's process was started with ([] if unknown)."""
    try:
        return list(json.loads(pid_file.read_text()).get("argv", []))
    except (OSError, ValueError, AttributeError):
        return []


def read_pid(pid_file: Path) -> Tracked | None:
    try:
        data = json.loads(pid_file.read_text())
        boot = data.get("boot")
        return Tracked(
            int(data["pid"]), float(data["started"]), None if boot is None else float(boot)
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def running(pid_file: Path) -> Tracked | None:
    """The tracked process if it is still the one we started, else None (stale files removed)."""
    tracked = read_pid(pid_file)
    if tracked is None:
        return None
    try:
        proc = psutil.Process(tracked.pid)
        if tracked.is_process(proc) and proc.status() != psutil.STATUS_ZOMBIE:
            return tracked
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    pid_file.unlink(missing_ok=True)
    return None


def spawn(
    argv: list[str],
    *,
    pid_file: Path,
    log_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> Tracked:
    """Start argv in its own session, output appended to log_file, and record it."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        # The log is opened here (by us), so the child may run as a user who cannot reach it.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            user=user,
            group=_primary_group(user) if user else None,
            extra_groups=[] if user else None,
        )
    tracked = _tracked(proc.pid)
    pid_file.write_text(_record(tracked, argv=argv))
    return tracked


def adopt(pid: int, *, pid_file: Path) -> Tracked | None:
    """Track a process we did not start (our server, restarted by someone else) from now on.

    Recorded like a spawned one (pid and start time), except that it is signalled alone unless
    it leads its own process group: its group may be somebody else's shell.
    """
    try:
        tracked = _tracked(pid)
        record = _record(tracked, argv=psutil.Process(pid).cmdline(), group=os.getpgid(pid) == pid)
    except (psutil.Error, OSError):
        return None
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(record)
    return tracked


def _primary_group(user: str) -> int:  # pragma: root only
    import pwd

    return pwd.getpwnam(user).pw_gid


def stop(pid_file: Path, *, sig: int = signal.SIGTERM, timeout: float = 30.0) -> bool:
    """Stop the tracked process group; True if something was stopped."""
    tracked = running(pid_file)
    if tracked is None:
        return False
    signal_ = os.killpg if _leads_its_group(pid_file) else os.kill
    try:
        signal_(tracked.pid, sig)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return False
    if not wait_gone(tracked.pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            signal_(tracked.pid, signal.SIGKILL)
        wait_gone(tracked.pid, 5)
    pid_file.unlink(missing_ok=True)
    return True


def _leads_its_group(pid_file: Path) -> bool:
    """Spawned processes lead their own session; an adopted one says whether it does."""
    try:
        return bool(json.loads(pid_file.read_text()).get("group", True))
    except (OSError, ValueError, AttributeError):
        return True


def wait_gone(pid: int, timeout: float) -> bool:
    """True once the process has exited (within ``timeout``).

    Exited is a zombie too: our servers outlive the `inv` that started them, so their parent is
    init (or the container's first process), which reaps when it gets to it, seconds later here.
    psutil's wait() counts a zombie as alive and waited those seconds out, for every server.
    """
    deadline = time.monotonic() + timeout
    pause = 0.002
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def port_bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could bind ``port`` now, as ours do (SO_REUSEADDR): False also for a
    port nothing listens on that a client's connection holds as its own end."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


class PortTaken(InfraError):
    """A server's port is held by another program (``ports``: those that are)."""

    def __init__(self, message: str, ports: tuple[int, ...]):
        super().__init__(message)
        self.ports = ports


def require_free_port(port: int, what: str, setting: str) -> None:
    if port_in_use(port) or not port_bindable(port):
        raise PortTaken(
            f"port {port} for {what} is already in use by another program: stop it, or move "
            f"{what} with {setting}",
            (port,),
        )


def start_server(
    argv: list[str],
    *,
    what: str,
    ports: tuple[int, ...],
    ready,
    pid_file: Path,
    log_file: Path,
    stop_signal: int,
    timeout: float,
    interval: float = 0.1,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> Tracked:
    """Spawn a server and wait until ``ready()``; if it is not, stop it and say why: its port
    taken by someone else after all (PortTaken, so a project that picks its ports can pick
    again), or the end of its log."""
    tracked = spawn(argv, pid_file=pid_file, log_file=log_file, env=env, cwd=cwd, user=user)
    alive = lambda: running(pid_file) is not None  # noqa: E731
    try:
        started = wait_until(ready, timeout=timeout, interval=interval, alive=alive)
    except BaseException:
        stop(pid_file, sig=stop_signal, timeout=60)
        raise
    if started:
        return tracked
    stop(pid_file, sig=stop_signal, timeout=60)
    taken = tuple(port for port in ports if not port_bindable(port))
    if taken:
        raise PortTaken(
            f"{what} could not listen: port {', '.join(map(str, taken))} was taken meanwhile",
            taken,
        )
    raise InfraError(
        f"{what} did not start (pid {tracked.pid}); last lines of {log_file}:\n{tail(log_file)}"
    )


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_until(check, *, timeout: float, interval: float = 0.1, alive=None) -> bool:
    """Poll check() until true; stop early (False) when alive() says the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        if alive is not None and not alive():
            return False
        time.sleep(interval)
    return check()
