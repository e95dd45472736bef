"""Plaid's webhook signature, checked as Plaid documents it
(plaid.com/docs/api/webhooks/webhook-verification):

- the ``Plaid-Verification`` header is a JWT; its header read unverified must say ``alg``
  ES256 (anything else refused before any key is fetched) and name a ``kid`` of the shape
  Plaid's key ids have (a UUID: the page's example is bfbd5111-8e33-4643-8ced-b2e642a72f3c);
- the key is Plaid's (``/webhook_verification_key/get``), a P-256 JWK, cached in Valkey for
  KEY_CACHE_SECONDS (all processes share it); one whose ``expired_at`` is set is refused. A
  ``kid`` not in the cache is fetched, and, as Plaid's example does, the cached keys not yet
  expired are fetched again then (a key Plaid has since expired is refused from then on); a
  ``kid`` Plaid does not know is remembered as unknown for UNKNOWN_SECONDS. Every fetch counts
  against KEY_FETCHES a minute for the whole deployment (a Valkey counter): the public
  endpoint cannot make Dashtam call Plaid more than that, whatever kids it is sent
  (``Busy`` past it: the sender tries again later);
- the signature verified with it (PyJWT), ``iat`` at most MAX_AGE_SECONDS old;
- the SHA-256 of the raw body (as received: re-serialized JSON would not match) equal, in
  constant time, to the claim ``request_body_sha256``;
- a webhook seen already is refused: the SHA-256 of what was signed (the JWT's header and
  claims: the signature itself can be re-encoded) is set in Valkey, NX, for MAX_AGE_SECONDS,
  beyond which ``iat`` refuses it anyway. A replayed ``ITEM`` ``ERROR`` cannot break a
  repaired connection again.
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
KEY_FETCHES = 20  # a minute, for the whole deployment
KID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
PREFIX = "plaid:webhook-key:"
KIDS = "plaid:webhook-kids"  # the kids whose keys are cached
FETCHES = "plaid:webhook-key-fetches:"
SEEN = "plaid:webhook-seen:"


class Refused(Exception):
    """Why a webhook is not believed (said to the sender in a 401)."""


class Busy(Exception):
    """Too many key fetches this minute: the sender is to try again later."""


async def _fetch(redis: Redis, api: PlaidAPI, kid: str) -> dict | None:
    """Plaid's key ``kid`` (None: Plaid knows none), cached; within the fetches' limit."""
    minute = int(time.time() // 60)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(f"{FETCHES}{minute}")
        pipe.expire(f"{FETCHES}{minute}", 120)
        fetches, _ = await pipe.execute()
    if fetches > KEY_FETCHES:
        raise Busy
    try:
        answer = await api.call("/webhook_verification_key/get", {"key_id": kid})
    except PlaidFailure as exc:
        if exc.status == 400:
            await redis.set(PREFIX + kid, "null", ex=UNKNOWN_SECONDS)
            return None
        raise  # Plaid unreachable: not the sender's fault (the receiver answers 503)
    key = answer.get("key")
    if not isinstance(key, dict):  # not what Plaid answers: the receiver answers 502
        raise PlaidFailure(200, "API_ERROR", INVALID_RESPONSE, "no key in Plaid's answer")
    await redis.set(PREFIX + kid, json.dumps(key), ex=KEY_CACHE_SECONDS)
    await redis.sadd(KIDS, kid)
    await redis.expire(KIDS, KEY_CACHE_SECONDS)
    return key


async def _key(redis: Redis, api: PlaidAPI, kid: str) -> dict:
    cached = await redis.get(PREFIX + kid)
    if cached is not None:
        key = json.loads(cached)
        if key is None:
            raise Refused("the signing key is unknown")
        return key
    key = await _fetch(redis, api, kid)
    if key is None:
        raise Refused("the signing key is unknown")
    # A new key: the cached ones Plaid may have expired since are asked for again.
    for other in await redis.smembers(KIDS):
        other = other.decode() if isinstance(other, bytes) else other
        held = await redis.get(PREFIX + other) if other != kid else None
        if held is None:
            if other != kid:
                await redis.srem(KIDS, other)
            continue
        held = json.loads(held)
        if held is not None and held.get("expired_at") is None:
            try:
                await _fetch(redis, api, other)
            except (Busy, PlaidFailure):
                break  # the webhook's own key is in hand: the rest at the next new kid
    return key


async def verified(raw: bytes, header: str | None, *, redis: Redis, api: PlaidAPI) -> str:
    """The Valkey key that marks the webhook seen when the body is Plaid's as signed and new
    (the module's rules); Refused otherwise, Busy past the fetches' limit."""
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
        raise Refused("the signature names no key of Plaid's")
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
    signed_part = header.rsplit(".", 1)[0]
    seen = SEEN + hashlib.sha256(signed_part.encode()).hexdigest()
    if not await redis.set(seen, 1, nx=True, ex=MAX_AGE_SECONDS):
        raise Refused("this webhook was delivered before")
    return seen
