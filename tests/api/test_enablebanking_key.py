"""The Enable Banking application's key is checked when the registry is built: one that cannot
sign, or that others may read outside development and testing, leaves the provider type
unconfigured with one line saying why, instead of a 502 at a person's first connect."""

import logging

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dashtam_api.providers.registry import build_registry


def _pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _registry(settings, environment: str, key_file):
    own = settings.model_copy(
        update={
            "ENVIRONMENT": environment,
            "ENABLE_BANKING_APP_ID": "app-1",
            "ENABLE_BANKING_KEY_FILE": str(key_file),
        }
    )
    return build_registry(own)["enablebanking"]


def test_a_key_the_owner_alone_reads_is_configured(test_settings, tmp_path):
    key_file = tmp_path / "eb.pem"
    key_file.write_bytes(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    key_file.chmod(0o600)
    assert _registry(test_settings, "production", key_file).configured


@pytest.mark.parametrize(
    ("case", "environment", "said"),
    [
        ("missing", "production", "cannot be read"),
        ("not a key", "production", "cannot be read"),
        ("an EC key", "production", "not an RSA key"),
        ("group-readable", "production", "chmod 600"),
    ],
)
def test_a_key_that_cannot_serve_leaves_it_unconfigured_and_is_said_at_start(
    test_settings, tmp_path, caplog, case, environment, said
):
    key_file = tmp_path / "eb.pem"
    if case == "not a key":
        key_file.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    elif case == "an EC key":
        key_file.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    elif case == "group-readable":
        key_file.write_bytes(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
        key_file.chmod(0o640)
    with caplog.at_level(logging.ERROR, logger="dashtam_api.providers.registry"):
        spec = _registry(test_settings, environment, key_file)
    assert not spec.configured
    (line,) = [r.getMessage() for r in caplog.records]
    assert said in line
    assert str(key_file) in line
    assert "\n" not in line


def test_a_group_readable_key_is_taken_in_development_and_testing(test_settings, tmp_path):
    key_file = tmp_path / "eb.pem"
    key_file.write_bytes(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    key_file.chmod(0o644)
    assert _registry(test_settings, "testing", key_file).configured
