"""``dashtam-reencrypt-tokens``: re-seal every provider token (and webhook signing secret)
under the newest vault key.

Part of a key rotation (``inv rotate-token-key``): a new key is appended to
TOKEN_ENCRYPTION_KEYS, the API restarts knowing every key, then this moves each token to the
new key so the old one can eventually be dropped. Rows are locked while they are re-sealed;
each re-sealed connection gets a ``rotation`` audit row. Running it twice changes nothing.
"""

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dashtam_core.cli import CommandError, run
from dashtam_core.config import load_settings
from dashtam_core.database import create_engine
from dashtam_core.vault import (
    Vault,
    VaultError,
    token_context,
    totp_context,
    webhook_secret_context,
)
from dashtam_models import (
    Provider,
    ProviderAuditLog,
    ProviderConnection,
    ProviderToken,
    User,
    WebhookEndpoint,
)

log = logging.getLogger("dashtam.reencrypt")
COLUMNS = {
    "access": "access_token_encrypted",
    "refresh": "refresh_token_encrypted",
    "id": "id_token_encrypted",
}


async def reencrypt(engine: AsyncEngine, vault: Vault) -> int:
    """Re-seal rows not under the current key; returns how many rows changed."""
    changed = 0
    async with AsyncSession(engine, expire_on_commit=False) as session:
        rows = (
            await session.execute(
                select(ProviderToken, Provider.user_id, Provider.id)
                .join(ProviderConnection, ProviderConnection.id == ProviderToken.connection_id)
                .join(Provider, Provider.id == ProviderConnection.provider_id)
                .where(ProviderToken.key_id != vault.current_key_id)
                .with_for_update(of=ProviderToken)
            )
        ).all()
        for token, user_id, provider_id in rows:
            previous = token.key_id
            for column, attribute in COLUMNS.items():
                sealed = getattr(token, attribute)
                if sealed:
                    context = token_context(token.connection_id, column)
                    try:
                        plain = vault.open(sealed, context=context)
                    except VaultError as exc:
                        raise CommandError(
                            f"token of connection {token.connection_id} cannot be opened: {exc}"
                        ) from None
                    setattr(token, attribute, vault.seal(plain, context=context))
            token.key_id = vault.current_key_id
            session.add(
                ProviderAuditLog(
                    action="rotation",
                    user_id=user_id,
                    provider_id=provider_id,
                    connection_id=token.connection_id,
                    details={"from_key": previous, "to_key": vault.current_key_id},
                )
            )
            changed += 1
        await session.commit()
    return changed


async def reencrypt_webhook_secrets(engine: AsyncEngine, vault: Vault) -> int:
    """Re-seal webhook signing secrets and TOTP secrets not under the current key; how many
    changed."""
    changed = 0
    async with AsyncSession(engine, expire_on_commit=False) as session:
        users = await session.scalars(
            select(User)
            .where(User.totp_secret_encrypted.isnot(None), User.totp_key_id != vault.current_key_id)
            .with_for_update()
        )
        for user in users:
            try:
                plain = vault.open(user.totp_secret_encrypted, context=totp_context(user.id))
            except VaultError as exc:
                raise CommandError(
                    f"TOTP secret of user {user.id} cannot be opened: {exc}"
                ) from None
            user.totp_secret_encrypted = vault.seal(plain, context=totp_context(user.id))
            user.totp_key_id = vault.current_key_id
            changed += 1
        endpoints = await session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.key_id != vault.current_key_id)
            .with_for_update()
        )
        for endpoint in endpoints:
            context = webhook_secret_context(endpoint.id)
            try:
                plain = vault.open(endpoint.secret_encrypted, context=context)
            except VaultError as exc:
                raise CommandError(
                    f"secret of webhook endpoint {endpoint.id} cannot be opened: {exc}"
                ) from None
            endpoint.secret_encrypted = vault.seal(plain, context=context)
            endpoint.key_id = vault.current_key_id
            changed += 1
        await session.commit()
    return changed


async def _main() -> int:
    settings = load_settings()
    if not settings.TOKEN_ENCRYPTION_KEYS:
        raise CommandError("TOKEN_ENCRYPTION_KEYS is empty: run `inv setup`")
    vault = Vault.from_spec(settings.TOKEN_ENCRYPTION_KEYS)
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        changed = await reencrypt(engine, vault)
        secrets = await reencrypt_webhook_secrets(engine, vault)
    finally:
        await engine.dispose()
    log.info(
        "database %s: %d token row(s) re-sealed under key %s (and %d webhook/TOTP secret(s))",
        settings.database_name,
        changed,
        vault.current_key_id,
        secrets,
    )
    return 0


def main() -> None:
    run("reencrypt-tokens", _main)


if __name__ == "__main__":
    main()
