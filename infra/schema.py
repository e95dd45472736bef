"""Whether a database is at the migrations' head, read without Alembic: the fast path of a warm
`inv up` (Alembic and SQLAlchemy take ~1.3 s to import in a fresh process; the answer is one
query). Anything but "exactly at the one head" still goes to dashtam-init-db, which migrates,
adopts and explains. tests/unit/test_schema_head.py holds this reading to Alembic's own."""

import asyncio
import re
from pathlib import Path

import asyncpg

from infra.envfiles import Credentials
from infra.layout import ROOT

VERSIONS = ROOT / "packages" / "dashtam-core" / "src" / "dashtam_core" / "migrations" / "versions"
_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*['\"](\w+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(.+)$", re.M)


def head(versions: Path = VERSIONS) -> tuple[str, str] | None:
    """(revision, its description) of the one head; None when there is not exactly one."""
    described, parents = {}, set()
    for path in versions.glob("*.py"):
        text = path.read_text()
        found = _REVISION.search(text)
        down = _DOWN.search(text)
        if found is None or down is None:
            return None  # not a revision we can read: let Alembic decide
        doc = text.split('"""', 2)[1].strip().split("\n\n")[0] if text.startswith('"""') else ""
        described[found.group(1)] = " ".join(doc.split())
        parents.update(re.findall(r"['\"](\w+)['\"]", down.group(1)))
    heads = set(described) - parents
    if len(heads) != 1:
        return None
    (only,) = heads
    return only, described[only]


def at_head(creds: Credentials) -> str | None:
    """``revision (description)`` when the environment's database is at the head; else None
    (behind, ahead, empty, unreachable: init-db's business)."""
    wanted = head()
    if wanted is None:
        return None

    async def current() -> list[str]:
        conn = await asyncpg.connect(
            host=creds.db_host,
            port=creds.db_port,
            user=creds.db_user,
            password=creds.db_password,
            database=creds.db_name,
            timeout=5,
        )
        try:
            if await conn.fetchval("SELECT to_regclass('alembic_version') IS NULL"):
                return []
            return [r[0] for r in await conn.fetch("SELECT version_num FROM alembic_version")]
        finally:
            await conn.close()

    try:
        versions = asyncio.run(current())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    return f"{wanted[0]} ({wanted[1]})" if versions == [wanted[0]] else None
