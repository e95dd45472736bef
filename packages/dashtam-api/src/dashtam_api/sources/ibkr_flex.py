"""Interactive Brokers' Flex Web Service as a source (provider type ``ibkr``, kind
``api_token``): the person's Flex token and the id of their Activity Flex query, sealed
together as the connection's credential (connections/api_tokens.py checks them once at
connect). A read sends ``SendRequest`` for each period of at most 365 days (IBKR's From/To
date override, ``fd``/``td``), polls ``GetStatement`` while IBKR is still making the statement,
and reads the statement into accounts (by ``accountId``: the same after a new token), their
equity summary, open positions, trades and cash transactions.

The documents: the answers of
``FlexStatementService.SendRequest`` / ``.GetStatement`` (a ``FlexStatementResponse``: a
reference code, or an error code and message) and an Activity Flex statement (a
``FlexQueryResponse``: per ``FlexStatement`` an account, its open positions, trades and cash
transactions, its equity summary). Attributes carry everything; amounts go straight to Decimal.

Parsed with expat, a DOCTYPE or an entity refused as sources/files/camt.py does: the statement
comes from the network and must not expand anything. ``Flex.statement`` sends SendRequest
and polls GetStatement within a bound, at IBKR's pace.

IBKR's statements give dates and times without a zone, in US Eastern time (the time its
reports are kept in, as its statements say): they are read so, then stored in UTC. A date alone
is midnight Eastern (the same calendar day in UTC).
"""

import asyncio
import hashlib
import json
import time as time_
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from xml.parsers import expat
from zoneinfo import ZoneInfo

import httpx

from dashtam_api.sources.protocol import Kind, Limits, Reading
from dashtam_api.sources.shapes import (
    AccountData,
    Balance,
    Holding,
    SourceError,
    TransactionData,
    Windows,
    decimal,
    last4,
    maybe_decimal,
)
from dashtam_core.config import Settings

name = "ibkr"
kind = Kind.API_TOKEN
# IBKR's Flex Web Service guide: one request covers at most 365 days (the From/To override);
# Activity statements change once a day, at close of business. It publishes no daily quota
# (too many requests are error 1018, which waits): no budget is kept.
limits = Limits(history_days=365, window_days=365)
# IBKR's servers, named by the operator (IBKR_FLEX_BASE_URL), not by the person.
person_named_servers = False

EASTERN = ZoneInfo("America/New_York")

# Flex error codes a client acts on (IBKR's Flex Web Service guide).
TOKEN_EXPIRED = "1012"  # noqa: S105 (an error code)
TOKEN_INVALID = "1015"  # noqa: S105 (an error code)
TOO_MANY_REQUESTS = "1018"
IN_PROGRESS = "1019"
# Only the person can fix these (IBKR's Flex Web Service guide's list): the Flex service not
# active (1011), the token bound to another IP address (1013), a query id that is not theirs or
# not an Activity query (1014), an account not valid (1016), a legacy query (1010).
PERSON_CODES = {
    "1010": "make the query again as a (non-legacy) Activity Flex query",
    "1011": "activate the Flex Web Service in the IBKR portal",
    "1013": "the token is restricted to another IP address: make one without that restriction",
    "1014": "check the query id (an Activity Flex query of yours, in the IBKR portal)",
    "1016": "check the accounts the query reads in the IBKR portal",
}

# CashTransaction types (IBKR's names) to Dashtam's transaction kinds; the amount's sign says
# the rest (a deposit in, a withdrawal out).
CASH_KINDS = {
    "dividends": "dividend",
    "payment in lieu of dividends": "dividend",
    "withholding tax": "fee",
    "broker interest received": "interest",
    "broker interest paid": "interest",
    "bond interest received": "interest",
    "bond interest paid": "interest",
    "other fees": "fee",
    "commission adjustments": "fee",
    "deposits/withdrawals": "transfer",
    "deposits & withdrawals": "transfer",
}

ASSET_TYPES = {"STK": "equity", "OPT": "option", "FUT": "future", "BOND": "fixed_income"}


@dataclass(frozen=True)
class Response:
    """A FlexStatementResponse: ``status`` Success/Warn/Fail, with a reference code (and the
    URL to fetch it from) or an error code and its message."""

    status: str
    reference_code: str | None = None
    url: str | None = None
    error_code: str | None = None
    error_message: str | None = None


def _refuse(*_args) -> None:
    raise SourceError(
        "invalid_response", "the Flex answer declares a DOCTYPE or an entity", transient=False
    )


