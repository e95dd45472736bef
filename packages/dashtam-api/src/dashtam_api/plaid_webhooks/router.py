"""Plaid's webhooks (the item's ``webhook`` URL given at Link: PLAID_WEBHOOK_URL). Public: the
sender proves itself with the ``Plaid-Verification`` signature (verify.py); anything unsigned,
badly signed, stale, replayed or not the body signed is a 401 problem, a body that is not a
JSON object a 400, never a 500. The body is read up to MAX_BODY_BYTES whatever it says of its
length (a chunked one too; Plaid's are a few hundred bytes): past that, a 413. More key
fetches a minute than verify.KEY_FETCHES: a 503 with Retry-After. Not in the API's document:
no client of Dashtam's calls it."""

import json
from typing import Annotated

from fastapi import Header, Request

from dashtam_api.deps import ContextDep, RedisDep, SessionDep
from dashtam_api.errors import BadRequest, NotFound, ProblemError, UpstreamError
from dashtam_api.plaid_webhooks import service
from dashtam_api.plaid_webhooks.verify import Busy, Refused, verified
from dashtam_api.routing import api_router
from dashtam_api.sources.plaid_api import PlaidAPI, PlaidFailure

router = api_router(prefix="/api/v1/plaid", tags=["connections"], include_in_schema=False)
MAX_BODY_BYTES = 64 * 1024


class NotSigned(ProblemError):
    status = 401
    title = "Webhook Not Verified"


class TooLarge(ProblemError):
    status = 413
    title = "Payload Too Large"


class Unavailable(ProblemError):
    status = 503
    title = "Service Unavailable"


async def _body(request: Request) -> bytes:
    """The body, read no further than MAX_BODY_BYTES."""
    read = bytearray()
    async for chunk in request.stream():
        read += chunk
        if len(read) > MAX_BODY_BYTES:
            raise TooLarge(f"A Plaid webhook's body is at most {MAX_BODY_BYTES} bytes.")
    return bytes(read)


@router.post("/webhook")
async def plaid_webhook(
    request: Request,
    session: SessionDep,
    redis: RedisDep,
    ctx: ContextDep,
    signature: Annotated[str | None, Header(alias="Plaid-Verification")] = None,
) -> dict:
    spec = ctx.registry.get("plaid")
    if spec is None or not spec.configured:
        raise NotFound("Plaid is not configured here.")
    raw = await _body(request)
    try:
        async with ctx.http() as http:
            api = PlaidAPI(http, base_url=spec.api_base_url, settings=ctx.settings)
            seen = await verified(raw, signature, redis=redis, api=api)
    except Refused as exc:
        raise NotSigned(f"This is not a webhook Plaid signed: {exc}.") from None
    except Busy:
        raise Unavailable(
            "Too many webhooks with new signing keys: try again later.",
            headers={"Retry-After": "60"},
        ) from None
    except PlaidFailure as exc:
        raise UpstreamError(
            f"Plaid's verification key could not be fetched ({exc.error_code}).",
            institution_error=exc.error_code,
            transient=True,
        ) from None
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise BadRequest("A Plaid webhook's body is a JSON object.")
    try:
        return {"received": await service.received(ctx=ctx, session=session, body=body)}
    except Exception:
        await redis.delete(seen)  # not acted on: Plaid's retry of it is not a replay
        raise
