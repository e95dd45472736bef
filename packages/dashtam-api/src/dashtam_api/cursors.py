"""Keyset ("cursor") pagination: a page ends at a row's (timestamp, id), the next one starts
after it. The cursor is that pair, opaque to clients; a page is one range scan of an index on
(owner, timestamp, id) however deep it is, and rows inserted meanwhile never shift a page
(offsets would skip or repeat them).

A cursor is a position, not a secret: the 24 bytes of the pair (microseconds since the Unix
epoch, signed, then the id's 16 bytes) in unpadded base64url, 32 characters. Every string of
that form (``CURSOR_PATTERN``, which the OpenAPI document gives) names a position: a time
before or after any row stands for the start or the end, any 16 bytes are an id. A cursor
moves only within the rows its query selects (the person's own); anything else is a 400.
"""

import base64
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import Field, WithJsonSchema

from dashtam_api.errors import BadRequest

CURSOR_PATTERN = "^[A-Za-z0-9_-]{32}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)

# The query parameter of every list paged by cursor.
Cursor = Annotated[
    Annotated[str, WithJsonSchema({"type": "string", "pattern": CURSOR_PATTERN})] | None,
    Field(description="`next_cursor` of the page before."),
]


def encode_cursor(at: datetime, row_id: uuid.UUID | str) -> str:
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    raw = micros.to_bytes(8, "big", signed=True) + uuid.UUID(str(row_id)).bytes
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor names; 400 for a string not of the documented form. (Checked
    here rather than by the query model so that the refusal names the cursor, as it always
    has.)"""
    if not _CURSOR.fullmatch(cursor):
        raise BadRequest("The cursor is not one this API gave out.", parameter="cursor")
    raw = base64.urlsafe_b64decode(cursor)
    micros = int.from_bytes(raw[:8], "big", signed=True)
    try:
        at = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:  # beyond the years datetime holds: before or after every row
        at = _EARLIEST if micros < 0 else _LATEST
    return at, uuid.UUID(bytes=raw[8:])
