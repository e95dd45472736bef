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
comes from the network and must not expand anything. ``fetch_statement`` sends SendRequest
and polls GetStatement within a bound.

IBKR's statements give dates and times without a zone, in US Eastern time (the time its
reports are kept in, as its statements say): they are read so, then stored in UTC. A date alone
is midnight Eastern (the same calendar day in UTC).
"""

import asyncio
import json
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
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
            "invalid_response", "the Flex answer is not XML", transient=False
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


def _trade(a: dict) -> TransactionData:
    quantity = decimal(a.get("quantity", "0"), "Trade.quantity")
    # The quantity is signed already in Flex (a sell negative); buySell says so where not.
    if a.get("buySell", "").upper().startswith("SELL") and quantity > 0:
        quantity = -quantity
    commission = maybe_decimal(a.get("ibCommission") or None, "Trade.ibCommission")
    when = moment(a.get("dateTime") or a.get("tradeDate"), "Trade.dateTime")
    symbol = a.get("symbol") or None
    return TransactionData(
        external_id=f"trade:{a.get('tradeID') or a.get('transactionID')}",
        status="posted",
        amount=decimal(a.get("netCash", "0"), "Trade.netCash"),
        description=f"{a.get('buySell', 'TRADE')} {abs(quantity)} {symbol or ''}".strip(),
        kind="trade",
        transacted_at=when,
        posted_at=when,
        currency=a.get("currency") or "USD",
        institution_type=a.get("buySell") or None,
        symbol=symbol,
        asset_type=ASSET_TYPES.get(a.get("assetCategory", ""), "other"),
        quantity=quantity,
        price=maybe_decimal(a.get("tradePrice") or None, "Trade.tradePrice"),
        # IBKR's commission is negative (money out); Dashtam's fees are what was paid.
        fees=-commission if commission is not None else None,
    )


def _cash(a: dict) -> TransactionData:
    amount = decimal(a.get("amount", "0"), "CashTransaction.amount")
    type_ = a.get("type", "")
    kind = CASH_KINDS.get(type_.lower(), "fee" if amount < 0 else "transfer")
    if kind == "transfer":
        kind = "deposit" if amount > 0 else "withdrawal"
    when = moment(a.get("dateTime") or a.get("settleDate"), "CashTransaction.dateTime")
    return TransactionData(
        external_id=f"cash:{a.get('transactionID')}",
        status="posted",
        amount=amount,
        description=a.get("description") or type_,
        kind=kind,
        transacted_at=when,
        posted_at=when,
        currency=a.get("currency") or "USD",
        institution_type=type_ or None,
        symbol=a.get("symbol") or None,
    )


def _position(a: dict) -> Holding:
    return Holding(
        symbol=a.get("symbol", ""),
        asset_type=ASSET_TYPES.get(a.get("assetCategory", ""), "other"),
        quantity=decimal(a.get("position", "0"), "OpenPosition.position"),
        market_value=decimal(a.get("positionValue", "0"), "OpenPosition.positionValue"),
        description=a.get("description") or None,
        price=maybe_decimal(a.get("markPrice") or None, "OpenPosition.markPrice"),
        cost_basis=maybe_decimal(a.get("costBasisMoney") or None, "OpenPosition.costBasisMoney"),
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
            if a.get("accountAlias") or a.get("name"):
                current["name"] = a.get("accountAlias") or a["name"]
        elif name == "EquitySummaryByReportDateInBase":
            # One per report date: the last one is the statement's end.
            current["summary"] = a
        elif name == "OpenPosition" and a.get("levelOfDetail", "SUMMARY") == "SUMMARY":
            current["positions"].append(_position(a))
        elif name == "Trade" and a.get("levelOfDetail", "EXECUTION") == "EXECUTION":
            current["transactions"].append(_trade(a))
        elif name == "CashTransaction" and a.get("levelOfDetail", "DETAIL") == "DETAIL":
            current["transactions"].append(_cash(a))
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


async def send_request(
    http, base_url: str, token: str, query_id: str, period: tuple[date, date] | None = None
) -> str:
    """SendRequest: the reference code of a statement IBKR starts making (of ``period``, first
    and last day, or the query's own period), or the SourceError its error code means."""
    params = {"t": token, "q": query_id, "v": "3"}
    if period is not None:
        params |= {"fd": period[0].strftime("%Y%m%d"), "td": period[1].strftime("%Y%m%d")}
    answer = response(await _get(http, f"{base_url.rstrip('/')}/SendRequest", params, HEADERS))
    if answer.error_code or not answer.reference_code:
        raise failure(answer)
    return answer.reference_code


async def fetch_statement(
    http,
    base_url: str,
    token: str,
    query_id: str,
    *,
    period: tuple[date, date] | None = None,
    tries: int = 7,
    wait: float = 0.25,
    sleep=None,
) -> bytes:
    """One Activity statement: SendRequest (a reference code), then GetStatement asked again
    while IBKR is still making it (1019), at most ``tries`` times, the waits doubling from
    ``wait`` seconds (about 16 s in all by default); past that a transient error (the next sync
    asks again). The token goes only in the query string IBKR asks for, never in an error."""
    sleep = sleep or asyncio.sleep
    base = base_url.rstrip("/")
    reference = await send_request(http, base, token, query_id, period)
    for attempt in range(tries):
        got = await _get(
            http,
            f"{base}/GetStatement",
            {"t": token, "q": reference, "v": "3"},
            HEADERS,
        )
        if root(got) == "FlexQueryResponse":
            return got
        waiting = response(got)
        if waiting.error_code != IN_PROGRESS:
            raise failure(waiting)
        if attempt + 1 < tries:
            await sleep(wait * 2**attempt)
    raise SourceError(
        "not_ready",
        f"IBKR was still making the statement after {tries} tries (1019): asked again next sync",
        transient=True,
    )


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


async def check(*, base_url: str | None, credential: str, http: httpx.AsyncClient) -> None:
    """The token and query id tried once (a SendRequest for the query's own period): IBKR
    answers a reference code, or the error that says what is wrong with them."""
    token, query_id = _opened(credential)
    await send_request(http, _base(base_url), token, query_id)


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
    base = _base(base_url)
    by_id: dict[str, AccountData] = {}
    asked = periods(windows)
    window = (datetime.combine(asked[0][0], time(), EASTERN).astimezone(UTC), windows.until)
    for period in asked:
        document = await fetch_statement(http, base, token, query_id, period=period)
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
