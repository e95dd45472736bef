"""A SimpleFIN Bridge look-alike for development and tests (mounted only there, under
/sandbox/simplefin), behaving like the real Bridge where SimpleFIN clients break. Its state
lives in Valkey, per Bridge user (one per setup token made here).

- ``POST /sandbox/simplefin/setup-tokens``: a new Bridge user and their setup token (what a
  person makes at bridge.simplefin.org/simplefin/create); ``user`` names them for the controls.
- ``POST /sandbox/simplefin/claim/{token}``: claimed once; the answer is the access URL
  ``scheme://<username>:<password>@<host>/sandbox/simplefin``. A second claim is a 403.
- ``GET /sandbox/simplefin/accounts`` with the access URL's credentials (HTTP Basic): the v2
  Account Set (``errlist``, ``connections``, ``conn_id``; v1's ``errors`` and ``org`` too) for
  ``start-date``/``end-date`` (Unix times) and ``pending=1`` (sandbox/simplefin_data.py: what
  changes from one refresh to the next, pendings posting under new ids, a re-issued block).
- The Bridge's limits, as its developer guide states them: past DAILY_QUOTA requests in 24
  hours per access URL a warning in ``errlist``; past DISABLED_AFTER the access is disabled
  (every request a 403 from then on). A range longer than WINDOW_DAYS is cut to its last
  WINDOW_DAYS, with a warning in ``errlist`` (what the Bridge does is not documented; a
  client asking for more than it allows gets less than it asked for, here said so).
- ``POST /sandbox/simplefin/_control/{user}/fail``: the next reads fail as the Bridge's do:
  ``con.auth`` (the credit union wants a new sign-in: an errlist entry with its ``conn_id``;
  the other bank's data still served, the credit union's accounts listed with their balances
  and no transactions), ``con.auth.all`` (both banks so), ``gen.`` (errlist, no scope, a
  server trouble), ``402`` (subscription lapsed), ``503`` (a server trouble),
  ``429`` (too many requests: ``Retry-After`` two hours), ``html403`` / ``html429`` (the front door's
  web page), ``revoked`` (the person disabled the access: 403 from then on), ``nul`` (the
  descriptions and names hold a NUL character, as some banks' do).
- ``GET /sandbox/simplefin/_control/{user}``: requests and claims seen, and ``peak``, the most
  requests any 24 hours held, for tests to count; ``POST .../_control/{user}/clock`` moves the
  quota's clock on (a test's day passes in seconds).

The data "refreshes" (the next step) on a read whose range reaches the present: a sync's
newest window; older windows of the same sync read the same step.
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from dashtam_api.deps import RedisDep
from dashtam_api.routing import api_router
from dashtam_api.sandbox import simplefin_data as data

router = api_router(prefix="/sandbox/simplefin", tags=["sandbox"], include_in_schema=False)

PREFIX = "sandbox:simplefin:"
KEEP_SECONDS = 14 * 24 * 3600
DAILY_QUOTA = 24
DISABLED_AFTER = 30
WINDOW_DAYS = 60
DAY_SECONDS = 24 * 3600
FAILURES = (
    "con.auth", "con.auth.all", "gen.", "402", "503", "429", "html403", "html429", "revoked", "nul"
)  # fmt: skip


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _user_key(user: str) -> str:
    return f"{PREFIX}user:{user}"


class SetupTokenAsked(BaseModel):
    # Where the setup token's claim URL points (default: the host this request came to).
    base_url: str | None = Field(default=None, max_length=300)


@router.post("/setup-tokens", status_code=201)
async def new_setup_token(
    request: Request, redis: RedisDep, body: SetupTokenAsked | None = None
) -> dict:
    """A new Bridge user with their data, and a setup token for it (shown once)."""
    user, token = secrets.token_hex(8), secrets.token_urlsafe(24)
    base = (body.base_url if body and body.base_url else str(request.base_url)).rstrip("/")
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            _user_key(user),
            # The data's present is an hour ago: what "posted now" is stays in any range a
            # client asks for up to the moment it asks.
            mapping={"anchor": int(time.time()) - 3600, "step": 0, "requests": 0, "claims": 0},
        )
        pipe.expire(_user_key(user), KEEP_SECONDS)
        pipe.set(f"{PREFIX}setup:{_digest(token)}", user, ex=KEEP_SECONDS)
        await pipe.execute()
    claim_url = f"{base}/sandbox/simplefin/claim/{token}"
    return {"user": user, "setup_token": base64.b64encode(claim_url.encode()).decode()}


@router.post("/claim/{token}")
async def claim(token: str, request: Request, redis: RedisDep) -> Response:
    """Once: the access URL. The token is gone on arrival (a second claim is a 403). The
    front door's page (a failure ``html403``/``html429`` queued for the Bridge user) turns a
    claim away before it arrives: the token is still there."""
    waiting = await redis.get(f"{PREFIX}setup:{_digest(token)}")
    if waiting is not None:
        waiting = waiting.decode() if isinstance(waiting, bytes) else waiting
        queued = await redis.lindex(f"{PREFIX}fail:{waiting}", 0)
        if (queued.decode() if isinstance(queued, bytes) else queued) in ("html403", "html429"):
            return _front_door(int((await _take_failure(redis, waiting))[4:]))
    user = await redis.getdel(f"{PREFIX}setup:{_digest(token)}")
    if user is None:
        return PlainTextResponse("Forbidden: this token has already been claimed", 403)
    user = user.decode() if isinstance(user, bytes) else user
    username, password = secrets.token_hex(12), secrets.token_urlsafe(24)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(
            f"{PREFIX}access:{username}",
            json.dumps({"user": user, "password": _digest(password)}),
            ex=KEEP_SECONDS,
        )
        pipe.hincrby(_user_key(user), "claims", 1)
        await pipe.execute()
    base = str(request.base_url).rstrip("/")
    scheme, rest = base.split("://", 1)
    return PlainTextResponse(f"{scheme}://{username}:{password}@{rest}/sandbox/simplefin")


async def _access(redis: Redis, authorization: str | None) -> tuple[str, str] | None:
    """(username, Bridge user) for valid credentials."""
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        username, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    except ValueError:
        return None
    raw = await redis.get(f"{PREFIX}access:{username}")
    if raw is None:
        return None
    access = json.loads(raw)
    if not hmac.compare_digest(access["password"], _digest(password)):
        return None
    return username, access["user"]


def _front_door(status: int) -> HTMLResponse:
    """What the Bridge's CDN answers a request it turns away: a web page, not the protocol."""
    return HTMLResponse(
        "<!doctype html><html><head><title>Just a moment...</title></head><body><h1>"
        "Checking your browser before accessing bridge.simplefin.org</h1></body></html>",
        status_code=status,
        headers={"Retry-After": "60"} if status == 429 else None,
    )


