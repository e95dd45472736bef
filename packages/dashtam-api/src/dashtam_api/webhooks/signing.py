"""Standard Webhooks signatures (https://www.standardwebhooks.com, spec/standard-webhooks.md).

A secret is ``whsec_`` + the base64 of 32 random bytes. A message is signed as
``v1,<base64(HMAC-SHA256(secret bytes, "<webhook-id>.<webhook-timestamp>.<body>"))>``, the
timestamp in whole seconds since the epoch; any Standard Webhooks library verifies it.
"""

import base64
import hashlib
import hmac
import os

PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header's value for this message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
