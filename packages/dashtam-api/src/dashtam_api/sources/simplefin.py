"""The SimpleFIN Bridge (or any SimpleFIN server: another Dashtam's too), read with an access URL
claimed once from a setup token (https://www.simplefin.org/protocol.html).

- ``claim``: the setup token is the base64 of a claim URL; one POST to it answers the access URL,
  ``https://<username>:<password>@<host>/<path>``. It is sent once, never again: a claim is
  spent on arrival (and the claim URL's path is the token itself, kept out of retry logs). A
  403 means claimed already, maybe by someone else: the person is told the token may be
  compromised, as the protocol asks.
- ``read``: ``GET {root}/accounts?start-date&end-date&pending=1`` with the access URL's user and
  password as HTTP Basic. Every answer lists every account, with each one's transactions in the
  range asked for; the range is at most ``window_days`` long, so the first read walks back the
  history in windows and later ones read from where the sync left off (``Windows``).
- Version 2 answers (``errlist`` with codes, ``connections``) and version 1 ones (``errors`` as
  strings, ``org``) are both understood. ``con.auth`` (or a v1 message saying the bank wants a
  new sign-in) only the person can mend, at the Bridge; any other error is tried again later.

The access URL holds a password: it is never logged and never part of an error's text (errors
name the host at most). Every request, the claim's too, goes through the guarded transport
(webhooks/targets.py: each address the host resolves to is checked just before connecting, so
a name that resolves to this network refuses to connect outside development and testing), and
the URLs' form is checked as a webhook's is before anything is sent.
"""

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from dashtam_api import upstream
from dashtam_api.sources.protocol import Kind, Limits, Reading
from dashtam_api.sources.shapes import (
    AccountData,
    Balance,
    Holding,
    SourceError,
    TransactionData,
    Windows,
    decimal,
    maybe_decimal,
    shape_error,
)
from dashtam_api.webhooks.targets import RefusedTarget, check_url
from dashtam_core.config import Settings

name = "simplefin"
kind = Kind.SIMPLEFIN
# The SimpleFIN Bridge's developer guide (bridge.simplefin.org/info/developers, "Limits"): it is
# meant for daily updates, "24 requests or fewer per day" per access URL, a little leeway above
# that for the initial setup, quotas replenished throughout the day; past the leeway it disables
# the access. One request may cover at most 60 days of transactions (start-date to end-date);
# it keeps about 90 days of history.
limits = Limits(history_days=90, window_days=60, requests_per_day=24)
# The access URL and the claim URL are the person's: read through the guarded pool.
person_named_servers = True

WHERE = "the SimpleFIN Bridge"
FIX_AT_BRIDGE = "fix the connection at the SimpleFIN Bridge (sign in to your bank there again)"
# v1's errors are free text: these words in one mean the bank wants the person to sign in again.
V1_AUTH_WORDS = ("authenticat", "credential", "password", "sign in", "log in", "login", "reauth")
# The longest claim answer read (an access URL: a few hundred bytes).
MAX_CLAIM_BYTES = 64 * 1024


class TooLong(Exception):
    """An answer longer than what is read of one."""


async def _bounded(
    http: httpx.AsyncClient, request: httpx.Request, limit: int, auth=None
) -> httpx.Response:
    """The answer to ``request``, its body read as it streams in (decoded) and never more than
    ``limit`` bytes of it held (TooLong past that): the server is one a person named."""
    answer = await http.send(request, stream=True, **({"auth": auth} if auth else {}))
    try:
        declared = answer.headers.get("content-length", "")
        if (
            declared.isdigit()
            and int(declared) > limit
            and "content-encoding" not in answer.headers
        ):
            raise TooLong
        body = bytearray()
        async for chunk in answer.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise TooLong
    finally:
        await answer.aclose()
    headers = [
        (k, v) for k, v in answer.headers.items() if k not in ("content-encoding", "content-length")
    ]
    return httpx.Response(answer.status_code, headers=headers, content=bytes(body), request=request)