async def _take_failure(redis: Redis, user: str) -> str | None:
    key = f"{PREFIX}fail:{user}"
    failure = await redis.lindex(key, 0)
    if failure is None:
        return None
    await redis.lpop(key)
    return failure.decode() if isinstance(failure, bytes) else failure


async def _count(redis: Redis, username: str, user: str) -> int:
    """This request counted against the access URL's quota: how many in the last 24 hours (by
    the Bridge user's clock: a test moves it with /_control/{user}/clock)."""
    now = time.time() + int(await redis.hget(_user_key(user), "offset") or 0)
    key = f"{PREFIX}quota:{username}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(key, {f"{now}:{secrets.token_hex(4)}": now})
        pipe.zremrangebyscore(key, 0, now - DAY_SECONDS)
        pipe.zcard(key)
        pipe.expire(key, 2 * DAY_SECONDS)
        pipe.hincrby(_user_key(user), "requests", 1)
        _, _, count, _, _ = await pipe.execute()
    # The most requests any 24 hours held, for tests to hold a client to the quota.
    if int(count) > int(await redis.hget(_user_key(user), "peak") or 0):
        await redis.hset(_user_key(user), "peak", int(count))
    return int(count)


@router.get("/accounts")
async def accounts(
    redis: RedisDep,
    start_date: Annotated[int | None, Query(alias="start-date", ge=0)] = None,
    end_date: Annotated[int | None, Query(alias="end-date", ge=0)] = None,
    pending: Annotated[int, Query(ge=0, le=1)] = 0,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    found = await _access(redis, authorization)
    if found is None:
        return PlainTextResponse("Forbidden", 403)
    username, user = found
    if await redis.get(f"{PREFIX}disabled:{username}"):
        return PlainTextResponse("Forbidden: this access has been disabled", 403)
    count = await _count(redis, username, user)
    if count > DISABLED_AFTER:
        await redis.set(f"{PREFIX}disabled:{username}", "quota", ex=KEEP_SECONDS)
        return PlainTextResponse("Forbidden: access disabled for exceeding the daily quota", 403)
    failure = await _take_failure(redis, user)
    if failure == "402":
        return PlainTextResponse("Payment Required: your SimpleFIN Bridge subscription lapsed", 402)
    if failure == "503":
        return PlainTextResponse("Service Unavailable", 503)
    if failure == "429":
        return PlainTextResponse("Too Many Requests", 429, headers={"Retry-After": "7200"})
    if failure in ("html403", "html429"):
        return _front_door(int(failure[4:]))
    if failure == "revoked":
        await redis.set(f"{PREFIX}disabled:{username}", "person", ex=KEEP_SECONDS)
        return PlainTextResponse("Forbidden: this access has been disabled", 403)
    state = await redis.hgetall(_user_key(user))
    state = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in state.items()}
    now = int(time.time())
    end = min(end_date or now + 1, now + DAY_SECONDS)
    start = start_date if start_date is not None else end - 30 * DAY_SECONDS
    errlist = []
    if end - start > WINDOW_DAYS * DAY_SECONDS:
        start = end - WINDOW_DAYS * DAY_SECONDS
        errlist.append(
            {"code": "gen.range", "msg": f"Only the last {WINDOW_DAYS} days of the range asked "
             "for are returned."}
        )  # fmt: skip
    if count > DAILY_QUOTA:
        errlist.append(
            {"code": "gen.quota", "msg": f"More than {DAILY_QUOTA} requests in 24 hours: this "
             "access will be disabled if it continues."}
        )  # fmt: skip
    broken = {"con.auth": ("CON-CU",), "con.auth.all": ("CON-CU", "CON-BRK")}.get(failure, ())
    for conn_id in broken:
        name = next(c["name"] for c in data.CONNECTIONS if c["conn_id"] == conn_id)
        errlist.append(
            {"code": "con.auth", "conn_id": conn_id,
             "msg": f"{name}: the bank asks you to sign in again."}
        )  # fmt: skip
    if failure == "gen.":
        errlist.append({"code": "gen.", "msg": "The Bridge had trouble; try again later."})
    document = _account_set(state, start, end, bool(pending))
    for account in document["accounts"]:
        if account["conn_id"] in broken:
            # The Bridge still lists a broken connection's accounts (their last balances), with
            # nothing new: it could not read the bank.
            account["transactions"] = []
    if failure == "nul":  # a bank's text holding NUL, which JSON carries as \u0000
        for account in document["accounts"]:
            account["name"] += "\x00"
            for t in account["transactions"]:
                t["description"] = f"{t['description']}\x00(memo)"
    document["errlist"] = errlist
    document["errors"] = [e["msg"] for e in errlist]
    if end >= now - DAY_SECONDS:  # the newest window of a sync: the next read is a new step
        await redis.hincrby(_user_key(user), "step", 1)
    return JSONResponse(document)


