"""Interactive Brokers' Flex Web Service documents, parsed (issue 36): the answers of
``FlexStatementService.SendRequest`` / ``.GetStatement`` (a ``FlexStatementResponse``: a
reference code, or an error code and message) and an Activity Flex statement (a
``FlexQueryResponse``: per ``FlexStatement`` an account, its open positions, trades and cash
transactions, its equity summary). Attributes carry everything; amounts go straight to Decimal.

Parsed with expat, a DOCTYPE or an entity refused as sources/files/camt.py does: the statement
comes from the network and must not expand anything. ``fetch_statement`` sends SendRequest
and polls GetStatement within a bound.

Not yet a source in ``SOURCES`` nor a provider type: the connect (a token and a query id,
sealed), the Source wrapper, the look-alike and the API tests come next (issue 36). Open
question for that step: IBKR's timestamps are taken as UTC here; they are probably the
account's (US Eastern) time.
"""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.parsers import expat

import httpx

from dashtam_api.sources.shapes import (
    AccountData,
    Balance,
    Holding,
    SourceError,
    TransactionData,
    decimal,
    last4,
    maybe_decimal,
)

# Flex error codes a client acts on (IBKR's Flex Web Service guide).
TOKEN_EXPIRED = "1012"  # noqa: S105 (an error code)
TOKEN_INVALID = "1015"  # noqa: S105 (an error code)
TOO_MANY_REQUESTS = "1018"
IN_PROGRESS = "1019"

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
    ``;09:30:00`` or ``,09:30:00`` after it (the query's own format settings); taken as UTC."""
    if not raw:
        return None
    text = raw.replace(",", ";").replace(" ", ";")
    day, _, clock = text.partition(";")
    day, clock = day.replace("-", "").replace("/", ""), clock.replace(":", "")
    try:
        parsed = datetime.strptime(day + (clock or "000000"), "%Y%m%d%H%M%S")
    except ValueError:
        raise SourceError("invalid_response", f"{where} is not a date", transient=False) from None
    return parsed.replace(tzinfo=UTC)


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
    if code == TOO_MANY_REQUESTS:
        return SourceError(
            "rate_limited", f"IBKR: {code}: {message}", transient=True, retry_after=60
        )
    return SourceError("flex_error", f"IBKR: {code}: {message}", transient=True)


async def fetch_statement(
    http, base_url: str, token: str, query_id: str, *, tries: int = 5, wait: float = 2.0, sleep=None
) -> bytes:
    """One Activity statement: SendRequest (a reference code), then GetStatement asked again
    while IBKR is still making it (1019), at most ``tries`` times ``wait`` seconds apart; past
    that a transient error (the next sync asks again). IBKR wants a User-Agent; the token goes
    only in the query string it asks for, never in an error."""
    sleep = sleep or asyncio.sleep
    headers = {"User-Agent": "Dashtam/1"}
    base = base_url.rstrip("/")
    sent = await _get(http, f"{base}/SendRequest", {"t": token, "q": query_id, "v": "3"}, headers)
    answer = response(sent)
    if answer.error_code or not answer.reference_code:
        raise failure(answer)
    for attempt in range(tries):
        got = await _get(
            http,
            f"{base}/GetStatement",
            {"t": token, "q": answer.reference_code, "v": "3"},
            headers,
        )
        if root(got) == "FlexQueryResponse":
            return got
        waiting = response(got)
        if waiting.error_code != IN_PROGRESS:
            raise failure(waiting)
        if attempt + 1 < tries:
            await sleep(wait)
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
