"""Plaid's API, looked alike for development and tests (mounted only there, under /sandbox/plaid),
behaving like Plaid where clients break. Its state lives in Valkey; its data is
sandbox/plaid_data.py's. Every answer has the shape of Plaid's OpenAPI document
(tests/api/test_plaid_lookalike.py reads each one with plaid-python, the client generated from
that document).

- Every call is a JSON POST with the client id and secret (``PLAID-CLIENT-ID``/``PLAID-SECRET``
  headers, or ``client_id``/``secret`` in the body): others are ``INVALID_API_KEYS``.
- Link: ``/link/token/create`` (``access_token`` given: update mode), then the stand-in Link
  (``/link/complete``, what the stand-in page's Plaid.create calls; ``/sandbox/public_token/
  create`` skips it, as Plaid's sandbox does) gives a public token for a new item (a bank
  login's accounts under ids of its own) or, in update mode, mends the item's login;
  ``/item/public_token/exchange`` once (then ``INVALID_PUBLIC_TOKEN``); ``/item/remove``.
- ``/transactions/sync``: opaque cursors bound to their item (another's: ``INVALID_FIELD``),
  ``count`` at most 500 and at most PAGE_MAX changes a page whatever ``count`` says (clients
  must follow ``has_more``); the bank moving on between two pages of one pagination is
  ``TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION``.
- ``/accounts/get``, ``/investments/holdings/get``, ``/investments/transactions/get``
  (``PRODUCTS_NOT_SUPPORTED`` without the investments product).
- A login's history arrives as Plaid's does for a new item, when a test says so
  (``POST /_control/{login}/history``; by default everything is there at once):
  transactions ``NOT_READY`` (nothing, ``next_cursor`` ""), ``INITIAL_UPDATE_COMPLETE`` (the
  last 30 days), ``HISTORICAL_UPDATE_COMPLETE`` (all; a cursor's next changes add the older
  days), or ``TRANSACTIONS_UPDATE_STATUS_UNKNOWN`` (all, the status unknown); investments
  ``NOT_READY`` (``PRODUCT_NOT_READY`` from /investments/transactions/get),
  ``INITIAL_UPDATE_COMPLETE`` (30 days) or ``HISTORICAL_UPDATE_COMPLETE`` (with a history a
  year back, as a team on Plaid's asynchronous investments updates gets it later).
- Webhooks: ES256-signed as Plaid signs them (``Plaid-Verification``: a JWT whose ``kid`` names
  a key of ``/webhook_verification_key/get``, with ``iat`` and the body's SHA-256);
  ``/sandbox/item/fire_webhook`` sends one to the item's webhook URL; ``/sandbox/item/
  reset_login`` puts the item in ``ITEM_LOGIN_REQUIRED``.
- Controls (tests, the demo), per bank login: ``POST /_control/{login}/advance`` (the bank's
  next step), ``POST /_control/{login}/fail`` (``ITEM_LOGIN_REQUIRED``: every item of the login
  until an update-mode Link; ``INVALID_ACCESS_TOKEN``, ``TRANSACTIONS_SYNC_LIMIT`` (429),
  ``NOT_READY``: the next call; ``MUTATION``: the bank moves on before the next page of a
  pagination; ``MUTATION_AT_CURSOR``: the next call from a stored cursor (not one within a
  pagination) answers the mutation error, as monetr#3126 saw a stored cursor do), ``POST /_control/{login}/history`` (above), ``POST /_control/webhook`` (a signed
  webhook handed back instead of sent),
  ``POST /_control/webhook-key/{name}/rotate`` (the key of that name expires, the next one is
  new), ``GET /_control/{login}`` (the bank's step, calls seen, the login's items, oldest first,
  and those removed).
"""

import hashlib
import json
import secrets
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from dashtam_api.deps import ContextDep, RedisDep
from dashtam_api.routing import api_router
from dashtam_api.sandbox import plaid_data as data

router = api_router(prefix="/sandbox/plaid", tags=["sandbox"], include_in_schema=False)