def _account_set(state: dict, start: int, end: int, pending: bool) -> dict:
    anchor = datetime.fromtimestamp(state["anchor"], UTC)
    listed = []
    for account in data.ACCOUNTS:
        every = data.transactions(account["id"], str(state["anchor"]), anchor, state["step"])
        connection = next(c for c in data.CONNECTIONS if c["conn_id"] == account["conn_id"])
        listed.append(
            {
                "org": {"domain": connection["org_url"].split("//")[1], "name": connection["name"],
                        "sfin-url": connection["sfin_url"], "url": connection["org_url"]},
                "id": account["id"],
                "name": account["name"],
                "conn_id": account["conn_id"],
                "currency": "USD",
                "balance": str(data.balance(account["id"], every)),
                "available-balance": str(data.balance(account["id"], every)),
                "balance-date": int(anchor.timestamp()) + state["step"] * 3600,
                "transactions": [
                    t for t in every
                    if (t["posted"] and start <= t["posted"] < end)
                    or (not t["posted"] and pending and start <= t["transacted_at"] < end)
                ],
                "holdings": data.holdings(account["id"], anchor),
            }
        )  # fmt: skip
    return {
        "connections": [
            {"conn_id": c["conn_id"], "name": c["name"], "org_id": c["org_id"],
             "org_url": c["org_url"], "sfin_url": c["sfin_url"]}
            for c in data.CONNECTIONS
        ],
        "accounts": listed,
    }  # fmt: skip


class Failure(BaseModel):
    kind: Literal[FAILURES]
    times: int = Field(default=1, ge=1, le=1000)


@router.post("/_control/{user}/fail", status_code=204)
async def fail(user: str, body: Failure, redis: RedisDep) -> None:
    """The Bridge user's next ``times`` reads fail so."""
    key = f"{PREFIX}fail:{user[:40]}"
    await redis.rpush(key, *([body.kind] * body.times))
    await redis.expire(key, KEEP_SECONDS)


class Clock(BaseModel):
    advance_seconds: int = Field(ge=0, le=30 * DAY_SECONDS)


@router.post("/_control/{user}/clock", status_code=204)
async def advance_clock(user: str, body: Clock, redis: RedisDep) -> None:
    """The Bridge user's quota clock moved on (a day of requests in a test's seconds)."""
    await redis.hincrby(_user_key(user[:40]), "offset", body.advance_seconds)


@router.get("/_control/{user}")
async def stats(user: str, redis: RedisDep) -> dict:
    """Requests and claims the Bridge user's accesses made, and their data's step."""
    state = await redis.hgetall(_user_key(user[:40]))
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in state.items()}
