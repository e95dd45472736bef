"""An Enable Banking look-alike for development and tests (mounted only there, under
/sandbox/enablebanking), behaving like the real API where its clients break. State in Valkey.

- Every API call must carry the application's JWT (RS256, ``kid`` the look-alike's application
  id, ``iss`` enablebanking.com, ``aud`` api.enablebanking.com, ``exp - iat`` at most a day),
  checked with the public key of the key `inv setup` made; else 401 ``UNAUTHORIZED_ACCESS``.
- ``GET /application``; ``GET /aspsps?country=``: the banks with ``maximum_consent_validity``.
- ``POST /auth``: ``valid_until`` at most the bank's longest consent ahead, ``redirect_url``
  the project's callback (else ``REDIRECT_URI_NOT_ALLOWED``); answers the URL of a stand-in
  bank page (``/bank/{id}``: the person signs in with a user name and approves or denies;
  ``/bank/{id}/approve?psu=`` approves in one request, for tests and the demo), which redirects
  to the callback with ``code`` and ``state`` (``error=access_denied`` when denied).
- ``POST /sessions``: the code once; NEW uids for the accounts with every consent, the same
  ``identification_hash``; a newer consent of the same PSU at the same bank revokes the older
  session (``REVOKED_SESSION``). ``GET``/``DELETE /sessions/{id}`` (``CLOSED_SESSION`` after).
- ``GET /accounts/{uid}/balances`` and ``/transactions`` (``date_from``, ``date_to``, pages of
  PAGE entries with an opaque ``continuation_key``; an unknown one is
  ``WRONG_CONTINUATION_KEY``); what they list is enablebanking_data.py's.
- PSD2's limit: UNATTENDED reads a day per session, account and resource (pages after the
  first are the same read; a request with ``Psu-Ip-Address`` is attended, not counted); past
  it 429 ``ASPSP_RATE_LIMIT_EXCEEDED``. ``EXPIRED_SESSION`` after ``valid_until``.
- Every error is ``{"code", "message", "error", "detail"}``.
- ``POST /_control/{psu}/fail`` (the PSU's next reads fail so: FAILURES), ``POST
  /_control/{psu}/clock`` (time moves on for the PSU's sessions: limits, expiry),
  ``GET /_control/{psu}``: reads counted, for tests.
"""

import functools
import json
import secrets
import time
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Annotated, Literal
from urllib.parse import urlencode

import jwt
from fastapi import Form, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from dashtam_api.deps import RedisDep, SettingsDep
from dashtam_api.providers.registry import redirect_uri
from dashtam_api.routing import api_router
from dashtam_api.sandbox import enablebanking_data as data
from dashtam_api.sources import enablebanking_api as api

router = api_router(prefix="/sandbox/enablebanking", tags=["sandbox"], include_in_schema=False)

PREFIX = "sandbox:eb:"
KEEP_SECONDS = 14 * 86400
DAY_SECONDS = 86400
UNATTENDED = 4
PAGE = 10
FAILURES = (
    "EXPIRED_SESSION", "ASPSP_ERROR", "ASPSP_TIMEOUT", "ASPSP_RATE_LIMIT_EXCEEDED",
    "ASPSP_PSU_ACTION_REQUIRED",
)  # fmt: skip
STATUSES = {
    "UNAUTHORIZED_ACCESS": 401, "EXPIRED_SESSION": 401, "REVOKED_SESSION": 401,
    "CLOSED_SESSION": 401, "SESSION_DOES_NOT_EXIST": 404, "ACCOUNT_DOES_NOT_EXIST": 404,
    "ASPSP_RATE_LIMIT_EXCEEDED": 429, "ASPSP_ERROR": 502, "ASPSP_TIMEOUT": 504,
    "ASPSP_PSU_ACTION_REQUIRED": 400, "WRONG_CONTINUATION_KEY": 400, "WRONG_REQUEST_PARAMETERS":
    422, "REDIRECT_URI_NOT_ALLOWED": 400, "WRONG_AUTHORIZATION_CODE": 400, "ASPSP_NOT_FOUND": 404,
    "WRONG_DATE_INTERVAL": 422,
}  # fmt: skip


def problem(error: str, message: str, detail=None) -> JSONResponse:
    status = STATUSES.get(error, 400)
    return JSONResponse(
        {"code": status, "message": message, "error": error, "detail": detail}, status_code=status
    )