PREFIX = "sandbox:plaid:"
KEEP_SECONDS = 14 * 24 * 3600
PAGE_MAX = 25
KEYS = f"{PREFIX}webhook_keys"
COMPLETE = "HISTORICAL_UPDATE_COMPLETE"
STATUSES = (
    "NOT_READY", "INITIAL_UPDATE_COMPLETE", COMPLETE, "TRANSACTIONS_UPDATE_STATUS_UNKNOWN",
)  # fmt: skip
FAILURES = (
    "ITEM_LOGIN_REQUIRED", "INVALID_ACCESS_TOKEN", "TRANSACTIONS_SYNC_LIMIT", "NOT_READY",
    "MUTATION", "MUTATION_AT_CURSOR",
)  # fmt: skip


class PlaidProblem(Exception):
    def __init__(self, status: int, error_type: str, code: str, message: str):
        self.status, self.body = status, data.error(error_type, code, message, status)


def _request_id() -> str:
    return secrets.token_hex(8)


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


async def _body(request: Request, client_id: str | None, secret: str | None) -> dict:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise PlaidProblem(
            400, "INVALID_REQUEST", "INVALID_BODY", "body could not be parsed"
        ) from None
    if not isinstance(body, dict):
        raise PlaidProblem(400, "INVALID_REQUEST", "INVALID_BODY", "body must be a JSON object")
    client_id = client_id or body.get("client_id")
    secret = secret or body.get("secret")
    if client_id != data.CLIENT_ID or not secrets.compare_digest(str(secret or ""), data.SECRET):
        raise PlaidProblem(
            400, "INVALID_INPUT", "INVALID_API_KEYS",
            "invalid client_id or secret provided",
        )  # fmt: skip
    return body


def _answer(problem: PlaidProblem) -> JSONResponse:
    return JSONResponse(problem.body, status_code=problem.status)


def plaid_call(handler):
    """A Plaid endpoint: keys checked, the JSON body handed over, a PlaidProblem answered as
    Plaid answers errors."""

    async def endpoint(
        request: Request,
        redis: RedisDep,
        ctx: ContextDep,
        client_id: Annotated[str | None, Header(alias="PLAID-CLIENT-ID")] = None,
        secret: Annotated[str | None, Header(alias="PLAID-SECRET")] = None,
    ):
        try:
            body = await _body(request, client_id, secret)
            answer = await handler(body, redis, ctx)
        except PlaidProblem as problem:
            return _answer(problem)
        return {**answer, "request_id": _request_id()}

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def _post(path: str):
    def register(handler):
        router.post(path)(plaid_call(handler))
        return handler

    return register


# --- state -------------------------------------------------------------------------------------


async def _hash(redis: Redis, key: str) -> dict:
    return {_text(k): _text(v) for k, v in (await redis.hgetall(key)).items()}


async def _login(redis: Redis, login: str) -> dict:
    key = f"{PREFIX}login:{login}"
    await redis.hsetnx(key, "step", 0)
    await redis.expire(key, KEEP_SECONDS)
    return await _hash(redis, key)


async def _take_failure(redis: Redis, login: str, wanted: tuple[str, ...]) -> str | None:
    """The login's next queued failure, if it is one of ``wanted`` (taken off the queue)."""
    key = f"{PREFIX}fail:{login}"
    queued = _text(await redis.lindex(key, 0))
    if queued in wanted:
        await redis.lpop(key)
        return queued
    return None


async def _item_of(redis: Redis, body: dict, endpoint: str, *, data_call: bool = True) -> dict:
    """The item an access token opens, with its login's state; Plaid's refusals otherwise
    (``ITEM_LOGIN_REQUIRED`` only to a call for the item's data)."""
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise PlaidProblem(400, "INVALID_REQUEST", "MISSING_FIELDS", "access_token is required")
    item_id = _text(await redis.get(f"{PREFIX}access:{hashlib.sha256(token.encode()).hexdigest()}"))
    if item_id is None:
        raise PlaidProblem(
            400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN",
            "provided access token is in an invalid format or has been revoked",
        )  # fmt: skip
    item = await _hash(redis, f"{PREFIX}item:{item_id}")
    login = item["login"]
    await redis.hincrby(f"{PREFIX}calls:{login}", endpoint, 1)
    await redis.expire(f"{PREFIX}calls:{login}", KEEP_SECONDS)
    if await _take_failure(redis, login, ("INVALID_ACCESS_TOKEN",)):
        raise PlaidProblem(
            400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN",
            "provided access token is in an invalid format or has been revoked",
        )  # fmt: skip
    if await _take_failure(redis, login, ("ITEM_LOGIN_REQUIRED",)):
        await redis.sadd(f"{PREFIX}locked:{login}", "all")
    locked = data_call and await redis.sismember(f"{PREFIX}locked:{login}", "all")
    if locked and item.get("repaired") != "1":
        raise PlaidProblem(
            400, "ITEM_ERROR", "ITEM_LOGIN_REQUIRED",
            "the login details of this item have changed (credentials, MFA, or required user "
            "action) and a user login is required to update this information",
        )  # fmt: skip
    return {**item, "item_id": item_id, "state": await _login(redis, login)}


