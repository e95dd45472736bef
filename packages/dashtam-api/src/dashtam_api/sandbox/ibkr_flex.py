"""An IBKR Flex Web Service look-alike for development and tests (mounted only there, under
/sandbox/ibkr), behaving like IBKR's (version 3) where Flex clients break. Its state lives in
Valkey, per IBKR user.

- ``POST /sandbox/ibkr/tokens``: what a person does in IBKR's portal: a Flex token and the id of
  their Activity Flex query (``{"user": …}`` makes a new token for that user, which invalidates
  the one before, as IBKR's portal does; ``expires_in`` seconds, default a year).
- ``GET /sandbox/ibkr/FlexWebService/SendRequest?t=&q=&v=3`` (optionally ``fd``/``td``,
  yyyymmdd, at most 365 days): a ``FlexStatementResponse`` with a reference code, or IBKR's
  error codes: 1012 the token expired, 1015 not valid (unknown, or replaced by a newer one),
  1014 the query is not the token owner's, 1018 a request sooner than a second after the token's
  last or more than ten in a minute (either endpoint; IBKR_FLEX_PACE_SECONDS is its second), 1020
  a request without a User-Agent, of another version or with a bad period. The answer names this
  look-alike's GetStatement URL, as IBKR names its own host's.
- ``GET /sandbox/ibkr/FlexWebService/GetStatement?t=&q=<reference>&v=3``: 1019 (statement
  generation in progress) the first time each reference is asked for, then the
  ``FlexQueryResponse`` (sandbox/ibkr_flex_data.py); 1017 for an unknown reference.
- ``POST /sandbox/ibkr/_control/{user}/fail``: the user's next requests fail so: ``1012``,
  ``1015``, ``1018``, ``1009`` (heavy load) or ``503`` (the service's own error page) at
  SendRequest, ``1019`` (GetStatement still in progress once more); ``POST .../expire``: the current token expires now;
  ``GET /sandbox/ibkr/_control/{user}``: requests seen and the data's step.

A statement whose period reaches today moves the user's data on a step (the next day's
activity): a sync's second read finds a new trade and a new dividend.
"""

import hashlib
import json
import secrets
import time
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import Header, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from dashtam_api.deps import RedisDep, SettingsDep
from dashtam_api.routing import api_router
from dashtam_api.sandbox import ibkr_flex_data as data

router = api_router(prefix="/sandbox/ibkr", tags=["sandbox"], include_in_schema=False)

PREFIX = "sandbox:ibkr:"
KEEP_SECONDS = 14 * 24 * 3600
# IBKR: one request a second and ten a minute per token, in IBKR_FLEX_PACE_SECONDS (its
# second; the test environment's is shorter, and its "minute" sixty of them).
PER_MINUTE = 10
MAX_DAYS = 365
EASTERN = ZoneInfo("America/New_York")
FAILURES = ("1009", "1012", "1015", "1018", "1019", "503")
MESSAGES = {
    "1009": "The server is under heavy load. Statement could not be generated at this time. "
    "Please try again shortly.",
    "1012": "Token has expired.",
    "1014": "Query is invalid.",
    "1015": "Token is invalid.",
    "1017": "Reference code is invalid.",
    "1018": "Too many requests have been made from this token. Please try again shortly.",
    "1019": "Statement generation in progress. Please try again shortly.",
    "1020": "Invalid request or unable to validate request.",
}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _user_key(user: str) -> str:
    return f"{PREFIX}user:{user[:40]}"


def _xml(body: str) -> Response:
    stamp = datetime.now(EASTERN).strftime("%d %B, %Y %I:%M %p %Z")
    return Response(
        f'<FlexStatementResponse timestamp="{stamp}">\n{body}</FlexStatementResponse>\n',
        media_type="text/xml",
    )


def _error(code: str, detail: str = "") -> Response:
    status = "Warn" if code == "1019" else "Fail"
    message = MESSAGES[code] + (f" {detail}" if detail else "")
    return _xml(
        f"<Status>{status}</Status>\n<ErrorCode>{code}</ErrorCode>\n"
        f"<ErrorMessage>{message}</ErrorMessage>\n"
    )


class TokenAsked(BaseModel):
    user: str | None = Field(default=None, max_length=40)
    expires_in: int = Field(default=365 * 24 * 3600, ge=1, le=366 * 24 * 3600)


