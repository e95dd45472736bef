"""Keyset ("cursor") pagination: a page ends at a row's (timestamp, id), the next one starts
after it. The cursor is that pair, opaque to clients; a page is one range scan of an index on
(owner, timestamp, id) however deep it is, and rows inserted meanwhile never shift a page
(offsets would skip or repeat them)."""

import base64
import binascii
import uuid
from datetime import datetime

from dashtam_api.errors import BadRequest


def encode_cursor(at: datetime, row_id: uuid.UUID | str) -> str:
    raw = f"{at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The keyset a cursor names; 400 for anything this API did not give out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, row_id = raw.split("|")
        at = datetime.fromisoformat(when)
        if at.tzinfo is None:
            raise ValueError("naive")
        return at, uuid.UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("The cursor is not one this API gave out.", parameter="cursor") from None
