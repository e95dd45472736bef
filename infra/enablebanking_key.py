"""The development and test Enable Banking application's private key (RSA, like a real
application's), made by `inv setup` next to the CA: the API signs its JWTs with it and the
Enable Banking look-alike it serves checks them with its public key. Mode 0600, in certs/
(gitignored): never committed."""

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from infra.files import write_private

# The name dashtam_api.sources.enablebanking_api.SANDBOX_KEY_NAME looks for.
NAME = "enablebanking-sandbox-key.pem"


def ensure_key(certs_dir: Path) -> list[Path]:
    """Make the key unless present; returns the files written."""
    path = certs_dir / NAME
    if path.is_file():
        return []
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)
    return [path]
