"""The one commit rule (docs/architecture.md), in code.

A request's session is committed once, by its dependency (deps.get_session), when the endpoint
has returned: routers and services never commit. What must wait for that commit (a mail that
reads the request's rows) is handed to ``after_commit``. A service that is about to wait on an
institution ends the request's read first (``end_read``) so that no pooled connection idles
meanwhile. A session a job opens itself (``ctx.sessions()``) is that job's unit of work and is
committed where it was opened (tests/unit/test_layers.py holds all of this).
"""

import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

_AFTER_COMMIT = "dashtam.after_commit"
log = logging.getLogger("dashtam.api")


async def commit(session: AsyncSession) -> None:
    """Commit, then run what waited for it (``after_commit``). Only the request's session
    dependency calls this."""
    await session.commit()
    for action in session.info.pop(_AFTER_COMMIT, ()):
        try:
            action()
        except Exception:  # the request's writes are kept: its answer stays a success
            log.exception("an action after the commit failed")


def after_commit(session: AsyncSession, action: Callable[[], None]) -> None:
    """Run ``action`` once the request's session has committed (never when it rolls back): for
    work that must see the request's rows, such as a mail sent in the background."""
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


async def end_read(session: AsyncSession) -> None:
    """End the request's transaction, which has only read so far, and give its pooled
    connection back: before a long wait (an institution's answer) that runs transactions of its
    own. Refuses a session holding unflushed changes: those are the request's to commit. (It
    cannot see changes already flushed: call it before the request writes anything.)"""
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("end_read() on a session with changes: they would be committed")
    await session.commit()


async def discard(session: AsyncSession) -> None:
    """Throw away what the request wrote so far: it is about to refuse, and must first record
    the refusal in a transaction of its own (a failed import, kept with its errors) that would
    otherwise wait behind, or be undone with, the request's."""
    await session.rollback()