class Refused(Exception):
    def __init__(self, error: str, message: str):
        super().__init__(message)
        self.error, self.message = error, message


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


async def _load(redis: Redis, key: str) -> dict | None:
    raw = await redis.get(PREFIX + key)
    return json.loads(raw) if raw else None


async def _save(redis: Redis, key: str, value: dict) -> None:
    await redis.set(PREFIX + key, json.dumps(value), ex=KEEP_SECONDS)


def _public_key(settings):
    app = api.application(settings)
    return app, api.private_key(app.key_file).public_key()


def _checked(settings, authorization: str | None) -> None:
    """The application's JWT, as Enable Banking checks it."""
    if not authorization or not authorization.startswith("Bearer "):
        raise Refused("UNAUTHORIZED_ACCESS", "No application JWT")
    token = authorization[7:]
    app, key = _public_key(settings)
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(
            token, key, algorithms=["RS256"], audience=api.AUDIENCE, issuer=api.ISSUER,
            options={"require": ["exp", "iat", "iss", "aud"]},
        )  # fmt: skip
    except jwt.PyJWTError as exc:
        raise Refused("UNAUTHORIZED_ACCESS", f"Invalid JWT: {exc}") from None
    if header.get("kid") != app.app_id:
        raise Refused("UNAUTHORIZED_ACCESS", "Unknown application (kid)")
    if claims["exp"] - claims["iat"] > DAY_SECONDS:
        raise Refused("UNAUTHORIZED_ACCESS", "JWT lifetime longer than 86400 seconds")


async def _now(redis: Redis, psu: str) -> float:
    return time.time() + int(await redis.get(f"{PREFIX}clock:{psu}") or 0)


def _guarded(handler):
    """The handler behind the JWT check, its refusals as Enable Banking's errors."""

    @functools.wraps(handler)
    async def wrapped(*args, **kwargs):
        try:
            _checked(kwargs["settings"], kwargs.get("authorization"))
            return await handler(*args, **kwargs)
        except Refused as exc:
            return problem(exc.error, exc.message)

    return wrapped


Auth = Annotated[str | None, Header()]


@router.get("/application")
@_guarded
async def application(settings: SettingsDep, authorization: Auth = None) -> dict:
    app = api.application(settings)
    return {
        "name": "Dashtam sandbox application",
        "description": None,
        "kid": app.app_id,
        "environment": "SANDBOX",
        "redirect_urls": [redirect_uri(settings)],
        "active": True,
        "countries": sorted({b["country"] for b in data.BANKS}),
        "services": ["AIS"],
    }


@router.get("/aspsps")
@_guarded
async def aspsps(
    settings: SettingsDep,
    country: Annotated[str | None, Query(max_length=2)] = None,
    authorization: Auth = None,
) -> dict:
    return {"aspsps": [data.listed(b) for b in data.BANKS if country in (None, b["country"])]}


class Access(BaseModel):
    valid_until: datetime


class Aspsp(BaseModel):
    name: str = Field(max_length=200)
    country: str = Field(max_length=2)


class AuthAsked(BaseModel):
    access: Access
    aspsp: Aspsp
    state: str = Field(max_length=500)
    redirect_url: str = Field(max_length=500)
    psu_type: Literal["personal", "business"] = "personal"


@router.post("/auth")
@_guarded
async def auth(
    body: AuthAsked, request: Request, redis: RedisDep, settings: SettingsDep,
    authorization: Auth = None,
) -> Response:  # fmt: skip
    bank = data.bank(body.aspsp.name, body.aspsp.country)
    if bank is None:
        return problem("ASPSP_NOT_FOUND", "No such ASPSP")
    if body.redirect_url != redirect_uri(settings):
        return problem("REDIRECT_URI_NOT_ALLOWED", "Redirect URI not allowed")
    valid_until = body.access.valid_until
    if valid_until.tzinfo is None:
        return problem("WRONG_REQUEST_PARAMETERS", "valid_until must carry its offset")
    longest = datetime.now(UTC) + timedelta(seconds=bank["maximum_consent_validity"] + 60)
    if valid_until > longest or valid_until <= datetime.now(UTC):
        return problem(
            "WRONG_REQUEST_PARAMETERS", "valid_until beyond the ASPSP's maximum consent validity"
        )
    authorization_id = secrets.token_hex(16)
    await _save(
        redis,
        f"auth:{authorization_id}",
        {"bank": [bank["name"], bank["country"]], "valid_until": valid_until.isoformat(),
         "state": body.state, "redirect_url": body.redirect_url},
    )  # fmt: skip
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        {
            "url": f"{base}/sandbox/enablebanking/bank/{authorization_id}",
            "authorization_id": authorization_id,
            "psu_id_hash": None,
        }
    )


