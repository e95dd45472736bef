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
  ``WRONG_CONTINUATION_KEY``; a period longer than the bank serves, 422
  ``WRONG_TRANSACTIONS_PERIOD``, some banks naming the earliest ``date_from`` in ``detail``);
  what they list is enablebanking_data.py's (accounts without an identification hash too).
- PSD2's limit: four unattended reads a day per session, account and resource (pages after the
  first are the same read; a request with ``Psu-Ip-Address`` is attended, not counted); past
  it 429 ``ASPSP_RATE_LIMIT_EXCEEDED``. A bank listing ``required_psu_headers`` allows none:
  every read without ``Psu-Ip-Address`` is that 429. ``EXPIRED_SESSION`` after ``valid_until``.
- Every error is ``{"code", "message", "error", "detail"}``.
- ``POST /_control/{psu}/fail`` (the PSU's next reads fail so: FAILURES), ``POST
  /_control/{psu}/paging`` (page size, a continuation key answered again; ``_auth`` as the
  PSU: the next ``POST /auth`` fails so), ``POST
  /_control/{psu}/clock`` (time moves on for the PSU's sessions: limits, expiry),
  ``GET /_control/{psu}``: reads counted, for tests.
"""

import functools
import json
import secrets
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
from dashtam_api.sandbox import enablebanking_store as store
from dashtam_api.sources import enablebanking_api as api

router = api_router(prefix="/sandbox/enablebanking", tags=["sandbox"], include_in_schema=False)

PAGE = 10
# The "PSU" whose queued failures (``_control/_auth/fail``) the next ``POST /auth`` answers.
AUTH = "_auth"
FAILURES = (
    "EXPIRED_SESSION", "ASPSP_ERROR", "ASPSP_TIMEOUT", "ASPSP_RATE_LIMIT_EXCEEDED",
    "ASPSP_PSU_ACTION_REQUIRED", "WRONG_TRANSACTIONS_PERIOD",
)  # fmt: skip
STATUSES = {
    "UNAUTHORIZED_ACCESS": 401, "EXPIRED_SESSION": 401, "REVOKED_SESSION": 401,
    "CLOSED_SESSION": 401, "SESSION_DOES_NOT_EXIST": 404, "ACCOUNT_DOES_NOT_EXIST": 404,
    "ASPSP_RATE_LIMIT_EXCEEDED": 429, "ASPSP_ERROR": 502, "ASPSP_TIMEOUT": 504,
    "ASPSP_PSU_ACTION_REQUIRED": 400, "WRONG_CONTINUATION_KEY": 400, "WRONG_REQUEST_PARAMETERS":
    422, "REDIRECT_URI_NOT_ALLOWED": 400, "WRONG_AUTHORIZATION_CODE": 400, "ASPSP_NOT_FOUND": 404,
    "WRONG_DATE_INTERVAL": 422, "WRONG_TRANSACTIONS_PERIOD": 422,
}  # fmt: skip


def problem(error: str, message: str, detail=None) -> JSONResponse:
    status = STATUSES.get(error, 400)
    return JSONResponse(
        {"code": status, "message": message, "error": error, "detail": detail}, status_code=status
    )


def _public_key(settings):
    app = api.application(settings)
    return app, api.private_key(app.key_file).public_key()


def _checked(settings, authorization: str | None) -> None:
    """The application's JWT, as Enable Banking checks it."""
    if not authorization or not authorization.startswith("Bearer "):
        raise store.Refused("UNAUTHORIZED_ACCESS", "No application JWT")
    token = authorization[7:]
    app, key = _public_key(settings)
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(
            token, key, algorithms=["RS256"], audience=api.AUDIENCE, issuer=api.ISSUER,
            options={"require": ["exp", "iat", "iss", "aud"]},
        )  # fmt: skip
    except jwt.PyJWTError as exc:
        raise store.Refused("UNAUTHORIZED_ACCESS", f"Invalid JWT: {exc}") from None
    if header.get("kid") != app.app_id:
        raise store.Refused("UNAUTHORIZED_ACCESS", "Unknown application (kid)")
    if claims["exp"] - claims["iat"] > store.DAY_SECONDS:
        raise store.Refused("UNAUTHORIZED_ACCESS", "JWT lifetime longer than 86400 seconds")


def _guarded(handler):
    """The handler behind the JWT check, its refusals as Enable Banking's errors."""

    @functools.wraps(handler)
    async def wrapped(*args, **kwargs):
        try:
            _checked(kwargs["settings"], kwargs.get("authorization"))
            return await handler(*args, **kwargs)
        except store.Refused as exc:
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
    if failure := store.text(await redis.lpop(f"{store.PREFIX}fail:{AUTH}")):
        return problem(failure, f"Injected: {failure}")
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
    await store.save(
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
    pending = await store.load(redis, f"auth:{authorization_id[:64]}")
    if pending is None:
        return HTMLResponse("<p>This authorization is unknown or already used.</p>", 404)
    name = escape(pending["bank"][0])
    return HTMLResponse(
        f"""<!doctype html><html><head><title>{name}</title></head><body>
<h1>{name} (sandbox)</h1><p>Dashtam asks to read your accounts' balances and transactions
until {escape(pending["valid_until"])}.</p>
<form method="post" action="/sandbox/enablebanking/bank/{escape(authorization_id[:64])}"><label>User name <input name="psu" placeholder="a new one"></label>
<button name="decision" value="approve">Approve</button>
<button name="decision" value="deny">Deny</button></form></body></html>"""
    )


async def _decided(redis: Redis, authorization_id: str, psu: str, approve: bool) -> Response:
    raw = await redis.getdel(f"{store.PREFIX}auth:{authorization_id[:64]}")
    if raw is None:
        return HTMLResponse("<p>This authorization is unknown or already used.</p>", 404)
    pending = json.loads(raw)
    query = {"state": pending["state"]}
    if approve:
        code = secrets.token_urlsafe(24)
        # The same user name, the same accounts; none: a new person (and fresh data).
        psu = psu[:100] or f"psu-{secrets.token_hex(6)}"
        await store.save(redis, f"code:{code}", {**pending, "psu": psu})
        query["code"] = code
    else:
        query |= {"error": "access_denied", "error_description": "The user denied access"}
    return RedirectResponse(f"{pending['redirect_url']}?{urlencode(query)}", status_code=303)


@router.post("/bank/{authorization_id}")
async def bank_decision(
    authorization_id: str,
    redis: RedisDep,
    decision: Annotated[str, Form()],
    psu: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    return await _decided(redis, authorization_id, psu, decision == "approve")


@router.get("/bank/{authorization_id}/approve")
async def bank_approve(
    authorization_id: str, redis: RedisDep, psu: Annotated[str, Query(max_length=100)] = ""
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
    raw = await redis.getdel(f"{store.PREFIX}code:{body.code}")
    if raw is None:
        return problem("WRONG_AUTHORIZATION_CODE", "Wrong or already used authorization code")
    granted = json.loads(raw)
    bank = data.bank(*granted["bank"])
    psu = granted["psu"]
    session_id = secrets.token_hex(16)
    accounts = [{**a, "uid": secrets.token_hex(16)} for a in data.accounts(psu, bank)]
    now = await store.now(redis, psu)
    # Each account's uid, the look-alike's own key of it, and the hash the bank shows (or None).
    record = {
        "psu": psu, "bank": granted["bank"], "valid_until": granted["valid_until"],
        "status": "AUTHORIZED", "created": now,
        "accounts": [
            [a["uid"], data.identification_hash(psu, bank, n), a["identification_hash"]]
            for n, a in enumerate(accounts)
        ],
    }  # fmt: skip
    await store.save(redis, f"session:{session_id}", record)
    for n, a in enumerate(accounts):
        await store.save(redis, f"uid:{a['uid']}", {"session": session_id, "n": n})
    # A newer consent of the same PSU at the same bank replaces the older session.
    await redis.set(f"{store.PREFIX}latest:{psu}:{'|'.join(granted['bank'])}", session_id)
    if not await redis.get(f"{store.PREFIX}anchor:{psu}"):
        anchor = (datetime.fromtimestamp(now, UTC).date() - timedelta(days=1)).isoformat()
        await redis.set(f"{store.PREFIX}anchor:{psu}", anchor, ex=store.KEEP_SECONDS)
    return JSONResponse(
        {
            "session_id": session_id,
            "accounts": accounts,
            "aspsp": {"name": bank["name"], "country": bank["country"]},
            "psu_type": "personal",
            "access": {"valid_until": granted["valid_until"]},
        }
    )


@router.get("/sessions/{session_id}")
@_guarded
async def get_session(
    session_id: str, redis: RedisDep, settings: SettingsDep, authorization: Auth = None
) -> dict:
    record, status = await store.live(redis, session_id)
    return {
        "status": status,
        "accounts": [uid for uid, *_ in record["accounts"]],
        "accounts_data": [
            {"uid": uid, "identification_hash": shown[-1], "identification_hashes": shown[-1:]}
            for uid, *shown in record["accounts"]
            if shown
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
    record, _ = await store.live(redis, session_id)
    record["status"] = "CLOSED"
    await store.save(redis, f"session:{session_id[:64]}", record)
    return JSONResponse({"message": "OK"})


async def _unattended(redis, record, session_id, uid, resource, psu_ip_address) -> None:
    """A read without the person's headers: counted (four a day), or refused outright by a
    bank that requires PSU headers (as SpareBank 1 does: firefly-iii#12523)."""
    if psu_ip_address is not None:
        return
    if data.bank(*record["bank"]).get("required_psu_headers"):
        raise store.Refused("ASPSP_RATE_LIMIT_EXCEEDED", "PSU-IP-Address header is required")
    await store.counted(redis, record, session_id, uid, resource)


@router.get("/accounts/{uid}/balances")
@_guarded
async def balances(
    uid: str,
    redis: RedisDep,
    settings: SettingsDep,
    authorization: Auth = None,
    psu_ip_address: Annotated[str | None, Header()] = None,
) -> dict:
    record, n, session_id = await store.account(redis, uid)
    await store.injected(redis, record, session_id)
    await _unattended(redis, record, session_id, uid, "balances", psu_ip_address)
    entries, bank, anchor = await store.entries(redis, record, n, step_on=False)
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
    transaction_status: Literal["BOOK", "PDNG"] | None = None,
    authorization: Auth = None,
    psu_ip_address: Annotated[str | None, Header()] = None,
) -> Response:
    record, n, session_id = await store.account(redis, uid)
    if continuation_key:
        page = await store.load(redis, f"ck:{continuation_key}")
        if page is None or page["uid"] != uid:
            return problem("WRONG_CONTINUATION_KEY", "Wrong continuation key")
        listed, offset = page["listed"], page["offset"]
    else:
        if date_from is None:
            return problem("WRONG_REQUEST_PARAMETERS", "date_from is required")
        if date_to is not None and date_to < date_from:
            return problem("WRONG_DATE_INTERVAL", "date_to before date_from")
        today = datetime.fromtimestamp(await store.now(redis, record["psu"]), UTC).date()
        refused = data.refused_period(data.bank(*record["bank"]), date_from, date_to or today)
        if refused is not None:
            return problem("WRONG_TRANSACTIONS_PERIOD", refused["message"], refused["detail"])
        await store.injected(redis, record, session_id)
        await _unattended(redis, record, session_id, uid, "transactions", psu_ip_address)
        entries, _, _ = await store.entries(redis, record, n, step_on=True)
        upper = (date_to or date.max).isoformat()
        listed = [
            e for e in entries
            if date_from.isoformat() <= (e["booking_date"] or e["value_date"]) <= upper
            and transaction_status in (None, e["status"])
        ]  # fmt: skip
        offset = 0
    paging = await store.load(redis, f"paging:{record['psu']}") or {}
    size = paging.get("size") or PAGE
    answer = {"transactions": listed[offset : offset + size], "continuation_key": None}
    if offset + size < len(listed):
        if continuation_key and paging.get("repeat_key"):
            # Some banks hand the same key back: a client following it loops for ever.
            key = continuation_key
        else:
            key = secrets.token_urlsafe(12)
        await redis.set(
            f"{store.PREFIX}ck:{key}",
            json.dumps({"uid": uid, "listed": listed, "offset": offset + size}),
            ex=3600,
        )
        answer["continuation_key"] = key
    return JSONResponse(answer)


class Paging(BaseModel):
    size: int = Field(default=PAGE, ge=1, le=100)
    repeat_key: bool = False


@router.post("/_control/{psu}/paging", status_code=204)
async def paging(psu: str, body: Paging, redis: RedisDep) -> None:
    """The PSU's listings in pages of ``size``; ``repeat_key``: a page asked for with a key
    answers that same key again."""
    await store.save(redis, f"paging:{psu[:100]}", body.model_dump())


class Failure(BaseModel):
    kind: Literal[FAILURES]
    times: int = Field(default=1, ge=1, le=100)
    after: int = Field(default=0, ge=0, le=100)


@router.post("/_control/{psu}/fail", status_code=204)
async def fail(psu: str, body: Failure, redis: RedisDep) -> None:
    """The PSU's reads after the next ``after`` fail so, ``times`` of them (EXPIRED_SESSION
    also ends the session). A read: a balances request, a transactions listing's first page."""
    key = f"{store.PREFIX}fail:{psu[:100]}"
    await redis.rpush(key, *([""] * body.after + [body.kind] * body.times))
    await redis.expire(key, store.KEEP_SECONDS)


class Clock(BaseModel):
    advance_seconds: int = Field(ge=0, le=400 * store.DAY_SECONDS)


@router.post("/_control/{psu}/clock", status_code=204)
async def advance_clock(psu: str, body: Clock, redis: RedisDep) -> None:
    await redis.incrby(f"{store.PREFIX}clock:{psu[:100]}", body.advance_seconds)


@router.get("/_control/{psu}")
async def stats(psu: str, redis: RedisDep) -> dict:
    """Unattended reads counted for the PSU, by resource."""
    found = await redis.hgetall(f"{store.PREFIX}stats:{psu[:100]}")
    return {store.text(k): int(v) for k, v in found.items()}
