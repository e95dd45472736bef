"""Ports a private project (infra/private_project.py) picks for itself, and picks again when
one is taken before its server listens on it.

A free port found by binding port 0 is free only at that moment: until the server binds it,
seconds later, anything else may take it (a client's connection holds one as its own end, a
test's server binds port 0 too). A checkout's ports are a person's choice, and a taken one is a
clear error (``process.require_free_port``); a private project's were picked by us, so the start
that finds one taken picks another, writes it into the project's env files and starts again.
"""

import json
import random
import socket
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from infra.files import write_private
from infra.layout import Layout
from infra.runtime.process import PortTaken

T = TypeVar("T")

ATTEMPTS = 5


def free_port() -> int:
    """A port nothing listens on now (only now: see above)."""
    return free_ports(1)[0]


# Below every system's range of ports for outgoing connections (Linux 32768-60999, macOS and
# Windows 49152-65535): a port the kernel hands to port 0 is one it also hands to any client's
# end, so a server of ours that stops and starts again (a test restarting Valkey by hand) could
# find its port held by a connection of the suite's. These are handed to nobody but a binder.
PICKED_RANGE = range(20000, 32768)


def free_ports(count: int) -> list[int]:
    """``count`` different ports nothing listens on now (all held until all are found), outside
    the range the system gives outgoing connections where we can tell it (else from port 0)."""
    sockets: list[socket.socket] = []
    candidates = _candidates()
    try:
        while len(sockets) < count:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", next(candidates, 0)))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _candidates() -> Iterator[int]:
    """Random ports of PICKED_RANGE, each once, where the system's outgoing range starts above
    it; nothing (port 0, the system's pick) where it does not or cannot be read."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 49152 if sys.platform in ("darwin", "win32") else 0
    if low <= PICKED_RANGE[-1]:
        return iter(())
    return iter(random.sample(PICKED_RANGE, len(PICKED_RANGE)))


def record(layout: Layout, ports: Iterable[int]) -> None:
    """Say that ``layout``'s project picked these ports itself: they may be picked again."""
    layout.state.mkdir(mode=0o700, exist_ok=True)
    write_private(layout.picked_ports_file, json.dumps(sorted(ports)) + "\n")


def _picked(layout: Layout) -> set[int]:
    try:
        return set(json.loads(layout.picked_ports_file.read_text()))
    except (OSError, ValueError):
        return set()


def repick(layout: Layout, taken: Iterable[int]) -> bool:
    """New ports for ``taken`` in the project's env files, if the project picked them itself;
    False (nothing changed) for anyone else's."""
    taken = set(taken)
    picked = _picked(layout)
    if not taken or not taken <= picked:
        return False
    moves = dict(zip(sorted(taken), free_ports(len(taken)), strict=True))
    for env_file in (layout.dev_env_file, layout.test_env_file):
        if env_file.exists():
            write_private(env_file, _moved(env_file, moves))
    record(layout, (moves.get(port, port) for port in picked))
    return True


def _moved(env_file: Path, moves: dict[int, int]) -> str:
    """The env file with every port setting (``*_PORT``, or the port of a URL) that holds one of
    ``moves``' old ports set to the new one; everything else as it is."""
    lines = []
    for line in env_file.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            if key.strip().endswith("_PORT") and value.strip().isdigit():
                value = str(moves.get(int(value), value))
            elif "://" in value:
                value = _url_moved(value, moves)
            line = f"{key}={value}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _url_moved(url: str, moves: dict[int, int]) -> str:
    try:
        netloc, port = urlsplit(url).netloc, urlsplit(url).port
    except ValueError:
        return url
    if port not in moves:
        return url
    return url.replace(netloc, netloc.removesuffix(f":{port}") + f":{moves[port]}", 1)


def retrying(
    layout: Layout, attempt: Callable[[], T], *, moved: Callable[[], None] = lambda: None
) -> T:
    """``attempt()``, again on new ports while a port the project picked itself was taken
    (``moved()`` first: what read the old ports stops)."""
    for _ in range(ATTEMPTS - 1):
        try:
            return attempt()
        except PortTaken as exc:
            if not repick(layout, exc.ports):
                raise
            moved()
    return attempt()
