"""The token vault: round trip, tampering, binding to its row, rotation."""

import base64

import pytest

from dashtam_core.vault import Vault, VaultError, new_key, parse_keys, token_context

CONTEXT = token_context("c0ffee", "access")


def vault(*ids: str) -> Vault:
    return Vault.from_spec(",".join(f"{i}:{KEYS[i]}" for i in ids))


# Fixed keys: parametrized ids must be the same in every xdist worker.
KEYS = {f"k{i}": base64.urlsafe_b64encode(bytes([i]) * 32).decode().rstrip("=") for i in (1, 2, 3)}


def test_round_trip_and_fresh_nonce_each_time():
    v = vault("k1")
    first, second = v.seal("secret-token", context=CONTEXT), v.seal("secret-token", context=CONTEXT)
    assert first != second
    assert b"secret-token" not in first
    assert v.open(first, context=CONTEXT) == "secret-token"
    assert v.key_id_of(first) == "k1"


@pytest.mark.parametrize("position", [0, 2, 3, 10, -1])
def test_any_flipped_byte_is_an_error_not_garbage(position):
    v = vault("k1")
    sealed = bytearray(v.seal("secret-token", context=CONTEXT))
    sealed[position] ^= 0x01
    with pytest.raises(VaultError):
        v.open(bytes(sealed), context=CONTEXT)


def test_truncated_and_foreign_values_are_errors():
    v = vault("k1")
    sealed = v.seal("secret-token", context=CONTEXT)
    for broken in (sealed[:10], b"", b"plaintext", sealed[:-1]):
        with pytest.raises(VaultError):
            v.open(broken, context=CONTEXT)


def test_a_value_moved_to_another_row_or_column_does_not_open():
    v = vault("k1")
    sealed = v.seal("secret-token", context=CONTEXT)
    with pytest.raises(VaultError):
        v.open(sealed, context=token_context("c0ffee", "refresh"))
    with pytest.raises(VaultError):
        v.open(sealed, context=token_context("another", "access"))


def test_rotation_old_values_open_new_ones_use_the_newest_key():
    old = vault("k1").seal("secret-token", context=CONTEXT)
    rotated = vault("k1", "k2")
    assert rotated.current_key_id == "k2"
    assert rotated.needs_rotation(old)
    assert rotated.open(old, context=CONTEXT) == "secret-token"
    new = rotated.seal("secret-token", context=CONTEXT)
    assert rotated.key_id_of(new) == "k2"
    assert not rotated.needs_rotation(new)
    # Once k1 is retired, only re-sealed values open.
    with pytest.raises(VaultError, match="unknown key 'k1'"):
        vault("k2", "k3").open(old, context=CONTEXT)
    assert vault("k2", "k3").open(new, context=CONTEXT) == "secret-token"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no keys"),
        ("k1", "not KEY_ID:BASE64KEY"),
        ("bad id:" + KEYS["k1"], "not KEY_ID:BASE64KEY"),
        ("k1:c2hvcnQ", "must be 32 bytes"),
        ("k1:!!!", "base64"),
        (f"k1:{KEYS['k1']},k1:{KEYS['k2']}", "appears twice"),
    ],
)
def test_bad_key_specs_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_keys(spec)


def test_new_keys_are_valid_and_distinct():
    first, second = new_key(), new_key()
    assert first != second
    assert len(parse_keys(f"a:{first},b:{second}")) == 2
