"""The provider-token vault: AES-256-GCM under a key identifier, several keys for rotation.

A sealed value is ``b"v1" || len(key_id) || key_id || nonce(12) || ciphertext+tag``. The
associated data binds it to its row and column (e.g. ``b"provider_tokens:<id>:access"``), so a
ciphertext copied to another row or column does not open. The last configured key encrypts;
every configured key decrypts, so keys rotate without downtime. A tampered or foreign value
raises VaultError, never returns garbage.
"""

import base64
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = b"v1"
NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class VaultError(Exception):
    """A value that cannot be opened (tampered, truncated, or under an unknown key)."""


def token_context(connection_id: object, column: str) -> bytes:
    """Associated data binding a sealed provider token to its connection and column."""
    return f"provider_tokens:{connection_id}:{column}".encode()


def webhook_secret_context(endpoint_id: object) -> bytes:
    """Associated data binding a sealed webhook signing secret to its endpoint."""
    return f"webhook_endpoints:{endpoint_id}:secret".encode()


def totp_context(user_id: object) -> bytes:
    """Associated data binding a sealed TOTP secret to its user."""
    return f"users:{user_id}:totp".encode()


def parse_keys(spec: str) -> dict[str, bytes]:
    """``"k1:<b64>,k2:<b64>"`` -> ordered {key_id: 32-byte key}; ValueError says what is wrong."""
    keys: dict[str, bytes] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key_id, sep, encoded = item.partition(":")
        if not sep or not _KEY_ID.match(key_id):
            raise ValueError(f"entry {key_id!r} is not KEY_ID:BASE64KEY")
        try:
            padded = encoded + "=" * (-len(encoded) % 4)
            key = base64.b64decode(padded, altchars=b"-_", validate=True)
        except ValueError:
            raise ValueError(f"key {key_id!r} is not base64") from None
        if len(key) != 32:
            raise ValueError(f"key {key_id!r} must be 32 bytes, not {len(key)}")
        if key_id in keys:
            raise ValueError(f"key id {key_id!r} appears twice")
        keys[key_id] = key
    if not keys:
        raise ValueError("no keys")
    return keys


def format_keys(keys: dict[str, bytes]) -> str:
    """The inverse of parse_keys: the TOKEN_ENCRYPTION_KEYS value for these keys."""
    return ",".join(f"{key_id}:{_encode(key)}" for key_id, key in keys.items())


def _encode(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def new_key() -> str:
    """A fresh key in the configuration's encoding."""
    return _encode(os.urandom(32))


@dataclass(frozen=True)
class Vault:
    keys: dict[str, bytes]

    @classmethod
    def from_spec(cls, spec: str) -> "Vault":
        return cls(parse_keys(spec))

    @property
    def current_key_id(self) -> str:
        return next(reversed(self.keys))

    def seal(self, plaintext: str, *, context: bytes) -> bytes:
        key_id = self.current_key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[key_id]).encrypt(nonce, plaintext.encode(), context)
        kid = key_id.encode()
        return VERSION + bytes([len(kid)]) + kid + nonce + sealed

    def key_id_of(self, value: bytes) -> str:
        if len(value) < 3 or value[:2] != VERSION:
            raise VaultError("not a vault value")
        size = value[2]
        return value[3 : 3 + size].decode(errors="replace")

    def open(self, value: bytes, *, context: bytes) -> str:
        key_id = self.key_id_of(value)
        key = self.keys.get(key_id)
        if key is None:
            raise VaultError(f"sealed under unknown key {key_id!r}")
        start = 3 + len(key_id.encode())
        nonce, sealed = value[start : start + NONCE_BYTES], value[start + NONCE_BYTES :]
        try:
            return AESGCM(key).decrypt(nonce, sealed, context).decode()
        except (InvalidTag, ValueError):
            raise VaultError("value was tampered with or belongs elsewhere") from None

    def needs_rotation(self, value: bytes) -> bool:
        return self.key_id_of(value) != self.current_key_id