def _elements(document: bytes) -> list[tuple[str, dict, str]]:
    """Every element in document order: (name, attributes, its text)."""
    found: list[tuple[str, dict, list[str]]] = []
    open_: list[int] = []
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse

    def start(name, attributes):
        found.append((name, attributes, []))
        open_.append(len(found) - 1)

    def end(_name):
        open_.pop()

    def characters(data):
        if open_:
            found[open_[-1]][2].append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    try:
        parser.Parse(document, True)
    except expat.ExpatError:
        raise SourceError(
            "invalid_response",
            "the Flex answer is not XML: the Flex query's format must be XML",
            transient=False,
        ) from None
    return [(name, attributes, "".join(text).strip()) for name, attributes, text in found]


def root(document: bytes) -> str:
    elements = _elements(document)
    return elements[0][0] if elements else ""


def response(document: bytes) -> Response:
    texts = {name: text for name, _attributes, text in _elements(document)}
    return Response(
        status=texts.get("Status", ""),
        reference_code=texts.get("ReferenceCode") or None,
        url=texts.get("Url") or None,
        error_code=texts.get("ErrorCode") or None,
        error_message=texts.get("ErrorMessage") or None,
    )


def moment(raw: str | None, where: str) -> datetime | None:
    """A Flex date or date-time: ``20240102``, ``2024-01-02``, with ``;093000``,
    ``;09:30:00`` or ``,09:30:00`` after it (the query's own format settings); US Eastern time,
    answered in UTC."""
    if not raw:
        return None
    text = raw.replace(",", ";").replace(" ", ";")
    day, _, clock = text.partition(";")
    day, clock = day.replace("-", "").replace("/", ""), clock.replace(":", "")
    try:
        parsed = datetime.strptime(day + (clock or "000000"), "%Y%m%d%H%M%S")
    except ValueError:
        raise SourceError("invalid_response", f"{where} is not a date", transient=False) from None
    return parsed.replace(tzinfo=EASTERN).astimezone(UTC)


def _needed(a: dict, names: tuple[str, ...], where: str) -> str:
    """The first of these attributes the line has; a query that left them all out cannot be
    read (a missing id would merge every line into one, a missing amount make it zero)."""
    for name in names:
        if a.get(name):
            return a[name]
    raise SourceError(
        "invalid_response",
        f"the Flex statement's {where} has no {' or '.join(names)}: add it to the Flex query "
        "(IBKR portal, Performance & Reports > Flex Queries)",
        transient=False,
        needs_person=True,
    )


def _trade(a: dict, currency: str) -> TransactionData:
    quantity = decimal(_needed(a, ("quantity",), "Trade"), "Trade.quantity")
    # The quantity is signed already in Flex (a sell negative); buySell says so where not.
    if a.get("buySell", "").upper().startswith("SELL") and quantity > 0:
        quantity = -quantity
    commission = maybe_decimal(a.get("ibCommission") or None, "Trade.ibCommission")
    when = moment(_needed(a, ("dateTime", "tradeDate"), "Trade"), "Trade.dateTime")
    symbol = a.get("symbol") or None
    return TransactionData(
        external_id=f"trade:{_needed(a, ('tradeID', 'transactionID'), 'Trade')}",
        status="posted",
        amount=decimal(_needed(a, ("netCash",), "Trade"), "Trade.netCash"),
        description=f"{a.get('buySell', 'TRADE')} {abs(quantity)} {symbol or ''}".strip(),
        kind="trade",
        transacted_at=when,
        posted_at=when,
        currency=a.get("currency") or currency,
        institution_type=a.get("buySell") or None,
        symbol=symbol,
        asset_type=ASSET_TYPES.get(a.get("assetCategory", ""), "other"),
        quantity=quantity,
        price=maybe_decimal(a.get("tradePrice") or None, "Trade.tradePrice"),
        # IBKR's commission is negative (money out); Dashtam's fees are what was paid.
        fees=-commission if commission is not None else None,
    )


def _cash(a: dict, currency: str) -> TransactionData:
    amount = decimal(_needed(a, ("amount",), "CashTransaction"), "CashTransaction.amount")
    type_ = a.get("type", "")
    kind = CASH_KINDS.get(type_.lower(), "fee" if amount < 0 else "transfer")
    if kind == "transfer":
        kind = "deposit" if amount > 0 else "withdrawal"
    when = moment(
        _needed(a, ("dateTime", "settleDate"), "CashTransaction"), "CashTransaction.dateTime"
    )
    return TransactionData(
        external_id=f"cash:{_needed(a, ('transactionID',), 'CashTransaction')}",
        status="posted",
        amount=amount,
        description=a.get("description") or type_,
        kind=kind,
        transacted_at=when,
        posted_at=when,
        currency=a.get("currency") or currency,
        institution_type=type_ or None,
        symbol=a.get("symbol") or None,
    )