@router.get("/bank/{authorization_id}", response_class=HTMLResponse)
async def bank_page(authorization_id: str, redis: RedisDep) -> HTMLResponse:
    """The stand-in bank: sign in with a user name, approve or deny."""
    pending = await _load(redis, f"auth:{authorization_id[:64]}")
    if pending is None:
        return HTMLResponse("<p>This authorization is unknown or already used.</p>", 404)
    name = escape(pending["bank"][0])
    return HTMLResponse(
        f"""<!doctype html><html><head><title>{name}</title></head><body>
<h1>{name} (sandbox)</h1><p>Dashtam asks to read your accounts' balances and transactions
until {escape(pending["valid_until"])}.</p>
<form method="post" action="/sandbox/enablebanking/bank/{escape(authorization_id[:64])}"><label>User name <input name="psu" value="demo-psu"></label>
<button name="decision" value="approve">Approve</button>
<button name="decision" value="deny">Deny</button></form></body></html>"""
    )


async def _decided(redis: Redis, authorization_id: str, psu: str, approve: bool) -> Response:
    raw = await redis.getdel(f"{PREFIX}auth:{authorization_id[:64]}")
    if raw is None:
        return HTMLResponse("<p>This authorization is unknown or already used.</p>", 404)
    pending = json.loads(raw)
    query = {"state": pending["state"]}
    if approve:
        code = secrets.token_urlsafe(24)
        await _save(redis, f"code:{code}", {**pending, "psu": psu[:100] or "demo-psu"})
        query["code"] = code
    else:
        query |= {"error": "access_denied", "error_description": "The user denied access"}
    return RedirectResponse(f"{pending['redirect_url']}?{urlencode(query)}", status_code=303)


@router.post("/bank/{authorization_id}")
async def bank_decision(
    authorization_id: str,
    redis: RedisDep,
    decision: Annotated[str, Form()],
    psu: Annotated[str, Form(max_length=100)] = "demo-psu",
) -> Response:
    return await _decided(redis, authorization_id, psu, decision == "approve")


@router.get("/bank/{authorization_id}/approve")
async def bank_approve(
    authorization_id: str, redis: RedisDep, psu: Annotated[str, Query(max_length=100)] = "demo-psu"
) -> Response:
    """The bank page approved in one request (tests, the demo)."""
    return await _decided(redis, authorization_id, psu, True)


class SessionAsked(BaseModel):
    code: str = Field(max_length=200)


@router.post("/sessions")
@_guarded
async def open_session(
    body: SessionAsked, redis: RedisDep, settings: SettingsDep, authorization: Auth = None
) -> Response:
    raw = await redis.getdel(f"{PREFIX}code:{body.code}")
    if raw is None:
        return problem("WRONG_AUTHORIZATION_CODE", "Wrong or already used authorization code")
    granted = json.loads(raw)
    bank = data.bank(*granted["bank"])
    psu = granted["psu"]
    session_id = secrets.token_hex(16)
    accounts = [{**a, "uid": secrets.token_hex(16)} for a in data.accounts(psu, bank)]
    now = await _now(redis, psu)
    record = {
        "psu": psu, "bank": granted["bank"], "valid_until": granted["valid_until"],
        "status": "AUTHORIZED", "created": now,
        "accounts": [[a["uid"], a["identification_hash"]] for a in accounts],
    }  # fmt: skip
    await _save(redis, f"session:{session_id}", record)
    for n, a in enumerate(accounts):
        await _save(redis, f"uid:{a['uid']}", {"session": session_id, "n": n})
    # A newer consent of the same PSU at the same bank replaces the older session.
    await redis.set(f"{PREFIX}latest:{psu}:{'|'.join(granted['bank'])}", session_id)
    if not await redis.get(f"{PREFIX}anchor:{psu}"):
        anchor = (datetime.fromtimestamp(now, UTC).date() - timedelta(days=2)).isoformat()
        await redis.set(f"{PREFIX}anchor:{psu}", anchor, ex=KEEP_SECONDS)
    return JSONResponse(
        {
            "session_id": session_id,
            "accounts": accounts,
            "aspsp": {"name": bank["name"], "country": bank["country"]},
            "psu_type": "personal",
            "access": {"valid_until": granted["valid_until"]},
        }
    )