class ClaimFailed(Exception):
    """A setup token that did not give an access URL. ``reason``: ``bad_token`` (not a setup
    token), ``refused_target`` (its URL may not be reached from here), ``already_claimed`` (the
    server's 403), ``upstream`` (no usable answer: ``error`` names it as upstream.py does)."""

    def __init__(self, reason: str, message: str, *, error: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.error = error or reason


@dataclass(frozen=True)
class Access:
    """An access URL split into where to send and who to say we are."""

    root: str  # scheme://host[:port]/path, no credentials
    username: str
    password: str

    @property
    def host(self) -> str:
        return urlsplit(self.root).hostname or "the server"


def _allowed(url: str, settings: Settings) -> str:
    return check_url(
        url, allow_http=settings.local_environment, allow_private=settings.webhook_allow_private
    )


def access_of(access_url: str, settings: Settings) -> Access:
    """The access URL's parts, checked as a webhook's URL is; ValueError (a message without
    the URL) when it is not one."""
    try:
        parts = urlsplit(access_url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("the access URL is not a URL") from None
    if not parts.hostname or parts.username is None:
        raise ValueError("the access URL carries no user name and password")
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc += f":{port}" if port else ""
    root = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    try:
        _allowed(root, settings)
    except RefusedTarget as exc:
        raise ValueError(f"the access URL may not be used here: {exc}") from None
    return Access(root, unquote(parts.username), unquote(parts.password or ""))


def claim_url_of(setup_token: str, settings: Settings) -> str:
    """The claim URL a setup token holds; ClaimFailed (bad_token, refused_target) otherwise."""
    token = "".join(setup_token.split())
    try:
        text = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
        except (binascii.Error, ValueError):
            raise ClaimFailed(
                "bad_token", "This is not a SimpleFIN setup token (not base64)."
            ) from None
    if not text.startswith(("https://", "http://")):
        raise ClaimFailed("bad_token", "This is not a SimpleFIN setup token (no claim URL in it).")
    try:  # a URL at all (what any deployment takes), then one this deployment may reach
        check_url(text, allow_http=True, allow_private=True)
    except RefusedTarget as exc:
        raise ClaimFailed(
            "bad_token", f"This setup token's claim URL is not a usable URL: {exc}."
        ) from None
    try:
        return _allowed(text, settings)
    except RefusedTarget as exc:
        raise ClaimFailed(
            "refused_target", f"The setup token's claim URL is refused: {exc}."
        ) from None


async def claim(http: httpx.AsyncClient, setup_token: str, settings: Settings) -> str:
    """The access URL the setup token's claim URL answers (sent once)."""
    url = claim_url_of(setup_token, settings)
    host = urlsplit(url).hostname
    try:
        # Once, and not even again when it provably never left (upstream.once would): a claim
        # is spent the moment the server reads it, and a retry's log line would name the
        # claim URL's path, which is the unspent token. The person pastes it again.
        request = http.build_request("POST", url, headers={"Content-Length": "0"})
        answer = await _bounded(http, request, MAX_CLAIM_BYTES)
    except TooLong:
        raise ClaimFailed(
            "upstream", f"{host} answered the claim with more than an access URL.",
            error=upstream.INVALID_RESPONSE,
        ) from None  # fmt: skip
    except RefusedTarget as exc:
        raise ClaimFailed(
            "refused_target", f"The setup token's claim URL is refused: {exc}."
        ) from None
    except httpx.TransportError as exc:
        error, description = upstream.transport_failure(exc)
        raise ClaimFailed(
            "upstream", f"{host} did not answer the claim ({description}).", error=error
        ) from None
    if answer.status_code in (403, 429) and _looks_like_a_page(answer):
        # The Bridge's front door (a CDN's challenge or rate page) turned the claim away before
        # it reached the server: not a sign of a token claimed by someone else.
        raise ClaimFailed(
            "upstream",
            f"{host}'s front door turned the claim away with a web page (HTTP "
            f"{answer.status_code}); it usually lets requests through again later: send the "
            "same setup token again then.",
            error=f"http_{answer.status_code}",
        )
    if answer.status_code == 403:
        raise ClaimFailed(
            "already_claimed",
            "This setup token was already claimed: it may be compromised. Make a new one at "
            "your SimpleFIN Bridge, and check there which apps have access.",
        )
    if answer.status_code >= 400:
        error, _ = upstream.status_failure(answer.status_code)
        raise ClaimFailed(
            "upstream", f"{host} answered the claim with HTTP {answer.status_code}.", error=error
        )
    access_url = answer.text.strip()
    try:
        access_of(access_url, settings)
    except ValueError as exc:
        raise ClaimFailed(
            "upstream", f"{host} answered the claim without a usable access URL ({exc}).",
            error=upstream.INVALID_RESPONSE,
        ) from None  # fmt: skip
    return access_url


async def read(
    *,
    base_url: str | None,
    credential: str,
    http: httpx.AsyncClient,
    settings: Settings,
    windows: Windows,
) -> Reading:
    try:
        access = access_of(credential, settings)
    except ValueError as exc:
        raise SourceError(
            "invalid_access_url", f"{exc}: reconnect with a new setup token",
            transient=False, needs_person=True,
        ) from None  # fmt: skip
    reader = _Reader(http, access, settings)
    gathered = await _read_windows(reader, windows)
    return _reading(gathered, windows.until)


class _Reader:
    def __init__(self, http: httpx.AsyncClient, access: Access, settings: Settings):
        self.http, self.access, self.settings = http, access, settings

    async def accounts(self, start: datetime, end: datetime) -> dict:
        """One Account Set for [start, end), pending ones included."""
        params = {
            "start-date": int(start.timestamp()),
            "end-date": int(end.timestamp()),
            "pending": 1,
            "version": 2,
        }

        request = self.http.build_request(
            "GET",
            f"{self.access.root}/accounts",
            params=params,
            headers={"Accept": "application/json"},
        )
        limit = self.settings.SIMPLEFIN_MAX_ANSWER_BYTES
        try:
            # Sent once: every request is one of the day's budget, and the Bridge's 429 or 5xx
            # asked again at once is one more spent on the same trouble. The next sync the
            # budget allows is the retry.
            answer = await _bounded(
                self.http, request, limit, auth=(self.access.username, self.access.password)
            )
        except TooLong:
            raise SourceError(
                upstream.INVALID_RESPONSE,
                f"{self.access.host}'s answer is longer than {limit} bytes "
                "(SIMPLEFIN_MAX_ANSWER_BYTES); it was not read",
                transient=False,
            ) from None
        except RefusedTarget as exc:
            raise SourceError(
                "refused_target", f"{exc}: reconnect with a setup token of a public server",
                transient=False, needs_person=True,
            ) from None  # fmt: skip
        except httpx.TransportError as exc:
            raise SourceError(*upstream.transport_failure(exc), transient=True) from None
        return _document(answer, self.access.host)


def _looks_like_a_page(answer: httpx.Response) -> bool:
    kind = answer.headers.get("content-type", "")
    return "html" in kind or answer.content.lstrip()[:1] == b"<"


def _retry_after(answer: httpx.Response) -> int | None:
    value = answer.headers.get("retry-after", "").strip()
    return int(value) if value.isdigit() else None


def _document(answer: httpx.Response, host: str) -> dict:
    """The Account Set of an answer, or the SourceError its status says."""
    status = answer.status_code
    if status == 402:
        raise SourceError(
            "payment_required",
            f"{WHERE} ({host}) asks for payment: the subscription has lapsed. Renew it at the "
            "Bridge, then sync again",
            transient=False, needs_person=True,
        )  # fmt: skip
    if status in (403, 429) and _looks_like_a_page(answer):
        # The Bridge's front door (a CDN's challenge or rate page), not the protocol's answer.
        raise SourceError(
            f"http_{status}",
            f"{WHERE}'s front door ({host}) turned the request away with a web page "
            f"(HTTP {status}); it usually lets requests through again later",
            transient=True, retry_after=_retry_after(answer),
        )  # fmt: skip
    if status == 403:
        raise SourceError(
            "access_revoked",
            f"{WHERE} ({host}) refused the access URL: it was revoked or disabled there. Make "
            "a new setup token at the Bridge and connect again",
            transient=False, needs_person=True,
        )  # fmt: skip
    if status == 401:
        raise SourceError(
            "access_refused",
            f"{WHERE} ({host}) refused the access URL's credentials. Make a new setup token "
            "at the Bridge and connect again",
            transient=False, needs_person=True,
        )  # fmt: skip
    if status >= 400:
        error, transient = upstream.status_failure(status)
        raise SourceError(
            error, f"{host} answered HTTP {status}", transient=transient,
            retry_after=_retry_after(answer),
        )  # fmt: skip
    try:
        document = json.loads(answer.content, parse_float=Decimal)
    except ValueError:
        raise SourceError(
            upstream.INVALID_RESPONSE,
            f"{host} answered a web page or text instead of SimpleFIN data; it usually passes "
            "later",
            transient=True,
        ) from None
    if not isinstance(document, dict):
        raise shape_error("the Account Set")
    if b"\\u0000" in answer.content:
        # JSON may hold NUL (as \u0000); no text Dashtam stores may (PostgreSQL's text cannot).
        document = _without_nul(document)
    return document


def _without_nul(value):
    """The document with NUL taken out of every string in it (keys too)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


@dataclass(frozen=True)
class Issue:
    """One error an answer lists: a v2 ``errlist`` entry (a code, its message, and the
    connection or account it is about, when it is about one), or a v1 ``errors`` string (no
    scope; a code from what it says)."""

    code: str
    message: str
    conn_id: str | None = None
    account_id: str | None = None

    @property
    def scoped(self) -> bool:
        return bool(self.conn_id or self.account_id)

    @property
    def auth(self) -> bool:
        return self.code.startswith("con.auth")


def _issues(document: dict) -> list[Issue]:
    """v2's ``errlist``; v2 answers' ``errors`` strings it does not hold (where the Bridge puts
    its quota warnings) as warnings; v1's ``errors`` (free text: words of signing in are
    ``con.auth``, anything else ``gen.``)."""
    errlist, errors = document.get("errlist"), document.get("errors")
    strings = [str(e)[:300] for e in errors] if isinstance(errors, list) else []
    if not isinstance(errlist, list):
        return [
            Issue("con.auth" if any(w in e.lower() for w in V1_AUTH_WORDS) else "gen.", e)
            for e in strings
        ]
    found = [
        Issue(
            code=str(e.get("code") or "gen.")[:50],
            message=str(e.get("msg") or e.get("message") or e.get("code") or "an error")[:300],
            conn_id=str(e["conn_id"]) if e.get("conn_id") else None,
            account_id=str(e["account_id"]) if e.get("account_id") else None,
        )
        for e in errlist
        if isinstance(e, dict)
    ]
    said = {i.message for i in found}
    return found + [Issue(WARNING, e) for e in strings if e not in said]


# What a server only warns of, its data still whole: the Bridge's quota warning (v2 answers
# carry it in the deprecated ``errors``), the look-alike's range and quota codes.
WARNING = "gen.warning"
WARNINGS = frozenset({WARNING, "gen.quota", "gen.range"})


def start_of(windows: Windows) -> datetime:
    """Where a read starts: the whole history the first time; after that where the sync left
    off (the earliest point any account needs), but at most one window back. An account quiet
    for months (or one closed at the Bridge) would otherwise make every read walk the history
    again, two requests of a 24-a-day budget; what it costs is that a pending older than a
    window is no longer looked at (it stays pending, as one outside any read window does)."""
    until = windows.until
    if not windows.since:
        return until - timedelta(days=limits.history_days)
    return max(min(min(windows.since.values()), until), until - timedelta(days=limits.window_days))


def requests_for(windows: Windows) -> int:
    """The requests a read of these windows takes (more only for an account new at the
    Bridge, which the budget's allowance then covers or refuses)."""
    days = (windows.until - start_of(windows)).total_seconds() / 86400
    return max(math.ceil(days / limits.window_days), 1)


@dataclass
class _Gathered:
    """What the windows' answers held: each account (its newest answer), its transactions of
    every window, its holdings (the newest's); the errors listed; connection names by id; and
    where the reading started (what its windows covered)."""

    start: datetime
    found: dict = field(default_factory=dict)
    transactions: dict = field(default_factory=dict)
    holdings: dict = field(default_factory=dict)
    issues: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)

    @property
    def troubled(self) -> bool:
        """An error about the whole answer (not one bank's or account's), not a warning: no
        further request is sent."""
        return any(not i.scoped and i.code not in WARNINGS for i in self.issues)


async def _read_windows(reader: _Reader, windows: Windows) -> _Gathered:
    """From ``start_of`` to now, window_days a request; then, for an account the earlier syncs
    never saw (one the person added at the Bridge), the rest of the history back to
    history_days."""
    until = windows.until
    oldest = until - timedelta(days=limits.history_days)
    gathered = _Gathered(start=start_of(windows))
    await _walk(reader, gathered, gathered.start, until)
    if (
        gathered.start > oldest
        and not gathered.troubled
        and any(a not in windows.since for a in gathered.found)
    ):
        await _walk(reader, gathered, oldest, gathered.start, newest=False)
    return gathered


async def _walk(reader, gathered: _Gathered, start, end, *, newest=True) -> None:
    """Newest window first (its balances and holdings are the ones kept); it stops at an
    answer that says the server is in trouble (no more of the budget spent on it)."""
    step = timedelta(days=limits.window_days)
    upper = end
    while upper > start and not gathered.troubled:
        lower = max(upper - step, start)
        _gather(gathered, await reader.accounts(lower, upper), newest=newest)
        gathered.start = min(gathered.start, lower)
        upper = lower


def _gather(gathered: _Gathered, document: dict, *, newest: bool = True) -> None:
    """One answer's accounts, errors and connection names added to what was gathered."""
    for issue in _issues(document):
        gathered.issues.setdefault(issue, None)
    for connection in document.get("connections") or ():
        if isinstance(connection, dict) and connection.get("conn_id"):
            gathered.names[str(connection["conn_id"])] = str(connection.get("name") or "")
    raw_accounts = document.get("accounts")
    if raw_accounts is None and gathered.issues:
        raw_accounts = []  # an answer of errors alone
    if not isinstance(raw_accounts, list):
        raise shape_error("the Account Set's accounts")
    for raw in raw_accounts:
        if not isinstance(raw, dict) or "id" not in raw:
            raise shape_error("an account")
        account_id = str(raw["id"])
        if account_id not in gathered.found:
            gathered.found[account_id] = raw if newest else {**raw, "holdings": []}
            gathered.transactions[account_id], gathered.holdings[account_id] = [], []
            newest_here = True
        else:
            newest_here = False
        gathered.transactions[account_id] += list(raw.get("transactions") or ())
        if newest_here:
            gathered.holdings[account_id] = list(raw.get("holdings") or ())


def _reading(gathered: _Gathered, until: datetime) -> Reading:
    """The accounts that came, each applied; the errors listed as the module says: one about
    a bank (``conn_id``) or an account (``account_id``) is a note naming it, the sync goes on;
    a warning is a note; any other fails the sync (after the accounts are written); and
    ``con.auth`` needs the person only when no account of a working bank came."""
    issues = list(gathered.issues)
    auth_banks = {i.conn_id for i in issues if i.auth and i.conn_id}
    working = [
        raw for raw in gathered.found.values() if str(raw.get("conn_id") or "") not in auth_banks
    ]
    notes, broken, troubles = [], [], []
    for issue in issues:
        where = gathered.names.get(issue.conn_id or "") or issue.conn_id or issue.account_id
        said = issue.message if not where or where in issue.message else f"{where}: {issue.message}"
        said = said.rstrip(". ")
        if issue.auth and not working:
            broken.append(said)
        elif issue.auth:
            notes.append(f"{issue.code}: {said}: {FIX_AT_BRIDGE}")
        elif issue.scoped or issue.code in WARNINGS:
            notes.append(f"{issue.code}: {said}")
        else:
            troubles.append((issue.code, said))
    failure = None
    if broken:
        failure = SourceError(
            "con.auth", f"{'; '.join(broken)}: {FIX_AT_BRIDGE}"[:400], transient=False,
            needs_person=True,
        )  # fmt: skip
    elif troubles:
        failure = SourceError(
            troubles[0][0], "; ".join(said for _, said in troubles)[:400], transient=True
        )
    if failure is not None and not gathered.found:
        raise failure
    # An account whose bank or listing had an error (all of them, after an error about the
    # whole answer) may be listed in part: nothing of ours it does not list is cancelled.
    doubtful = {i.conn_id for i in issues if i.conn_id}, {i.account_id for i in issues}
    whole = not any(not i.scoped for i in issues)
    accounts = []
    for account_id, raw in gathered.found.items():
        sure = whole and str(raw.get("conn_id") or "") not in doubtful[0]
        sure = sure and account_id not in doubtful[1]
        window = (gathered.start, until) if sure else (until, until)
        transactions, holdings = gathered.transactions[account_id], gathered.holdings[account_id]
        accounts.append(_account(raw, transactions, holdings, window))
    return Reading(accounts, notes=tuple(notes), failure=failure, complete=not issues)


def _moment(value, where: str) -> datetime | None:
    """A SimpleFIN time: seconds since the epoch (0 or absent: none)."""
    if value in (None, "", 0, "0"):
        return None
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise SourceError("invalid_response", f"{where} is not a time", transient=False) from None


def _currency(value) -> str:
    """An ISO 4217 code; a custom currency (the spec allows a URL) is XXX, 'no currency'."""
    text = str(value or "USD")
    return text if len(text) == 3 and text.isalpha() and text.isupper() else "XXX"


def _transaction(raw: dict, currency: str) -> TransactionData:
    amount = decimal(raw["amount"], "amount")
    posted = _moment(raw.get("posted"), "posted")
    # Some banks list a pending one with posted 0 and no pending flag.
    pending = bool(raw.get("pending")) or posted is None
    # A pending one with no time at all is dated by the reconciliation, when first seen
    # (sync/transactions.py): "now" here would move it on every read.
    made = _moment(raw.get("transacted_at"), "transacted_at")
    return TransactionData(
        external_id=str(raw["id"]),
        status="pending" if pending else "posted",
        amount=amount,
        description=str(raw.get("description") or raw.get("payee") or ""),
        kind="deposit" if amount > 0 else "withdrawal",
        transacted_at=made,
        posted_at=None if pending else posted,
        currency=currency,
        payee=str(raw["payee"]) if raw.get("payee") else None,
        memo=str(raw["memo"]) if raw.get("memo") else None,
    )


def _holding(raw: dict) -> Holding:
    quantity = decimal(raw.get("shares", 0), "shares")
    market_value = decimal(raw.get("market_value", 0), "market_value")
    return Holding(
        symbol=str(raw.get("symbol") or raw.get("id") or "?"),
        asset_type="unknown",
        description=raw.get("description") or None,
        quantity=quantity,
        # The holding's price now; purchase_price is what was paid.
        price=(market_value / quantity).quantize(Decimal("0.000001")) if quantity else None,
        market_value=market_value,
        cost_basis=maybe_decimal(raw.get("cost_basis"), "cost_basis"),
    )


def _account(raw: dict, transactions: list, holdings: list, window) -> AccountData:
    try:
        currency = _currency(raw.get("currency"))
        held = tuple(_holding(h) for h in holdings if isinstance(h, dict))
        return AccountData(
            external_id=str(raw["id"]),
            # SimpleFIN says no type: holdings make it an investment account.
            account_type="investment" if held else "bank",
            name=str(raw.get("name") or raw["id"])[:200],
            number_last4=None,
            currency=currency,
            balance=Balance(
                current=decimal(raw["balance"], "balance"),
                available=maybe_decimal(raw.get("available-balance"), "available-balance"),
            ),
            positions=held,
            transactions=tuple(_transaction(t, currency) for t in transactions),
            window=window,
        )
    except (KeyError, TypeError, AttributeError):
        raise shape_error("an account") from None