@router.post("/tokens", status_code=201)
async def new_token(redis: RedisDep, body: TokenAsked | None = None) -> dict:
    """A Flex token (shown once) and the user's Activity Flex query id; for an existing user the
    new token replaces theirs."""
    body = body or TokenAsked()
    user = body.user or secrets.token_hex(8)
    state = await redis.hgetall(_user_key(user))
    token = "".join(secrets.choice("0123456789") for _ in range(24))
    if not state:
        state = {
            "anchor": datetime.now(EASTERN).date().toordinal(),
            "query": str(secrets.randbelow(900000) + 100000),
            "step": 0,
            "sent": 0,
            "got": 0,
        }
    else:
        state = {_text(k): _text(v) for k, v in state.items()}
        await redis.delete(f"{PREFIX}token:{state['token']}")
    state["token"] = _digest(token)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(_user_key(user), mapping=state)
        pipe.expire(_user_key(user), KEEP_SECONDS)
        pipe.set(
            f"{PREFIX}token:{_digest(token)}",
            json.dumps({"user": user, "expires": time.time() + body.expires_in}),
            ex=KEEP_SECONDS,
        )
        await pipe.execute()
    return {"user": user, "token": token, "query_id": state["query"]}


async def _holder(redis: Redis, token: str) -> tuple[str | None, str | None]:
    """(the token's user, the error code that refuses it)."""
    raw = await redis.get(f"{PREFIX}token:{_digest(token)}")
    if raw is None:
        return None, "1015"
    held = json.loads(raw)
    if held["expires"] <= time.time():
        return held["user"], "1012"
    return held["user"], None


async def _take_failure(redis: Redis, user: str, wanted: tuple[str, ...]) -> str | None:
    key = f"{PREFIX}fail:{user}"
    failure = _text(await redis.lindex(key, 0))
    if failure not in wanted:
        return None
    await redis.lpop(key)
    return failure


async def _too_many(redis: Redis, token: str, pace: float) -> bool:
    """This request (either endpoint) counted for the token: sooner than a pace after the one
    before, or more than PER_MINUTE in sixty paces, is too many."""
    now = time.time()
    key = f"{PREFIX}rate:{_digest(token)}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrange(key, -1, -1, withscores=True)
        pipe.zadd(key, {f"{now}:{secrets.token_hex(4)}": now})
        pipe.zremrangebyscore(key, 0, now - 60 * pace)
        pipe.zcard(key)
        pipe.expire(key, int(120 * pace) + 1)
        last, _, _, count, _ = await pipe.execute()
    # A little leeway for the two clocks (the client's monotonic one, this one's wall clock).
    too_soon = bool(last) and now - last[0][1] < 0.9 * pace
    return too_soon or int(count) > PER_MINUTE


def _period(fd: str | None, td: str | None, today: date) -> tuple[date, date] | str:
    """The statement's first and last day, or what is wrong with them."""
    if fd is None and td is None:
        return today - timedelta(days=MAX_DAYS - 1), today  # the query's own: last 365 days
    try:
        first, last = (datetime.strptime(v or "", "%Y%m%d").date() for v in (fd, td))
    except ValueError:
        return "fd and td are dates (yyyymmdd), both or neither."
    if first > last or last > today:
        return "The period is not valid."
    if (last - first).days + 1 > MAX_DAYS:
        return f"The period may cover at most {MAX_DAYS} days."
    return first, last


@router.get("/FlexWebService/SendRequest")
async def send_request(
    request: Request,
    redis: RedisDep,
    settings: SettingsDep,
    t: Annotated[str, Query(max_length=200)] = "",
    q: Annotated[str, Query(max_length=40)] = "",
    v: Annotated[str, Query(max_length=4)] = "",
    fd: Annotated[str | None, Query(max_length=8)] = None,
    td: Annotated[str | None, Query(max_length=8)] = None,
    user_agent: Annotated[str | None, Header()] = None,
) -> Response:
    if not user_agent or v != "3":
        return _error("1020")
    user, refused = await _holder(redis, t)
    if user is None:
        return _error(refused)
    await redis.hincrby(_user_key(user), "sent", 1)
    if await _too_many(redis, t, settings.IBKR_FLEX_PACE_SECONDS):
        return _error("1018")
    failure = await _take_failure(redis, user, ("1009", "1012", "1015", "1018", "503"))
    if failure == "503":
        return HTMLResponse("<html><body>Service Unavailable</body></html>", 503)
    if failure or refused:
        return _error(failure or refused)
    state = {_text(k): _text(v) for k, v in (await redis.hgetall(_user_key(user))).items()}
    if q != state["query"]:
        return _error("1014")
    today = datetime.now(EASTERN).date()
    period = _period(fd, td, today)
    if isinstance(period, str):
        return _error("1020", period)
    reference = str(secrets.randbelow(9 * 10**9) + 10**9)
    await redis.set(
        f"{PREFIX}ref:{reference}",
        json.dumps({"user": user, "first": period[0].isoformat(), "last": period[1].isoformat()}),
        ex=3600,
    )
    return _xml(
        "<Status>Success</Status>\n"
        f"<ReferenceCode>{reference}</ReferenceCode>\n"
        f"<Url>{request.base_url}sandbox/ibkr/FlexWebService/GetStatement</Url>\n"
    )