async def _live(redis: Redis, session_id: str) -> tuple[dict, str]:
    """An AUTHORIZED session (Refused otherwise) and its status as it stands."""
    record = await _load(redis, f"session:{session_id[:64]}")
    if record is None:
        raise Refused("SESSION_DOES_NOT_EXIST", "Session does not exist")
    return record, await _status(redis, session_id, record)


async def _status(redis: Redis, session_id: str, record: dict) -> str:
    if record["status"] != "AUTHORIZED":
        return record["status"]
    latest = _text(await redis.get(f"{PREFIX}latest:{record['psu']}:{'|'.join(record['bank'])}"))
    if latest != session_id:
        return "REVOKED"
    ends = datetime.fromisoformat(record["valid_until"]).timestamp()
    if await _now(redis, record["psu"]) >= ends or record.get("expired"):
        return "EXPIRED"
    return "AUTHORIZED"


@router.get("/sessions/{session_id}")
@_guarded
async def get_session(
    session_id: str, redis: RedisDep, settings: SettingsDep, authorization: Auth = None
) -> dict:
    record, status = await _live(redis, session_id)
    return {
        "status": status,
        "accounts": [uid for uid, _ in record["accounts"]],
        "accounts_data": [
            {"uid": uid, "identification_hash": h, "identification_hashes": [h]}
            for uid, h in record["accounts"]
        ],
        "aspsp": {"name": record["bank"][0], "country": record["bank"][1]},
        "psu_type": "personal",
        "access": {"valid_until": record["valid_until"]},
        "created": datetime.fromtimestamp(record["created"], UTC).isoformat(),
    }


@router.delete("/sessions/{session_id}")
@_guarded
async def close_session(
    session_id: str, redis: RedisDep, settings: SettingsDep, authorization: Auth = None
) -> Response:
    record, _ = await _live(redis, session_id)
    record["status"] = "CLOSED"
    await _save(redis, f"session:{session_id[:64]}", record)
    return JSONResponse({"message": "OK"})


async def _account(redis: Redis, uid: str) -> tuple[dict, int, str]:
    """The session, the account's number in it and the session's id, for a uid whose session
    is authorized (Refused as the session's state says otherwise)."""
    held = await _load(redis, f"uid:{uid[:64]}")
    if held is None:
        raise Refused("ACCOUNT_DOES_NOT_EXIST", "Account does not exist")
    record, status = await _live(redis, held["session"])
    if status != "AUTHORIZED":
        raise Refused(f"{status}_SESSION", f"Session is {status.lower()}")
    return record, held["n"], held["session"]


async def _injected(redis: Redis, record: dict, session_id: str) -> None:
    """The PSU's next queued failure, at a read (a balances request, a transactions listing's
    first page); an empty entry is a read let through."""
    failure = _text(await redis.lpop(f"{PREFIX}fail:{record['psu']}"))
    if failure == "EXPIRED_SESSION":
        record["expired"] = True
        await _save(redis, f"session:{session_id}", record)
    if failure:
        raise Refused(failure, f"Injected: {failure}")


async def _counted(redis: Redis, record: dict, session_id: str, uid: str, resource: str) -> None:
    """One unattended read of the account's resource; past UNATTENDED in 24 hours, refused."""
    now = await _now(redis, record["psu"])
    key = f"{PREFIX}reads:{session_id}:{uid}:{resource}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(key, 0, now - DAY_SECONDS)
        pipe.zcard(key)
        _, count = await pipe.execute()
    if int(count) >= UNATTENDED:
        raise Refused("ASPSP_RATE_LIMIT_EXCEEDED", "ASPSP rate limit exceeded")
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(key, {f"{now}:{secrets.token_hex(4)}": now})
        pipe.expire(key, 2 * DAY_SECONDS)
        pipe.hincrby(f"{PREFIX}stats:{record['psu']}", resource, 1)
        pipe.expire(f"{PREFIX}stats:{record['psu']}", KEEP_SECONDS)
        await pipe.execute()


