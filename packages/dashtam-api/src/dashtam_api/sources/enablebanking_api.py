"""Enable Banking's API (enablebanking.com/docs/api/reference) as one application calls it.

- Every call carries a fresh RS256 JWT signed with the application's private key: header
  ``kid`` = the application id, claims ``iss`` enablebanking.com, ``aud``
  api.enablebanking.com, ``iat`` and ``exp`` (an hour: Enable Banking refuses more than a day).
- Its errors are ``{"code": <http status>, "message", "error": "<CODE>", "detail"}``; what each
  code means for a connection is decided here (``failure``): the session's end or the bank
  wanting the person needs them; the bank's PSD2 limit (429 ``ASPSP_RATE_LIMIT_EXCEEDED``)
  means the day's reads are spent, the connection healthy; the bank's troubles pass; a period
  refused (``WRONG_TRANSACTIONS_PERIOD``) is a ``PeriodRefused`` naming the day the bank takes.
- Paths are sent from templates (``/accounts/{uid}/balances``), which alone reach the log.
- ``application``: which application this deployment is. Unconfigured in development and
  testing, the look-alike this API serves (sandbox/enablebanking.py), with the key `inv setup`
  made next to the project's CA.
"""

import functools
import json
import time
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import jwt

from dashtam_api import upstream
from dashtam_api.sources.shapes import SourceError
from dashtam_core.config import Settings

ISSUER = "enablebanking.com"
AUDIENCE = "api.enablebanking.com"
JWT_SECONDS = 3600
SANDBOX_APP_ID = "dashtam-sandbox-app"
SANDBOX_KEY_NAME = "enablebanking-sandbox-key.pem"

# Only the person can mend these: a new consent at the bank (EXPIRED_SESSION: the consent ran
# out, the connection is expired rather than in error).
NEEDS_PERSON = frozenset(
    {
        "EXPIRED_SESSION",
        "REVOKED_SESSION",
        "CLOSED_SESSION",
        "SESSION_DOES_NOT_EXIST",
        "ASPSP_PSU_ACTION_REQUIRED",
        "ACCESS_DENIED",
        "ACCOUNT_DOES_NOT_EXIST",
    }
)
ENDED = frozenset({"EXPIRED_SESSION"})
RATE_LIMITED = "ASPSP_RATE_LIMIT_EXCEEDED"
# The bank refused the period of transactions asked for (longer than it serves: a strict bank
# counts 90 days inclusive); its ``detail`` may name the earliest ``date_from`` it takes.
WRONG_PERIOD = "WRONG_TRANSACTIONS_PERIOD"
TRANSIENT = frozenset({RATE_LIMITED, "ASPSP_ERROR", "ASPSP_TIMEOUT"})


