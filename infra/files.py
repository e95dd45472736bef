"""Small helpers for generated secrets and private files."""

import os
import secrets
from pathlib import Path


def token(nbytes: int = 32) -> str:
    """A URL-safe random secret (safe inside URLs, env files and config files)."""
    return secrets.token_urlsafe(nbytes)


def write_private(path: Path, content: str | bytes) -> None:
    """Write a file readable by its owner only (0600), never briefly wider."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blanks skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values
