"""Running a command in a hatch environment without ``hatch run`` when nothing has changed.

``hatch run ENV:python ...`` costs ~0.45 s before the command starts (hatch imports itself,
reads its configuration, checks that the environment's dependencies are in sync), and every
task pays it: a warm `inv up` or `inv down` is 1.5-5 s in all. What ``hatch run`` does once the
environment is in sync is start the environment's Python with a few variables set (its
``PATH``, ``VIRTUAL_ENV``, the ``env-vars`` of hatch.toml). So after a ``hatch run`` has
installed or checked the environment, we record that interpreter and those variables with a
digest of everything hatch installs the environment from (hatch.toml, the pyproject.toml files,
hatch's version); while the digest holds and the interpreter is there, the task starts it
directly. Any change to those files, a new hatch, or a removed environment goes through
``hatch run`` again, which installs what changed, and records anew.

Imported by tasks.py, outside the hatch environment: the standard library only.
"""

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

# Printed by the environment's Python under `hatch run`: what it was started as and with. No
# braces: hatch formats the {fields} of a command.
_PROBE = (
    "import json, os, sys; print(json.dumps(dict(python=sys.executable, env=dict(os.environ))))"
)


def sources(root: Path) -> list[Path]:
    """The files hatch installs the environments from."""
    return sorted(
        [root / "hatch.toml", root / "pyproject.toml", *root.glob("packages/*/pyproject.toml")]
    )


def digest(root: Path, env: str) -> str:
    h = hashlib.sha256(f"{env}\0".encode())
    try:
        h.update(metadata.version("hatch").encode())
    except metadata.PackageNotFoundError:
        h.update(b"hatch on PATH")
    for path in sources(root):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes() if path.exists() else b"\0missing")
    return h.hexdigest()


def _record_path(root: Path, env: str) -> Path:
    return root / ".dashtam" / "hatch-envs" / f"{env}.json"


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, list]:
    """What hatch changed in the environment, so it can be applied to a later one: a variable
    hatch put in front of ours (PATH) as ["prefix", ...], any other as ["set", ...], one it
    removed as ["unset"]."""
    found: dict[str, list] = {}
    for name, value in after.items():
        old = before.get(name)
        if old == value:
            continue
        if old and value.endswith(old) and len(value) > len(old):
            found[name] = ["prefix", value[: -len(old)]]
        else:
            found[name] = ["set", value]
    for name in before:
        if name not in after:
            found[name] = ["unset"]
    return found


def applied(base: Mapping[str, str], recorded: Mapping[str, list]) -> dict[str, str]:
    env = dict(base)
    for name, (how, *value) in recorded.items():
        if how == "prefix":
            env[name] = value[0] + env.get(name, "")
        elif how == "set":
            env[name] = value[0]
        else:
            env.pop(name, None)
    return env


def direct(root: Path, env: str) -> tuple[str, dict[str, str]] | None:
    """The environment's interpreter and variables when the record still holds, else None."""
    try:
        record = json.loads(_record_path(root, env).read_text())
        if record["digest"] != digest(root, env) or not os.access(record["python"], os.X_OK):
            return None
        return record["python"], applied(os.environ, record["changes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(root: Path, env: str, hatch: list[str]) -> None:
    """Record what `hatch run` starts for ``env`` (after it ran: the environment is in sync).
    Best effort: without a record the next task goes through hatch again."""
    probe = subprocess.run(
        [*hatch, "run", f"{env}:python", "-c", _PROBE],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return
    try:
        seen = json.loads(probe.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return
    record = {
        "digest": digest(root, env),
        "python": seen["python"],
        "changes": changes(os.environ, seen["env"]),
    }
    path = _record_path(root, env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
