"""Connecting a provider of kind ``simplefin``: the person's setup token is claimed once, and the
access URL it gives is sealed by the vault like a token (provider_tokens.access_token_encrypted,
the ``access`` context: `inv rotate-token-key` re-seals it with the rest).

The claim goes to a server the person names, so it leaves through the guarded pool (addresses
checked as a webhook's are). The access URL is never logged, audited or shown: the audit rows
name the server's host only.
"""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.audit import service as audit
from dashtam_api.connections import queries
from dashtam_api.connections.service import _described, seal_credential
from dashtam_api.context import AppContext
from dashtam_api.errors import Conflict, Unprocessable, UpstreamError
from dashtam_api.providers import service as providers
from dashtam_api.sources import simplefin
from dashtam_api.sources.protocol import Kind
from dashtam_api.sync import budget
from dashtam_api.unit_of_work import end_read
from dashtam_models import User


def refuse_body(kind: Kind) -> None:
    """A body (a setup token, a token) sent for a provider that is not connected with one (or
    a kind with no authorization at all, ``file``): a conflict with the provider's kind (the
    body itself is a valid one)."""
    if kind is Kind.FILE:
        raise Conflict(
            "A provider of kind file has nothing to authorize: import files into its accounts "
            "(POST /api/v1/accounts/{id}/imports).",
            kind=kind.value,
        )
    raise Conflict(
        f"A provider of kind {kind.value} is not connected with a setup token or a token: send "
        "no body to start its authorization.",
        kind=kind.value,
    )


async def connect(
    *,
    ctx: AppContext,
    session: AsyncSession,
    user: User,
    provider_id: uuid.UUID,
    setup_token: str | None,
    where: dict,
) -> dict:
    """Claim the setup token, seal the access URL; the connection is active (its status, as
    GET .../authorization shows it)."""
    provider, connection = await providers.get_owned(
        session=session, user=user, provider_id=provider_id
    )
    if not setup_token:
        raise Conflict(
            "A SimpleFIN provider is connected with a setup token from your SimpleFIN Bridge: "
            'send {"setup_token": "..."}.',
            kind=Kind.SIMPLEFIN.value,
        )
    ids = {"user_id": user.id, "provider_id": provider.id, "connection_id": connection.id}
    # The request's read ends before the claim's wait (no pooled connection held meanwhile).
    await end_read(session)
    try:
        async with ctx.guarded_http() as http:
            access_url = await simplefin.claim(http, setup_token, ctx.settings)
    except simplefin.ClaimFailed as exc:
        await _record_failure(ctx, connection.id, exc, {**ids, **where})
        if exc.reason == "refused_target":
            raise Unprocessable(exc.message, field="setup_token") from None
        if exc.reason == "bad_token":
            # Of the documented form (the base64 of an http(s) URL's start), but not one whole:
            # the schema cannot see it, so not a 422 (the contract's rule).
            raise Conflict(exc.message, institution_error="bad_token") from None
        if exc.reason == "already_claimed":
            raise Conflict(exc.message, institution_error="already_claimed") from None
        raise UpstreamError(exc.message, institution_error=exc.error, transient=True) from None
    provider, connection = await seal_credential(
        session=session, vault=ctx.vault, spec=ctx.registry[provider.provider_key], user=user,
        provider_id=provider_id, credential=access_url, scheme="SimpleFIN",
    )  # fmt: skip
    # A new access URL is a new quota at the server: the budget starts afresh.
    await budget.reset(session, connection_id=connection.id)
    await audit.record(
        session=session,
        action="connected",
        details={
            "kind": Kind.SIMPLEFIN.value,
            "host": simplefin.access_of(access_url, ctx.settings).host,
            "key_id": ctx.vault.current_key_id,
        },
        **ids,
        **where,
    )
    return await _described(session, ctx.settings, provider, connection)


async def _record_failure(
    ctx: AppContext, connection_id: uuid.UUID, exc: simplefin.ClaimFailed, where: dict
) -> None:
    """Kept whatever the request does next (its own transaction): a connection not active
    turns ``error`` when the server failed it, and the audit row says why. Whether it is
    active is asked by the UPDATE itself: a setup token sent twice at once (a double click),
    the first claim's request may make it active between a read here and this write."""
    reason = {"error": exc.error[:100], "error_description": exc.message[:300]}
    async with ctx.sessions() as failure:
        if exc.reason in ("already_claimed", "upstream"):
            await queries.error_unless_active(
                failure,
                connection_id=connection_id,
                message=f"{reason['error']}: {reason['error_description']}"[:500],
            )
        await audit.record(session=failure, action="authorization_failed", details=reason, **where)
        await failure.commit()