def _position(a: dict, currency: str) -> Holding:
    """A position in the account's (base) currency: a position in another currency is
    converted at the statement's ``fxRateToBase``."""
    rate = Decimal(1)
    if (a.get("currency") or currency) != currency:
        rate = decimal(_needed(a, ("fxRateToBase",), "OpenPosition"), "OpenPosition.fxRateToBase")

    def based(name: str) -> Decimal | None:
        value = maybe_decimal(a.get(name) or None, f"OpenPosition.{name}")
        return value * rate if value is not None else None

    return Holding(
        symbol=_needed(a, ("symbol",), "OpenPosition"),
        asset_type=ASSET_TYPES.get(a.get("assetCategory", ""), "other"),
        quantity=decimal(_needed(a, ("position",), "OpenPosition"), "OpenPosition.position"),
        market_value=rate
        * decimal(_needed(a, ("positionValue",), "OpenPosition"), "OpenPosition.positionValue"),
        description=a.get("description") or None,
        price=based("markPrice"),
        cost_basis=based("costBasisMoney"),
    )


def statement(document: bytes) -> list[AccountData]:
    """The accounts of an Activity Flex statement, one per FlexStatement (its accountId)."""
    accounts: list[AccountData] = []
    current: dict | None = None

    def close() -> None:
        if current is None:
            return
        summary = current["summary"]
        balance = None
        if summary is not None:
            balance = Balance(
                current=decimal(summary.get("total", "0"), "EquitySummary.total"),
                cash=maybe_decimal(summary.get("cash") or None, "EquitySummary.cash"),
            )
        accounts.append(
            AccountData(
                external_id=current["id"],
                account_type="investment",
                name=current["name"],
                number_last4=last4(current["id"]),
                currency=current["currency"],
                balance=balance,
                positions=tuple(current["positions"]),
                transactions=tuple(current["transactions"]),
            )
        )

    for name, a, _text in _elements(document):
        if name == "FlexStatement":
            close()
            if not a.get("accountId"):
                raise SourceError(
                    "invalid_response", "a FlexStatement has no accountId", transient=False
                )
            current = {
                "id": a["accountId"],
                "name": f"Interactive Brokers …{last4(a['accountId'])}",
                "currency": "USD",
                "summary": None,
                "positions": [],
                "transactions": [],
            }
        elif current is None:
            continue
        elif name == "AccountInformation":
            current["currency"] = a.get("currency") or current["currency"]
            # The person's own label for it (acctAlias); never ``name``: that is the holder's.
            if a.get("acctAlias"):
                current["name"] = a["acctAlias"]
        elif name == "EquitySummaryByReportDateInBase":
            # One per report date: the last one is the statement's end.
            current["summary"] = a
        elif name == "OpenPosition" and a.get("levelOfDetail", "SUMMARY") == "SUMMARY":
            current["positions"].append(_position(a, current["currency"]))
        elif name == "Trade" and a.get("levelOfDetail", "EXECUTION") == "EXECUTION":
            current["transactions"].append(_trade(a, current["currency"]))
        elif name == "CashTransaction" and a.get("levelOfDetail", "DETAIL") == "DETAIL":
            current["transactions"].append(_cash(a, current["currency"]))
    close()
    return accounts


def failure(answer: Response) -> SourceError:
    """What a Flex error means for the connection: a token expired or not valid only the
    person can fix (a new Flex token in IBKR's portal); too many requests waits; the rest may
    pass later. The message is IBKR's, never the token."""
    code, message = answer.error_code or "?", answer.error_message or answer.status
    if code in (TOKEN_EXPIRED, TOKEN_INVALID):
        return SourceError(
            "token_refused",
            f"IBKR refused the Flex token ({code}: {message}): make a new Flex token in the IBKR "
            "portal (Performance & Reports > Flex Queries) and reconnect",
            transient=False,
            needs_person=True,
        )
    if code in PERSON_CODES:
        return SourceError(
            "query_refused",
            f"IBKR refused the Flex request ({code}: {message}): {PERSON_CODES[code]}, then "
            "reconnect",
            transient=False,
            needs_person=True,
        )
    if code == TOO_MANY_REQUESTS:
        return SourceError(
            "rate_limited", f"IBKR: {code}: {message}", transient=True, retry_after=60
        )
    return SourceError("flex_error", f"IBKR: {code}: {message}", transient=True)