def _today(item: dict) -> date:
    return datetime.fromtimestamp(int(item["anchor"]), UTC).date()


def _products(item: dict) -> list[str]:
    return json.loads(item["products"])


# --- Link --------------------------------------------------------------------------------------

STAND_IN = (Path(__file__).parent / "plaid_static" / "link-initialize.js").read_bytes()


@router.get("/link-initialize.js")
async def link_initialize() -> Response:
    """The stand-in for Plaid Link's script (the same Plaid.create contract)."""
    return Response(STAND_IN, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


@_post("/link/token/create")
async def link_token_create(body: dict, redis: Redis, ctx) -> dict:
    for required in ("client_name", "language", "country_codes", "user"):
        if not body.get(required):
            raise PlaidProblem(
                400, "INVALID_REQUEST", "MISSING_FIELDS", f"{required} must be provided"
            )
    update_of = None
    if body.get("access_token"):
        update_of = await _item_of_unchecked(redis, body["access_token"])
    elif not body.get("products"):
        raise PlaidProblem(400, "INVALID_REQUEST", "MISSING_FIELDS", "products must be provided")
    products = [p for p in body.get("products") or () if p in ("transactions", "investments")]
    token = f"link-sandbox-{secrets.token_hex(16)}"
    await redis.set(
        f"{PREFIX}link:{token}",
        json.dumps({"products": products, "webhook": body.get("webhook"), "update": update_of}),
        ex=4 * 3600,
    )
    expiration = (datetime.now(UTC) + timedelta(hours=4)).replace(microsecond=0)
    return {"link_token": token, "expiration": expiration.isoformat().replace("+00:00", "Z")}


async def _item_of_unchecked(redis: Redis, token: str) -> str:
    digest = hashlib.sha256(str(token).encode()).hexdigest()
    item_id = _text(await redis.get(f"{PREFIX}access:{digest}"))
    if item_id is None:
        raise PlaidProblem(
            400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN",
            "provided access token is in an invalid format or has been revoked",
        )  # fmt: skip
    return item_id


async def _new_item(redis: Redis, login: str, products: list, webhook: str | None) -> str:
    item_id = data.opaque("item", login, secrets.token_hex(8))
    await _login(redis, login)
    await redis.hset(
        f"{PREFIX}item:{item_id}",
        mapping={
            "login": login,
            "products": json.dumps(products or ["transactions"]),
            "webhook": webhook or "",
            # The data's today: fixed when the item is made (a test's day stays one day).
            "anchor": int(time.time()),
        },
    )
    await redis.expire(f"{PREFIX}item:{item_id}", KEEP_SECONDS)
    await redis.rpush(f"{PREFIX}items:{login}", item_id)
    await redis.expire(f"{PREFIX}items:{login}", KEEP_SECONDS)
    return item_id


async def _public_token(redis: Redis, item_id: str) -> str:
    token = f"public-sandbox-{secrets.token_hex(16)}"
    await redis.set(f"{PREFIX}public:{token}", item_id, ex=30 * 60)
    return token


class LinkCompleted(BaseModel):
    link_token: str = Field(max_length=200)
    # The bank login the person signs in with at the stand-in bank.
    username: str = Field(default="user_good", min_length=1, max_length=100)


@router.post("/link/complete")
async def link_complete(body: LinkCompleted, redis: RedisDep) -> JSONResponse:
    """What the stand-in Link does when the person finishes: the public token and the metadata
    Plaid Link's onSuccess gets. In update mode the item's login is mended (its public token
    need not be exchanged: the access token stays)."""
    link = _text(await redis.get(f"{PREFIX}link:{body.link_token}"))
    if link is None:
        return _answer(
            PlaidProblem(400, "INVALID_INPUT", "INVALID_LINK_TOKEN", "link token is invalid")
        )
    link = json.loads(link)
    if link["update"]:
        item_id = link["update"]
        await redis.hset(f"{PREFIX}item:{item_id}", "repaired", "1")
    else:
        item_id = await _new_item(redis, body.username, link["products"], link["webhook"])
    login = _text(await redis.hget(f"{PREFIX}item:{item_id}", "login"))
    if link["update"]:  # the login is whole again for every item of it
        await redis.delete(f"{PREFIX}locked:{login}")
    metadata = {
        "institution": {"name": data.INSTITUTION[1], "institution_id": data.INSTITUTION[0]},
        "accounts": [
            {
                "id": a["account_id"],
                "name": a["name"],
                "mask": a["mask"],
                "type": a["type"],
                "subtype": a["subtype"],
                "verification_status": None,
            }
            for a in data.accounts(item_id, login)
        ],
        "link_session_id": secrets.token_hex(12),
    }
    return JSONResponse({"public_token": await _public_token(redis, item_id), "metadata": metadata})


@_post("/sandbox/public_token/create")
async def sandbox_public_token_create(body: dict, redis: Redis, ctx) -> dict:
    """Plaid's sandbox shortcut past Link; ``options.override_username`` names the login."""
    options = body.get("options") or {}
    login = str(options.get("override_username") or "user_good")
    products = [
        p for p in body.get("initial_products") or () if p in ("transactions", "investments")
    ]
    item_id = await _new_item(redis, login, products, options.get("webhook"))
    return {"public_token": await _public_token(redis, item_id)}


@_post("/item/public_token/exchange")
async def item_public_token_exchange(body: dict, redis: Redis, ctx) -> dict:
    item_id = _text(await redis.getdel(f"{PREFIX}public:{body.get('public_token')}"))
    if item_id is None:
        raise PlaidProblem(
            400, "INVALID_INPUT", "INVALID_PUBLIC_TOKEN",
            "provided public token is in an invalid format or expired",
        )  # fmt: skip
    token = _text(await redis.hget(f"{PREFIX}item:{item_id}", "access_token"))
    if token is None:  # the item's first exchange (update mode keeps the token it has)
        token = f"access-sandbox-{secrets.token_hex(20)}"
        digest = hashlib.sha256(token.encode()).hexdigest()
        await redis.set(f"{PREFIX}access:{digest}", item_id, ex=KEEP_SECONDS)
        await redis.hset(f"{PREFIX}item:{item_id}", "access_token", token)
    return {"access_token": token, "item_id": item_id}


@_post("/item/remove")
async def item_remove(body: dict, redis: Redis, ctx) -> dict:
    """The item is gone: its access token opens nothing from now on."""
    item = await _item_of(redis, body, "item_remove", data_call=False)
    digest = hashlib.sha256(body["access_token"].encode()).hexdigest()
    await redis.delete(f"{PREFIX}access:{digest}")
    await redis.sadd(f"{PREFIX}removed:{item['login']}", item["item_id"])
    await redis.expire(f"{PREFIX}removed:{item['login']}", KEEP_SECONDS)
    return {}


# --- data ----------------------------------------------------------------------------------------


def _item_body(item: dict) -> dict:
    return data.item(item["item_id"], _products(item), item.get("webhook") or None, None)


@_post("/accounts/get")
async def accounts_get(body: dict, redis: Redis, ctx) -> dict:
    item = await _item_of(redis, body, "accounts")
    return {"accounts": data.accounts(item["item_id"], item["login"]), "item": _item_body(item)}


def _listed(item: dict, step: int, full: bool) -> dict:
    """What the item lists at ``step``: all of it, or (not ``full``) its initial days only."""
    today = _today(item)
    found = data.transactions(item["item_id"], item["login"], step, today)
    if full:
        return found
    since = (today - timedelta(days=data.INITIAL_DAYS)).isoformat()
    return {i: t for i, t in found.items() if t["date"] >= since}


def _changes(item: dict, base: tuple, target: tuple) -> list[tuple[str, dict]]:
    """What changed at the bank from ``base`` (step, full; step None: nothing seen) to
    ``target``, in a fixed order: added, modified, removed."""
    now = _listed(item, *target)
    before = {} if base[0] is None else _listed(item, *base)
    added = [("added", t) for i, t in now.items() if i not in before]
    modified = [("modified", t) for i, t in now.items() if i in before and before[i] != t]
    removed = [
        ("removed", {"transaction_id": i, "account_id": t["account_id"]})
        for i, t in before.items()
        if i not in now
    ]
    return added + modified + removed


async def _cursor(redis: Redis, item_id: str, base: tuple, target: tuple, offset: int) -> str:
    cursor = secrets.token_urlsafe(48)
    saved = {
        "item": item_id, "base": base[0], "base_full": base[1], "target": target[0],
        "target_full": target[1], "offset": offset,
    }  # fmt: skip
    await redis.set(f"{PREFIX}cursor:{cursor}", json.dumps(saved), ex=KEEP_SECONDS)
    return cursor


@_post("/transactions/sync")
async def transactions_sync(body: dict, redis: Redis, ctx) -> dict:
    item = await _item_of(redis, body, "transactions_sync")
    login, step = item["login"], int(item["state"]["step"])
    count = body.get("count", 100)
    if not isinstance(count, int) or not 1 <= count <= 500:
        raise PlaidProblem(
            400, "INVALID_REQUEST", "INVALID_FIELD", "count must be between 1 and 500"
        )
    if await _take_failure(redis, login, ("TRANSACTIONS_SYNC_LIMIT",)):
        raise PlaidProblem(
            429, "RATE_LIMIT_EXCEEDED", "TRANSACTIONS_SYNC_LIMIT",
            "rate limit exceeded for attempts to access this item, please try again later",
        )  # fmt: skip
    accounts = data.accounts(item["item_id"], login)
    status = item["state"].get("transactions") or COMPLETE
    full = status != "INITIAL_UPDATE_COMPLETE"
    if await _take_failure(redis, login, ("NOT_READY",)) or status == "NOT_READY":
        return {
            "transactions_update_status": "NOT_READY", "accounts": accounts, "added": [],
            "modified": [], "removed": [], "next_cursor": "", "has_more": False,
        }  # fmt: skip
    base, offset, target, base_full, target_full = None, 0, step, True, full
    if body.get("cursor"):
        saved = _text(await redis.get(f"{PREFIX}cursor:{body['cursor']}"))
        saved = json.loads(saved) if saved else None
        if saved is None or saved["item"] != item["item_id"]:
            raise PlaidProblem(
                400, "INVALID_INPUT", "INVALID_FIELD",
                "cursor not associated with access_token",
            )  # fmt: skip
        base, offset, target = saved["base"], saved["offset"], saved["target"]
        if not saved["offset"] and await _take_failure(redis, login, ("MUTATION_AT_CURSOR",)):
            raise PlaidProblem(
                400, "TRANSACTIONS_ERROR", "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
                "Underlying transaction data changed since last page was fetched. Please "
                "restart pagination from last update.",
            )  # fmt: skip
        base_full, target_full = saved.get("base_full", True), saved.get("target_full", True)
        if offset and await _take_failure(redis, login, ("MUTATION",)):
            step = int(await redis.hincrby(f"{PREFIX}login:{login}", "step", 1))
        if offset and (target != step or target_full != full):
            raise PlaidProblem(
                400, "TRANSACTIONS_ERROR", "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
                "Underlying transaction data changed since last page was fetched. Please "
                "restart pagination from last update.",
            )  # fmt: skip
        if not offset:
            target, target_full = step, full
    changes = _changes(item, (base, base_full), (target, target_full))
    page = changes[offset : offset + min(count, PAGE_MAX)]
    more = offset + len(page) < len(changes)
    if more:
        cursor = await _cursor(
            redis, item["item_id"], (base, base_full), (target, target_full), offset + len(page)
        )
    else:
        cursor = await _cursor(
            redis, item["item_id"], (target, target_full), (target, target_full), 0
        )
    return {
        "transactions_update_status": status,
        "accounts": accounts,
        "added": [t for kind, t in page if kind == "added"],
        "modified": [t for kind, t in page if kind == "modified"],
        "removed": [t for kind, t in page if kind == "removed"],
        "next_cursor": cursor,
        "has_more": more,
    }


def _investing(item: dict) -> None:
    if "investments" not in _products(item):
        raise PlaidProblem(
            400, "ITEM_ERROR", "PRODUCTS_NOT_SUPPORTED",
            "the investments product is not enabled for this item",
        )  # fmt: skip


def _investment_accounts(item: dict) -> list[dict]:
    """The item's investment accounts as the investments endpoints list them (InvestmentAccount:
    their balances say the margin loan, null when there is none)."""
    return [
        {**a, "balances": {**a["balances"], "margin_loan_amount": None}}
        for a in data.accounts(item["item_id"], item["login"])
        if a["type"] == "investment"
    ]


@_post("/investments/holdings/get")
async def investments_holdings_get(body: dict, redis: Redis, ctx) -> dict:
    item = await _item_of(redis, body, "holdings")
    _investing(item)
    return {
        "accounts": _investment_accounts(item),
        "holdings": data.holdings(item["item_id"]),
        "securities": data.securities(),
        "item": _item_body(item),
    }


@_post("/investments/transactions/get")
async def investments_transactions_get(body: dict, redis: Redis, ctx) -> dict:
    item = await _item_of(redis, body, "investment_transactions")
    _investing(item)
    try:
        start, end = date.fromisoformat(body["start_date"]), date.fromisoformat(body["end_date"])
    except (KeyError, TypeError, ValueError):
        raise PlaidProblem(
            400, "INVALID_REQUEST", "INVALID_FIELD", "start_date and end_date must be YYYY-MM-DD"
        ) from None
    status = item["state"].get("investments") or COMPLETE
    if status == "NOT_READY":
        raise PlaidProblem(
            400, "ITEM_ERROR", "PRODUCT_NOT_READY",
            "the requested product is not yet ready. please provide a webhook or try the "
            "request again later",
        )  # fmt: skip
    if status == "INITIAL_UPDATE_COMPLETE":
        start = max(start, _today(item) - timedelta(days=data.INITIAL_DAYS))
    options = body.get("options") or {}
    count, offset = int(options.get("count", 100)), int(options.get("offset", 0))
    found = data.investment_transactions(
        item["item_id"], _today(item), start, end, older=item["state"].get("older") == "1"
    )
    return {
        "item": _item_body(item),
        "accounts": _investment_accounts(item),
        "securities": data.securities(),
        "investment_transactions": found[offset : offset + count],
        "total_investment_transactions": len(found),
    }


# --- webhooks ------------------------------------------------------------------------------------


async def _signing_key(redis: Redis, name: str = "main") -> dict:
    """The look-alike's current ES256 key of that name (one for every process serving it),
    made on first use; its kid a UUID, as Plaid's are. Every key made is kept (KEYS, by kid),
    an expired one with its ``expired_at``."""
    pointer = f"{PREFIX}webhook_key:{name}"
    kid = _text(await redis.get(pointer))
    saved = _text(await redis.hget(KEYS, kid)) if kid else None
    if saved is None:
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        made = {"kid": str(uuid.uuid4()), "pem": pem, "created_at": int(time.time())}
        await redis.hset(KEYS, made["kid"], json.dumps({**made, "expired_at": None}))
        await redis.expire(KEYS, KEEP_SECONDS)
        if kid is None:
            await redis.set(pointer, made["kid"], nx=True, ex=KEEP_SECONDS)
        else:  # its key was lost (KEEP_SECONDS): a new one
            await redis.set(pointer, made["kid"], ex=KEEP_SECONDS)
        kid = _text(await redis.get(pointer))
        saved = _text(await redis.hget(KEYS, kid))
    return json.loads(saved)


@_post("/webhook_verification_key/get")
async def webhook_verification_key_get(body: dict, redis: Redis, ctx) -> dict:
    await _signing_key(redis)
    saved = _text(await redis.hget(KEYS, str(body.get("key_id"))))
    if saved is None:
        raise PlaidProblem(400, "INVALID_INPUT", "INVALID_WEBHOOK_VERIFICATION_KEY_ID",
                           "invalid key_id provided")  # fmt: skip
    signing = json.loads(saved)
    public = serialization.load_pem_private_key(signing["pem"].encode(), None).public_key()
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
    return {
        "key": {
            "alg": "ES256", "crv": jwk["crv"], "kid": signing["kid"], "kty": "EC", "use": "sig",
            "x": jwk["x"], "y": jwk["y"], "created_at": signing["created_at"],
            "expired_at": signing["expired_at"],
        }
    }  # fmt: skip


def webhook_body(item_id: str, code: str, login_error: bool = False) -> dict:
    if code == "SYNC_UPDATES_AVAILABLE":
        return {
            "webhook_type": "TRANSACTIONS", "webhook_code": code, "item_id": item_id,
            "initial_update_complete": True, "historical_update_complete": True,
            "environment": "sandbox",
        }  # fmt: skip
    if code == "ERROR":
        return {
            "webhook_type": "ITEM", "webhook_code": "ERROR", "item_id": item_id,
            "error": data.error(
                "ITEM_ERROR", "ITEM_LOGIN_REQUIRED",
                "the login details of this item have changed", 400,
            ),
            "environment": "sandbox",
        }  # fmt: skip
    if code == "PENDING_EXPIRATION":
        ends = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
        return {
            "webhook_type": "ITEM", "webhook_code": code, "item_id": item_id,
            "consent_expiration_time": ends.isoformat().replace("+00:00", "Z"),
            "environment": "sandbox",
        }  # fmt: skip
    if code == "INVESTMENTS_HISTORICAL_UPDATE":
        return {
            "webhook_type": "INVESTMENTS_TRANSACTIONS", "webhook_code": "HISTORICAL_UPDATE",
            "item_id": item_id, "error": None, "new_investments_transactions": 1,
            "cancelled_investments_transactions": 0, "environment": "sandbox",
        }  # fmt: skip
    return {"webhook_type": "ITEM", "webhook_code": code, "item_id": item_id,
            "environment": "sandbox"}  # fmt: skip


async def signed_webhook(
    redis: Redis, body: dict, *, iat: int | None = None, key: str = "main"
) -> tuple[bytes, str]:
    """The webhook's raw body and its Plaid-Verification header (signed with ``key``'s
    current key)."""
    raw = json.dumps(body, indent=2).encode()  # Plaid's bodies are pretty-printed
    signing = await _signing_key(redis, key)
    token = jwt.encode(
        {"iat": iat or int(time.time()), "request_body_sha256": hashlib.sha256(raw).hexdigest()},
        signing["pem"],
        algorithm="ES256",
        headers={"kid": signing["kid"]},
    )
    return raw, token


WebhookCode = Literal[
    "SYNC_UPDATES_AVAILABLE", "ERROR", "LOGIN_REPAIRED", "PENDING_EXPIRATION",
    "INVESTMENTS_HISTORICAL_UPDATE",
]  # fmt: skip


@_post("/sandbox/item/fire_webhook")
async def sandbox_item_fire_webhook(body: dict, redis: Redis, ctx) -> dict:
    item = await _item_of(redis, body, "fire_webhook", data_call=False)
    code = body.get("webhook_code") or "SYNC_UPDATES_AVAILABLE"
    if code not in WebhookCode.__args__:
        raise PlaidProblem(400, "INVALID_REQUEST", "INVALID_FIELD", "unknown webhook_code")
    if not item.get("webhook"):
        raise PlaidProblem(400, "INVALID_INPUT", "SANDBOX_WEBHOOK_INVALID",
                           "the item has no webhook URL")  # fmt: skip
    raw, token = await signed_webhook(redis, webhook_body(item["item_id"], code))

    async def send() -> None:
        async with httpx.AsyncClient(verify=ctx.tls, timeout=10) as http:
            await http.post(
                item["webhook"],
                content=raw,
                headers={"Content-Type": "application/json", "Plaid-Verification": token},
            )

    ctx.in_background("a Plaid look-alike webhook", send())
    return {"webhook_fired": True}


@_post("/sandbox/item/reset_login")
async def sandbox_item_reset_login(body: dict, redis: Redis, ctx) -> dict:
    item = await _item_of(redis, body, "reset_login", data_call=False)
    await redis.sadd(f"{PREFIX}locked:{item['login']}", "all")
    await redis.hdel(f"{PREFIX}item:{item['item_id']}", "repaired")
    return {"reset_login": True}


# --- controls ------------------------------------------------------------------------------------


class Failure(BaseModel):
    kind: Literal[FAILURES]  # type: ignore[valid-type]
    times: int = Field(default=1, ge=1, le=20)


@router.post("/_control/{login}/fail", status_code=204)
async def fail(login: str, body: Failure, redis: RedisDep) -> None:
    if body.kind == "ITEM_LOGIN_REQUIRED":
        await redis.sadd(f"{PREFIX}locked:{login}", "all")
        for key in [k async for k in redis.scan_iter(f"{PREFIX}item:*")]:
            if _text(await redis.hget(key, "login")) == login:
                await redis.hdel(key, "repaired")
        return
    await redis.rpush(f"{PREFIX}fail:{login}", *([body.kind] * body.times))
    await redis.expire(f"{PREFIX}fail:{login}", KEEP_SECONDS)


@router.post("/_control/{login}/advance", status_code=204)
async def advance(login: str, redis: RedisDep) -> None:
    await _login(redis, login)
    await redis.hincrby(f"{PREFIX}login:{login}", "step", 1)


class History(BaseModel):
    transactions: Literal[STATUSES] | None = None  # type: ignore[valid-type]
    investments: Literal["NOT_READY", "INITIAL_UPDATE_COMPLETE", COMPLETE] | None = None


@router.post("/_control/{login}/history", status_code=204)
async def history(login: str, body: History, redis: RedisDep) -> None:
    """How far the login's history has come at Plaid (the module's list)."""
    await _login(redis, login)
    key = f"{PREFIX}login:{login}"
    if body.transactions:
        await redis.hset(key, "transactions", body.transactions)
    if body.investments:  # a login on asynchronous investments updates: its history is older
        await redis.hset(key, mapping={"investments": body.investments, "older": "1"})


class WebhookAsked(BaseModel):
    item_id: str = Field(max_length=100)
    webhook_code: WebhookCode = "SYNC_UPDATES_AVAILABLE"
    # Seconds before now the signature says it was made (an old one is refused by receivers).
    age_seconds: int = Field(default=0, ge=0, le=86400)
    # Which of the look-alike's keys signs it (a test rotating keys uses one of its own).
    key: str = Field(default="main", max_length=60)


@router.post("/_control/webhook")
async def webhook(body: WebhookAsked, redis: RedisDep) -> dict:
    """A signed webhook for the item, handed back (the test delivers it)."""
    raw, token = await signed_webhook(
        redis, webhook_body(body.item_id, body.webhook_code),
        iat=int(time.time()) - body.age_seconds, key=body.key,
    )  # fmt: skip
    return {"body": raw.decode(), "plaid_verification": token}


@router.post("/_control/webhook-key/{name}/rotate", status_code=204)
async def rotate(name: str, redis: RedisDep) -> None:
    """The key of that name expires now (``expired_at`` set, as Plaid's rotation does); the
    next webhook signed with that name gets a new key."""
    signing = await _signing_key(redis, name)
    await redis.hset(KEYS, signing["kid"], json.dumps({**signing, "expired_at": int(time.time())}))
    await redis.delete(f"{PREFIX}webhook_key:{name}")


@router.get("/_control/{login}")
async def stats(login: str, redis: RedisDep) -> dict:
    state = await _login(redis, login)
    return {
        "step": int(state["step"]),
        "calls": {k: int(v) for k, v in (await _hash(redis, f"{PREFIX}calls:{login}")).items()},
        "items": [_text(i) for i in await redis.lrange(f"{PREFIX}items:{login}", 0, -1)],
        "removed": sorted(_text(i) for i in await redis.smembers(f"{PREFIX}removed:{login}")),
    }
