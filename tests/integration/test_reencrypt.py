"""Key rotation: every stored token is re-sealed under the newest key, audited, idempotently."""

import base64

import pytest
from sqlalchemy import select

from dashtam_core.reencrypt import reencrypt, reencrypt_webhook_secrets
from dashtam_core.vault import Vault, token_context, webhook_secret_context
from dashtam_models import ProviderAuditLog, ProviderToken, WebhookEndpoint
from tests.fixtures.factories import create_connection, create_provider
from tests.helpers import run_main, run_module

K1 = "k1:" + base64.urlsafe_b64encode(b"\x01" * 32).decode().rstrip("=")
K2 = "k2:" + base64.urlsafe_b64encode(b"\x02" * 32).decode().rstrip("=")

pytestmark = pytest.mark.commits  # reencrypt works on committed rows, in its own transaction


async def sealed_connection(session, vault: Vault):
    connection = await create_connection(session)
    session.add(
        ProviderToken(
            connection_id=connection.id,
            key_id=vault.current_key_id,
            access_token_encrypted=vault.seal(
                "access-1", context=token_context(connection.id, "access")
            ),
            refresh_token_encrypted=vault.seal(
                "refresh-1", context=token_context(connection.id, "refresh")
            ),
        )
    )
    await session.commit()
    return connection


async def test_rows_move_to_the_newest_key_and_stay_readable(session, engine):
    connection_id = (await sealed_connection(session, Vault.from_spec(K1))).id
    rotated = Vault.from_spec(f"{K1},{K2}")
    assert await reencrypt(engine, rotated) == 1
    assert await reencrypt(engine, rotated) == 0  # nothing left to move

    row = await session.scalar(select(ProviderToken).execution_options(populate_existing=True))
    assert row.key_id == "k2"
    only_new = Vault.from_spec(K2)  # k1 can be retired now
    assert (
        only_new.open(row.access_token_encrypted, context=token_context(connection_id, "access"))
        == "access-1"
    )
    assert (
        only_new.open(row.refresh_token_encrypted, context=token_context(connection_id, "refresh"))
        == "refresh-1"
    )
    audit = await session.scalar(select(ProviderAuditLog))
    assert (audit.action, audit.details) == ("rotation", {"from_key": "k1", "to_key": "k2"})


async def test_webhook_secrets_move_to_the_newest_key_too(session, engine):
    provider = await create_provider(session)
    old = Vault.from_spec(K1)
    endpoint = WebhookEndpoint(
        user_id=provider.user_id,
        url="https://example.com/",
        events=["sync.failed"],
        secret_encrypted=b"",
        key_id="k1",
    )
    session.add(endpoint)
    await session.flush()
    endpoint.secret_encrypted = old.seal("whsec_x", context=webhook_secret_context(endpoint.id))
    await session.commit()
    rotated = Vault.from_spec(f"{K1},{K2}")
    assert await reencrypt_webhook_secrets(engine, rotated) == 1
    assert await reencrypt_webhook_secrets(engine, rotated) == 0
    row = await session.scalar(select(WebhookEndpoint).execution_options(populate_existing=True))
    assert row.key_id == "k2"
    context = webhook_secret_context(row.id)
    assert Vault.from_spec(K2).open(row.secret_encrypted, context=context) == "whsec_x"


async def test_the_console_script_reports_what_it_did(session, test_settings):
    await sealed_connection(session, Vault.from_spec(K1))
    result = run_module(
        "dashtam_core.reencrypt",
        {"TOKEN_ENCRYPTION_KEYS": f"{K1},{K2}", "DATABASE_URL": test_settings.DATABASE_URL},
    )
    assert result.returncode == 0, result.stderr
    assert "1 token row(s) re-sealed under key k2" in result.stdout


async def test_a_token_under_a_missing_key_stops_with_one_line(session, test_settings):
    await sealed_connection(session, Vault.from_spec(K1))
    result = run_main(
        "dashtam_core.reencrypt",
        {"TOKEN_ENCRYPTION_KEYS": K2, "DATABASE_URL": test_settings.DATABASE_URL},
    )
    assert result.returncode == 1
    assert "cannot be opened: sealed under unknown key 'k1'" in result.stderr
    assert "Traceback" not in result.stderr


async def test_totp_secrets_move_to_the_newest_key_too(session, engine):
    from dashtam_core.vault import totp_context
    from dashtam_models import User

    old = Vault.from_spec(K1)
    user = User(email="totp@example.com", name="T")
    session.add(user)
    await session.flush()
    user.totp_secret_encrypted = old.seal("JBSWY3DPEHPK3PXP", context=totp_context(user.id))
    user.totp_key_id = "k1"
    await session.commit()
    rotated = Vault.from_spec(f"{K1},{K2}")
    assert await reencrypt_webhook_secrets(engine, rotated) == 1
    assert await reencrypt_webhook_secrets(engine, rotated) == 0
    row = await session.scalar(select(User).execution_options(populate_existing=True))
    assert row.totp_key_id == "k2"
    assert (
        Vault.from_spec(K2).open(row.totp_secret_encrypted, context=totp_context(row.id))
        == "JBSWY3DPEHPK3PXP"
    )