HEADERS = {"User-Agent": "Dashtam/1"}  # IBKR answers no program that does not say what it is
# "Try again shortly" codes (IBKR's Flex Web Service guide): the statement is asked for again.
RETRY_CODES = {"1001", "1004", "1005", "1006", "1007", "1008", "1009", "1019", "1021"}
IBKR_HOSTS = ".interactivebrokers.com"


# When this process last sent a request with each token (by its digest): a sync right after
# the connect's check, or after another sync, keeps the pace too. Another process's requests
# are not seen: IBKR's 1018 then, which is asked again after a wait.
_LAST_REQUEST: dict[str, float] = {}


class Flex:
    """IBKR's Flex service for one token, at IBKR's pace: one request a second per token (its
    1018 says so), so every request waits until ``pace`` seconds have passed since the one
    before. The waits of a statement being made are counted in paces too (IBKR_FLEX_PACE_SECONDS:
    IBKR's second; a test's look-alike keeps a shorter one, and the client its pace)."""

    def __init__(self, http, base_url: str, token: str, *, pace: float, sleep=None):
        self.http, self.base, self.token, self.pace = http, base_url.rstrip("/"), token, pace
        self.sleep = sleep or asyncio.sleep
        self._key = hashlib.sha256(token.encode()).hexdigest()

    async def _get(self, url: str, params: dict) -> bytes:
        last = _LAST_REQUEST.get(self._key)
        if last is not None:
            gap = self.pace - (time_.monotonic() - last)
            if gap > 0:
                await self.sleep(gap)
        try:
            return await _get(self.http, url, params | {"t": self.token, "v": "3"}, HEADERS)
        finally:
            now = time_.monotonic()
            _LAST_REQUEST[self._key] = now
            if len(_LAST_REQUEST) > 1000:  # only the last minute's matter
                for key, at in list(_LAST_REQUEST.items()):
                    if at < now - 60 * self.pace:
                        del _LAST_REQUEST[key]

    async def send_request(self, query_id: str, period: tuple[date, date] | None = None):
        """SendRequest: the reference code of a statement IBKR starts making (of ``period``,
        first and last day, or the query's own period) and where to fetch it, or the
        SourceError its error code means."""
        params = {"q": query_id}
        if period is not None:
            params |= {"fd": period[0].strftime("%Y%m%d"), "td": period[1].strftime("%Y%m%d")}
        answer = response(await self._get(f"{self.base}/SendRequest", params))
        if answer.error_code or not answer.reference_code:
            raise failure(answer)
        return answer.reference_code, self._statement_url(answer.url)

    def _statement_url(self, given: str | None) -> str:
        """Where IBKR said the statement is (it sends some accounts to another of its hosts),
        if it is IBKR's (or the configured host): never a host a document names otherwise."""
        ours = httpx.URL(self.base)
        if given:
            url = httpx.URL(given)
            if (url.scheme == "https" and url.host.endswith(IBKR_HOSTS)) or (
                url.scheme == ours.scheme and url.host == ours.host
            ):
                return str(url)
        return f"{self.base}/GetStatement"

    async def statement(
        self, query_id: str, *, period: tuple[date, date] | None = None, bound: float = 60
    ) -> bytes:
        """One Activity statement: SendRequest, then GetStatement asked again while IBKR says
        to try again shortly (1019 and its kin; 1018, here or at SendRequest, waits ten paces),
        the waits doubling from
        one pace up to eight; past ``bound`` paces of waiting a transient error (the next sync
        asks again). The token goes only in the query string IBKR asks for, never in an error."""
        waited, wait = 0.0, 1.0
        while True:
            try:
                reference, url = await self.send_request(query_id, period)
                break
            except SourceError as refused:
                # Too many requests (another process's, or a person's script): once more later.
                if refused.error != "rate_limited" or waited + 10.0 > bound:
                    raise
                await self.sleep(9.0 * self.pace)
                waited += 10.0
        while True:
            got = await self._get(url, {"q": reference})
            if root(got) == "FlexQueryResponse":
                return got
            answer = response(got)
            if answer.error_code not in RETRY_CODES | {TOO_MANY_REQUESTS}:
                raise failure(answer)
            pause = 10.0 if answer.error_code == TOO_MANY_REQUESTS else wait
            if waited + pause > bound:
                raise SourceError(
                    "not_ready",
                    f"IBKR was still making the statement after {waited * self.pace:.0f} s "
                    f"({answer.error_code}): asked again next sync",
                    transient=True,
                )
            # The pace itself is kept by _get: wait what is beyond it.
            await self.sleep((pause - 1.0) * self.pace)
            waited, wait = waited + pause, min(wait * 2, 8.0)