def _list(value, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SourceError(upstream.INVALID_RESPONSE, f"{where} is not a list", transient=False)
    return value


class PeriodRefused(SourceError):
    """WRONG_TRANSACTIONS_PERIOD, with the earliest day the bank said it serves (or None)."""

    def __init__(self, description: str, date_from: date | None):
        super().__init__(WRONG_PERIOD, description, transient=False)
        self.date_from = date_from


def _suggested_day(detail) -> date | None:
    value = detail.get("date_from") if isinstance(detail, dict) else None
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


@dataclass(frozen=True)
class App:
    app_id: str
    key_file: Path
    base_url: str


def application(settings: Settings) -> App | None:
    """The Enable Banking application this deployment uses: the configured one, else (in
    development and testing) the look-alike's; None when there is none."""
    if settings.ENABLE_BANKING_APP_ID and settings.ENABLE_BANKING_KEY_FILE:
        return App(
            settings.ENABLE_BANKING_APP_ID,
            Path(settings.ENABLE_BANKING_KEY_FILE),
            settings.ENABLE_BANKING_BASE_URL.rstrip("/"),
        )
    if settings.local_environment:
        return App(
            SANDBOX_APP_ID,
            Path(settings.CA_CERT_FILE).parent / SANDBOX_KEY_NAME,
            settings.API_BASE_URL.rstrip("/") + "/sandbox/enablebanking",
        )
    return None


def private_key(path: Path):
    try:
        return _loaded(path, path.stat().st_mtime_ns)
    except (OSError, ValueError):
        raise SourceError(
            "application_key_unreadable",
            "the Enable Banking application's private key (ENABLE_BANKING_KEY_FILE) cannot be "
            "read; the operator must fix it",
            transient=False,
        ) from None


def key_problem(app: App, settings: Settings) -> str | None:
    """What is wrong with the application's private key, in one line (None: it signs): checked
    when the registry is built, so a key that cannot be used is said at start, not at a
    person's first connect. Outside development and testing the file must be the owner's alone
    (like the env files: no group or other permissions)."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    where = f"the Enable Banking application's key ENABLE_BANKING_KEY_FILE={app.key_file}"
    try:
        mode = app.key_file.stat().st_mode
        key = private_key(app.key_file)
    except (OSError, SourceError):
        return f"{where} cannot be read as a PEM private key without a password"
    if not isinstance(key, RSAPrivateKey):
        return f"{where} is not an RSA key (Enable Banking's JWTs are RS256)"
    if mode & 0o077 and not settings.local_environment:
        return f"{where} may be read by others than its owner: chmod 600 it"
    return None


@functools.lru_cache(maxsize=4)
def _loaded(path: Path, version: int):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(path.read_bytes(), password=None)


def token(app: App, *, now: int | None = None, lifetime: int = JWT_SECONDS) -> str:
    """The JWT one call carries."""
    issued = int(time.time()) if now is None else now
    claims = {"iss": ISSUER, "aud": AUDIENCE, "iat": issued, "exp": issued + lifetime}
    return jwt.encode(
        claims, private_key(app.key_file), algorithm="RS256", headers={"kid": app.app_id}
    )


def failure(response: httpx.Response) -> SourceError:
    """The SourceError an error answer means (by its ``error`` code, else its status)."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    code = str(body.get("error") or "")[:60] or upstream.status_failure(response.status_code)[0]
    said = str(body.get("message") or body.get("detail") or f"HTTP {response.status_code}")[:300]
    if code in NEEDS_PERSON:
        return SourceError(
            code, f"{said}: connect the bank again", transient=False, needs_person=True,
            ended=code in ENDED,
        )  # fmt: skip
    if code == WRONG_PERIOD:
        return PeriodRefused(
            f"the bank refused the period of transactions asked for ({said})",
            _suggested_day(body.get("detail")),
        )
    if code == RATE_LIMITED:
        return SourceError(
            code, f"the bank's limit of unattended reads is spent for now ({said})",
            transient=True, budget_spent=True,
        )  # fmt: skip
    transient = code in TRANSIENT or response.status_code >= 500 or response.status_code == 429
    return SourceError(code, said, transient=transient)


class Client:
    """One application's calls, each sent once (a bank's read is one of its day's few; a
    session code is spent on arrival) unless it provably never left."""

    def __init__(self, http: httpx.AsyncClient, app: App, settings: Settings):
        self.http, self.app, self.settings = http, app, settings

    async def call(self, method: str, template: str, *, ids=None, params=None, body=None, psu=None):
        """``template`` with ``ids`` filled in; only the template is ever logged (the ids are
        a session's and its accounts' handles)."""
        url = self.app.base_url + template.format(**(ids or {}))
        prefix = urlsplit(self.app.base_url).path

        def send():
            return self.http.request(
                method,
                url,
                params=params,
                json=body,
                headers={
                    "Authorization": f"Bearer {token(self.app)}",
                    "Accept": "application/json",
                    **(psu or {}),
                },
                extensions={upstream.PATH_TEMPLATE: prefix + template},
            )

        try:
            response = await upstream.once(self.settings, send)
        except httpx.TransportError as exc:
            raise SourceError(*upstream.transport_failure(exc), transient=True) from None
        if response.status_code >= 400:
            raise failure(response)
        if response.status_code == 204 or not response.content:
            return {}
        try:
            answer = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise SourceError(upstream.INVALID_RESPONSE, "not JSON", transient=False) from None
        if not isinstance(answer, dict):
            raise SourceError(upstream.INVALID_RESPONSE, "not a JSON object", transient=False)
        return answer

    async def aspsps(self, country: str | None) -> list[dict]:
        params = {"service": "AIS"} | ({"country": country} if country else {})
        answer = await self.call("GET", "/aspsps", params=params)
        return [a for a in _list(answer.get("aspsps"), "/aspsps") if isinstance(a, dict)]

    async def auth(self, *, bank: dict, valid_until: str, state: str, redirect_url: str) -> dict:
        return await self.call(
            "POST",
            "/auth",
            body={
                "access": {"valid_until": valid_until},
                "aspsp": {"name": bank["name"], "country": bank["country"]},
                "state": state,
                "redirect_url": redirect_url,
                "psu_type": "personal",
            },
        )

    async def open_session(self, code: str) -> dict:
        return await self.call("POST", "/sessions", body={"code": code})

    async def close_session(self, session_id: str) -> None:
        await self.call("DELETE", "/sessions/{id}", ids={"id": session_id})

    async def balances(self, uid: str, *, psu: dict | None = None) -> list:
        answer = await self.call("GET", "/accounts/{uid}/balances", ids={"uid": uid}, psu=psu)
        return _list(answer.get("balances"), "an account's balances")

    async def transactions(
        self,
        uid: str,
        *,
        date_from: str,
        date_to: str,
        key: str | None,
        psu: dict | None = None,
        status: str | None = None,
    ):
        params = {"date_from": date_from, "date_to": date_to}
        if status:
            params["transaction_status"] = status
        if key:
            params["continuation_key"] = key
        return await self.call(
            "GET", "/accounts/{uid}/transactions", ids={"uid": uid}, params=params, psu=psu
        )