async def _entries(redis: Redis, record: dict, n: int, *, step_on: bool) -> list[dict]:
    psu, bank = record["psu"], data.bank(*record["bank"])
    anchor = date.fromisoformat(_text(await redis.get(f"{PREFIX}anchor:{psu}")))
    step_key = f"{PREFIX}step:{data.identification_hash(psu, bank, n)}"
    step = int(await redis.get(step_key) or 0)
    if step_on:
        await redis.set(step_key, step + 1, ex=KEEP_SECONDS)
    return data.transactions(psu, bank, n, anchor, step), bank, anchor


@router.get("/accounts/{uid}/balances")
@_guarded
async def balances(
    uid: str,
    redis: RedisDep,
    settings: SettingsDep,
    authorization: Auth = None,
    psu_ip_address: Annotated[str | None, Header()] = None,
) -> dict:
    record, n, session_id = await _account(redis, uid)
    await _injected(redis, record, session_id)
    if psu_ip_address is None:
        await _counted(redis, record, session_id, uid, "balances")
    entries, bank, anchor = await _entries(redis, record, n, step_on=False)
    return {"balances": data.balances(bank, entries, anchor)}


@router.get("/accounts/{uid}/transactions")
@_guarded
async def transactions(
    uid: str,
    redis: RedisDep,
    settings: SettingsDep,
    date_from: date | None = None,
    date_to: date | None = None,
    continuation_key: Annotated[str | None, Query(max_length=100)] = None,
    authorization: Auth = None,
    psu_ip_address: Annotated[str | None, Header()] = None,
) -> Response:
    record, n, session_id = await _account(redis, uid)
    if continuation_key:
        page = await _load(redis, f"ck:{continuation_key}")
        if page is None or page["uid"] != uid:
            return problem("WRONG_CONTINUATION_KEY", "Wrong continuation key")
        listed, offset = page["listed"], page["offset"]
    else:
        if date_from is None:
            return problem("WRONG_REQUEST_PARAMETERS", "date_from is required")
        if date_to is not None and date_to < date_from:
            return problem("WRONG_DATE_INTERVAL", "date_to before date_from")
        await _injected(redis, record, session_id)
        if psu_ip_address is None:
            await _counted(redis, record, session_id, uid, "transactions")
        entries, _, _ = await _entries(redis, record, n, step_on=True)
        upper = (date_to or date.max).isoformat()
        listed = [
            e for e in entries
            if date_from.isoformat() <= (e["booking_date"] or e["value_date"]) <= upper
        ]  # fmt: skip
        offset = 0
    answer = {"transactions": listed[offset : offset + PAGE], "continuation_key": None}
    if offset + PAGE < len(listed):
        key = secrets.token_urlsafe(12)
        await redis.set(
            f"{PREFIX}ck:{key}",
            json.dumps({"uid": uid, "listed": listed, "offset": offset + PAGE}),
            ex=3600,
        )
        answer["continuation_key"] = key
    return JSONResponse(answer)


class Failure(BaseModel):
    kind: Literal[FAILURES]
    times: int = Field(default=1, ge=1, le=100)
    after: int = Field(default=0, ge=0, le=100)


@router.post("/_control/{psu}/fail", status_code=204)
async def fail(psu: str, body: Failure, redis: RedisDep) -> None:
    """The PSU's reads after the next ``after`` fail so, ``times`` of them (EXPIRED_SESSION
    also ends the session). A read: a balances request, a transactions listing's first page."""
    key = f"{PREFIX}fail:{psu[:100]}"
    await redis.rpush(key, *([""] * body.after + [body.kind] * body.times))
    await redis.expire(key, KEEP_SECONDS)


class Clock(BaseModel):
    advance_seconds: int = Field(ge=0, le=400 * DAY_SECONDS)


@router.post("/_control/{psu}/clock", status_code=204)
async def advance_clock(psu: str, body: Clock, redis: RedisDep) -> None:
    await redis.incrby(f"{PREFIX}clock:{psu[:100]}", body.advance_seconds)


@router.get("/_control/{psu}")
async def stats(psu: str, redis: RedisDep) -> dict:
    """Unattended reads counted for the PSU, by resource."""
    found = await redis.hgetall(f"{PREFIX}stats:{psu[:100]}")
    return {_text(k): int(v) for k, v in found.items()}