@router.get("/FlexWebService/GetStatement")
async def get_statement(
    redis: RedisDep,
    settings: SettingsDep,
    t: Annotated[str, Query(max_length=200)] = "",
    q: Annotated[str, Query(max_length=40)] = "",
    v: Annotated[str, Query(max_length=4)] = "",
    user_agent: Annotated[str | None, Header()] = None,
) -> Response:
    if not user_agent or v != "3":
        return _error("1020")
    user, refused = await _holder(redis, t)
    if refused:
        return _error(refused)
    raw = await redis.get(f"{PREFIX}ref:{q[:20]}")
    if raw is None or json.loads(raw)["user"] != user:
        return _error("1017")
    asked = json.loads(raw)
    await redis.hincrby(_user_key(user), "got", 1)
    if await _too_many(redis, t, settings.IBKR_FLEX_PACE_SECONDS):
        return _error("1018")
    # Every statement takes a moment to make: the first ask of each reference is 1019.
    first_ask = await redis.set(f"{PREFIX}asked:{q[:20]}", 1, ex=3600, nx=True)
    if first_ask or await _take_failure(redis, user, ("1019",)):
        return _error("1019")
    state = {_text(k): _text(v) for k, v in (await redis.hgetall(_user_key(user))).items()}
    anchor = date.fromordinal(int(state["anchor"]))
    first, last = date.fromisoformat(asked["first"]), date.fromisoformat(asked["last"])
    generated = datetime.now(EASTERN).strftime("%Y%m%d;%H%M%S")
    document = data.statement(user, anchor, int(state["step"]), first, last, generated)
    if last >= datetime.now(EASTERN).date():
        # The period reached today: the next statement holds the next day's activity.
        await redis.hincrby(_user_key(user), "step", 1)
    return Response(document, media_type="text/xml")


class Failure(BaseModel):
    kind: Literal[FAILURES]
    times: int = Field(default=1, ge=1, le=100)


@router.post("/_control/{user}/fail", status_code=204)
async def fail(user: str, body: Failure, redis: RedisDep) -> None:
    """The user's next requests fail so (in order)."""
    key = f"{PREFIX}fail:{user[:40]}"
    await redis.rpush(key, *([body.kind] * body.times))
    await redis.expire(key, KEEP_SECONDS)


@router.post("/_control/{user}/expire", status_code=204)
async def expire(user: str, redis: RedisDep) -> None:
    """The user's current token expires now (IBKR: 1012 from then on)."""
    digest = _text(await redis.hget(_user_key(user), "token"))
    raw = await redis.get(f"{PREFIX}token:{digest}") if digest else None
    if raw is not None:
        held = json.loads(raw) | {"expires": time.time() - 1}
        await redis.set(f"{PREFIX}token:{digest}", json.dumps(held), ex=KEEP_SECONDS)


@router.get("/_control/{user}")
async def stats(user: str, redis: RedisDep) -> dict:
    """Requests the user's tokens sent (``sent``: SendRequest, ``got``: GetStatement), the
    data's step, and the two account ids."""
    state = {_text(k): _text(v) for k, v in (await redis.hgetall(_user_key(user))).items()}
    return {
        "sent": int(state.get("sent", 0)),
        "got": int(state.get("got", 0)),
        "step": int(state.get("step", 0)),
        "accounts": list(data.accounts_of(user[:40])),
        "anchor": date.fromordinal(int(state["anchor"])).isoformat() if state else None,
        "now": datetime.now(UTC).isoformat(),
    }
