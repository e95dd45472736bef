"""Connecting a provider of kind ``api_token``: the token the person made at the institution
(with what it reads: IBKR's Flex token and query id) is tried once at the institution, then
sealed by the vault like any token (provider_tokens.access_token_encrypted, the ``access``
context: `inv rotate-token-key` re-seals it with the rest). A new token on a connected provider
is a reconnection: its accounts and transactions stay (they are the provider's, keyed by the
institution's account ids).

The institution is the operator's (its address a setting), so the try goes through the
institution pool (ctx.http). The token is never logged, audited or shown.
"""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.audit import service as audit
from dashtam_api.connections.schemas import ApiTokenAuthorization
from dashtam_api.connections.service import _described, seal_credential
from dashtam_api.context import AppContext
from dashtam_api.errors import Conflict, UpstreamError
from dashtam_api.providers import service as providers
from dashtam_api.sources import SOURCES
from dashtam_api.sources.protocol import Kind
from dashtam_api.sources.shapes import SourceError
from dashtam_api.unit_of_work import end_read
from dashtam_models import User


async def connect(
    *,
    ctx: AppContext,
    session: AsyncSession,
    user: User,
    provider_id: uuid.UUID,
    body: ApiTokenAuthorization | None,
    where: dict,
) -> dict:
    """Try the token, seal it; the connection is active (its status, as GET .../authorization
    shows it). A token the institution refuses is a 409 with its reason; the institution
    failing, a 502."""
    provider, connection = await providers.get_owned(
        session=session, user=user, provider_id=provider_id
    )
    if body is None:
        raise Conflict(
            "A provider of kind api_token is connected with the token you made at the "
            'institution and what it reads: send {"token": "...", "query_id": "..."}.',
            kind=Kind.API_TOKEN.value,
        )
    spec = ctx.registry[provider.provider_key]
    source = SOURCES[spec.source]
    credential = source.credential(body.token, body.query_id)
    ids = {"user_id": user.id, "provider_id": provider.id, "connection_id": connection.id}
    # The request's read ends before the institution's wait (no pooled connection held).
    await end_read(session)
    try:
        async with ctx.http() as http:
            await source.check(
                base_url=spec.api_base_url,
                credential=credential,
                http=http,
                settings=ctx.settings,
            )
    except SourceError as exc:
        async with ctx.sessions() as failure:
            details = {"error": exc.error[:100], "error_description": exc.description[:300]}
            await audit.record(
                session=failure, action="authorization_failed", details=details, **ids, **where
            )
            await failure.commit()
        if exc.transient:
            raise UpstreamError(exc.description, institution_error=exc.error) from None
        raise Conflict(exc.description, institution_error=exc.error) from None
    provider, connection = await seal_credential(
        session=session, vault=ctx.vault, spec=spec, user=user, provider_id=provider_id,
        credential=credential, scheme="ApiToken",
    )  # fmt: skip
    await audit.record(
        session=session,
        action="connected",
        details={"kind": Kind.API_TOKEN.value, "key_id": ctx.vault.current_key_id},
        **ids,
        **where,
    )
    return await _described(session, ctx.settings, provider, connection)