async def _get(http, url: str, params: dict, headers: dict) -> bytes:
    """One request; the service down or answering other than 2xx may pass later. The URL (with
    the token in it) is never in the error."""
    try:
        answered = await http.get(url, params=params, headers=headers)
    except httpx.HTTPError as error:
        raise SourceError(
            "unreachable", f"IBKR's Flex service: {type(error).__name__}", transient=True
        ) from None
    if not answered.is_success:
        raise SourceError(
            "flex_error",
            f"IBKR's Flex service answered HTTP {answered.status_code}",
            transient=True,
        )
    return answered.content


def credential(token: str, query_id: str) -> str:
    """What a connection holds (sealed by the vault): the Flex token and its query id."""
    return json.dumps({"token": token, "query_id": query_id})


def _opened(sealed: str) -> tuple[str, str]:
    try:
        held = json.loads(sealed)
        return held["token"], held["query_id"]
    except (ValueError, TypeError, KeyError):
        raise SourceError(
            "invalid_credential",
            "the connection holds no Flex token and query id: reconnect with them",
            transient=False,
            needs_person=True,
        ) from None


async def check(
    *, base_url: str | None, credential: str, http: httpx.AsyncClient, settings: Settings
) -> None:
    """The token and query tried once: yesterday's statement (a day IBKR has closed) asked for
    and read, so what only a sync would find is said at connect (a query in CSV, not an
    Activity query, a field the reader needs left out of it); IBKR's refusal says what is
    wrong with the token."""
    token, query_id = _opened(credential)
    flex = Flex(http, _base(base_url), token, pace=settings.IBKR_FLEX_PACE_SECONDS)
    yesterday = datetime.now(EASTERN).date() - timedelta(days=1)
    document = await flex.statement(query_id, period=(yesterday, yesterday))
    kind = _elements(document)[0][1].get("type")
    if kind != "AF":
        raise SourceError(
            "query_refused",
            f"the Flex query is not an Activity Flex query (its type is {kind!r}): make an "
            "Activity Flex query (Performance & Reports > Flex Queries) and use its id",
            transient=False,
            needs_person=True,
        )
    statement(document)


def requests_for(windows: Windows) -> None:
    """No daily budget is kept: IBKR publishes none (error 1018 says when to wait)."""
    return None


def periods(windows: Windows) -> list[tuple[date, date]]:
    """The statements a read asks for, oldest first, each of at most ``window_days`` days
    (first and last day, in IBKR's Eastern calendar): from where the sync left off (the earliest
    account's point, a day before for the time zone's sake; the whole history the first time),
    never further back than ``history_days``, to today."""
    until = windows.until.astimezone(EASTERN).date()
    floor = until - timedelta(days=limits.history_days - 1)
    start = floor
    if windows.since:
        start = max(
            min(windows.since.values()).astimezone(EASTERN).date() - timedelta(days=1), floor
        )
    found, first = [], min(start, until)
    while first <= until:
        last = min(first + timedelta(days=limits.window_days - 1), until)
        found.append((first, last))
        first = last + timedelta(days=1)
    return found


async def read(
    *,
    base_url: str | None,
    credential: str,
    http: httpx.AsyncClient,
    settings: Settings,
    windows: Windows,
) -> Reading:
    """Every account the query reads, with the transactions of each period's statement; the
    balance and positions are the newest statement's (the one ending today)."""
    token, query_id = _opened(credential)
    flex = Flex(http, _base(base_url), token, pace=settings.IBKR_FLEX_PACE_SECONDS)
    by_id: dict[str, AccountData] = {}
    asked = periods(windows)
    window = (datetime.combine(asked[0][0], time(), EASTERN).astimezone(UTC), windows.until)
    for period in asked:
        document = await flex.statement(query_id, period=period)
        for account in statement(document):
            earlier = by_id.get(account.external_id)
            if earlier is not None:
                account = replace(account, transactions=earlier.transactions + account.transactions)
            by_id[account.external_id] = replace(account, window=window)
    return Reading(accounts=list(by_id.values()))


def _base(base_url: str | None) -> str:
    if not base_url:
        raise SourceError("not_configured", "IBKR_FLEX_BASE_URL is not set", transient=False)
    return base_url
