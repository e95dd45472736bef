"""The Enable Banking look-alike's state in Valkey (sandbox/enablebanking.py serves it): sessions
and the uids of their accounts, each session's status as it stands (a newer consent, its end,
closed), the PSD2 limit's unattended reads, failures queued for a PSU, a PSU's clock."""

import json
import secrets
import time
from datetime import date, datetime

from redis.asyncio import Redis

from dashtam_api.sandbox import enablebanking_data as data

PREFIX = "sandbox:eb:"
KEEP_SECONDS = 14 * 86400
DAY_SECONDS = 86400
UNATTENDED = 4


class Refused(Exception):
    """Refused as Enable Banking refuses: its error code and message (the router answers it)."""

    def __init__(self, error: str, message: str):
        super().__init__(message)
        self.error, self.message = error, message


def text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


async def load(redis: Redis, key: str) -> dict | None:
    raw = await redis.get(PREFIX + key)
    return json.loads(raw) if raw else None


async def save(redis: Redis, key: str, value: dict) -> None:
    await redis.set(PREFIX + key, json.dumps(value), ex=KEEP_SECONDS)


async def now(redis: Redis, psu: str) -> float:
    """The PSU's time: the real one, moved on by ``_control/{psu}/clock``."""
    return time.time() + int(await redis.get(f"{PREFIX}clock:{psu}") or 0)


async def live(redis: Redis, session_id: str) -> tuple[dict, str]:
    """A session and its status as it stands (Refused: no such session)."""
    record = await load(redis, f"session:{session_id[:64]}")
    if record is None:
        raise Refused("SESSION_DOES_NOT_EXIST", "Session does not exist")
    return record, await status(redis, session_id, record)


async def status(redis: Redis, session_id: str, record: dict) -> str:
    """CLOSED as kept; else REVOKED once a newer consent of the PSU at the bank came, EXPIRED
    past valid_until (or ended by an injected EXPIRED_SESSION), else AUTHORIZED."""
    if record["status"] != "AUTHORIZED":
        return record["status"]
    latest = text(await redis.get(f"{PREFIX}latest:{record['psu']}:{'|'.join(record['bank'])}"))
    if latest != session_id:
        return "REVOKED"
    ends = datetime.fromisoformat(record["valid_until"]).timestamp()
    if await now(redis, record["psu"]) >= ends or record.get("expired"):
        return "EXPIRED"
    return "AUTHORIZED"


async def account(redis: Redis, uid: str) -> tuple[dict, int, str]:
    """The session, the account's number in it and the session's id, for a uid whose session
    is authorized (Refused as the session's state says otherwise)."""
    held = await load(redis, f"uid:{uid[:64]}")
    if held is None:
        raise Refused("ACCOUNT_DOES_NOT_EXIST", "Account does not exist")
    record, status = await live(redis, held["session"])
    if status != "AUTHORIZED":
        raise Refused(f"{status}_SESSION", f"Session is {status.lower()}")
    return record, held["n"], held["session"]


async def injected(redis: Redis, record: dict, session_id: str) -> None:
    """The PSU's next queued failure, at a read (a balances request, a transactions listing's
    first page); an empty entry is a read let through."""
    failure = text(await redis.lpop(f"{PREFIX}fail:{record['psu']}"))
    if failure == "EXPIRED_SESSION":
        record["expired"] = True
        await save(redis, f"session:{session_id}", record)
    if failure:
        raise Refused(failure, f"Injected: {failure}")


async def counted(redis: Redis, record: dict, session_id: str, uid: str, resource: str) -> None:
    """One unattended read of the account's resource; past UNATTENDED in 24 hours, refused."""
    moment = await now(redis, record["psu"])
    key = f"{PREFIX}reads:{session_id}:{uid}:{resource}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(key, 0, moment - DAY_SECONDS)
        pipe.zcard(key)
        _, count = await pipe.execute()
    if int(count) >= UNATTENDED:
        raise Refused("ASPSP_RATE_LIMIT_EXCEEDED", "ASPSP rate limit exceeded")
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(key, {f"{moment}:{secrets.token_hex(4)}": moment})
        pipe.expire(key, 2 * DAY_SECONDS)
        pipe.hincrby(f"{PREFIX}stats:{record['psu']}", resource, 1)
        pipe.expire(f"{PREFIX}stats:{record['psu']}", KEEP_SECONDS)
        await pipe.execute()


async def entries(redis: Redis, record: dict, n: int, *, step_on: bool) -> tuple:
    """The account's entries at its step (moved on by a read of its transactions), its bank,
    its PSU's anchor day."""
    psu, bank = record["psu"], data.bank(*record["bank"])
    anchor = date.fromisoformat(text(await redis.get(f"{PREFIX}anchor:{psu}")))
    step_key = f"{PREFIX}step:{data.identification_hash(psu, bank, n)}"
    step = int(await redis.get(step_key) or 0)
    if step_on:
        await redis.set(step_key, step + 1, ex=KEEP_SECONDS)
    return data.transactions(psu, bank, n, anchor, step), bank, anchor
