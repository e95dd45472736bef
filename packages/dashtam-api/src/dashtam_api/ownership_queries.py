"""The guard of every raw statement that reads a person's rows, written once.

The hot reads skip the session's user lookup (deps.CurrentUserDep): each checks the person in
its own statement. Such a statement starts from the person's row (``FROM`` PERSON, ``$1`` the
id the token names), joins what it reads to that row (``... AND x.user_id = u.id``: a row of
anyone else joins as NULLs) and ends with ``WHERE`` ACTIVE_PERSON: no row at all means the
person may no longer sign in (401, errors.ACCOUNT_GONE, as deps.get_current_user answers), a
row of NULLs that what was asked for is not theirs (404, said by the caller).
tests/api/test_ownership.py holds every authenticated read of the API to both.
"""

import uuid

import asyncpg

from dashtam_api.errors import ACCOUNT_GONE, Unauthorized
from dashtam_core.database import Reader

# The person's row, aliased ``u``: ``$1`` is always the person.
PERSON = "users u"
# The predicate of the guard: that row is there and may sign in.
ACTIVE_PERSON = "u.id = $1 AND u.is_active"


async def rows_of_active_person(
    reader: Reader, sql: str, user_id: uuid.UUID, *args
) -> list[asyncpg.Record]:
    """The rows of a guarded statement (PERSON, ACTIVE_PERSON; ``$1`` the person); Unauthorized
    when there is none (the person may not sign in)."""
    rows = await reader.fetch(sql, user_id, *args)
    if not rows:
        raise Unauthorized(ACCOUNT_GONE)
    return rows
