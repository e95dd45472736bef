"""Plaid's webhook signature, checked as Plaid documents it
(plaid.com/docs/api/webhooks/webhook-verification):

- the ``Plaid-Verification`` header is a JWT; its header read unverified must say ``alg``
  ES256 (anything else refused before any key is fetched) and name a ``kid``;
- the key is Plaid's (``/webhook_verification_key/get``), a P-256 JWK, cached in Valkey for
  KEY_CACHE_SECONDS (all processes share it); one whose ``expired_at`` is set is refused; a
  ``kid`` Plaid does not know is remembered as unknown for a while (a stream of made-up kids
  costs Plaid one call each at most once per UNKNOWN_SECONDS);
- the signature verified with it (PyJWT), ``iat`` at most MAX_AGE_SECONDS old;
- the SHA-256 of the raw body (as received: re-serialized JSON would not match) equal, in
  constant time, to the claim ``request_body_sha256``.
"""

import hashlib
import hmac
import json
import re
import time

import jwt
from redis.asyncio import Redis

from dashtam_api.sources.plaid_api import PlaidAPI, PlaidFailure
from dashtam_api.upstream import INVALID_RESPONSE

MAX_AGE_SECONDS = 5 * 60
KEY_CACHE_SECONDS = 24 * 3600
UNKNOWN_SECONDS = 5 * 60
KID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
PREFIX = "plaid:webhook-key:"


class Refused(Exception):
    """Why a webhook is not believed (said to the sender in a 401)."""


async def _key(redis: Redis, api: PlaidAPI, kid: str) -> dict:
    cached = await redis.get(PREFIX + kid)
    if cached is not None:
        key = json.loads(cached)
        if key is None:
            raise Refused("the signing key is unknown")
        return key
    try:
        answer = await api.call("/webhook_verification_key/get", {"key_id": kid})
    except PlaidFailure as exc:
        if exc.status == 400:
            await redis.set(PREFIX + kid, "null", ex=UNKNOWN_SECONDS)
            raise Refused("the signing key is unknown") from None
        raise  # Plaid unreachable: not the sender's fault (the receiver answers 503)
    key = answer.get("key")
    if not isinstance(key, dict):  # not what Plaid answers: the receiver answers 502
        raise PlaidFailure(200, "API_ERROR", INVALID_RESPONSE, "no key in Plaid's answer")
    await redis.set(PREFIX + kid, json.dumps(key), ex=KEY_CACHE_SECONDS)
    return key


async def verified(raw: bytes, header: str | None, *, redis: Redis, api: PlaidAPI) -> None:
    """Nothing when the body is Plaid's as signed (the module's rules); Refused otherwise."""
    if not header:
        raise Refused("no Plaid-Verification header")
    try:
        unverified = jwt.get_unverified_header(header)
    except jwt.PyJWTError:
        raise Refused("the Plaid-Verification header is not a JWT") from None
    if unverified.get("alg") != "ES256":
        raise Refused("the signature's algorithm is not ES256")
    kid = unverified.get("kid")
    if not isinstance(kid, str) or not KID.match(kid):
        raise Refused("the signature names no key")
    key = await _key(redis, api, kid)
    if key.get("expired_at") is not None:
        raise Refused("the signing key has expired")
    try:
        public = jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(key))
        claims = jwt.decode(header, key=public, algorithms=["ES256"], options={"require": ["iat"]})
    except (jwt.PyJWTError, ValueError, TypeError):
        raise Refused("the signature does not verify") from None
    if not isinstance(claims["iat"], int | float) or time.time() - claims["iat"] > MAX_AGE_SECONDS:
        raise Refused("the signature is older than five minutes")
    said = claims.get("request_body_sha256")
    if not isinstance(said, str) or not hmac.compare_digest(hashlib.sha256(raw).hexdigest(), said):
        raise Refused("the body is not the one signed")
