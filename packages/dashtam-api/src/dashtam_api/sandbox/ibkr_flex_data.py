"""What the IBKR Flex look-alike (sandbox/ibkr_flex.py) serves one IBKR user: an Activity Flex
statement of their two accounts, deterministic (seeded by the user), dated from the day their
first token was made (the anchor, in IBKR's Eastern calendar).

- ``U…01``, an individual account in USD: a deposit, buys of two ETFs every few weeks (one
  sold once), their quarterly dividends with withholding tax, monthly interest and a monthly
  market data fee, over HISTORY_DAYS (more than a Flex request may cover: a first read of a
  year reads 365 days of it, as IBKR's would).
- ``U…02``, a second account in EUR: a deposit and a few buys of one stock.

Each later step (the next day's statement) adds a trade and a dividend to the first account:
the second read of a sync adds only those. Positions and the equity summary follow from the
trades (cash: deposits, net cash of the trades and the cash transactions; total: cash and the
positions at the step's prices). Numbers are Decimals written as IBKR writes them.
"""

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from xml.sax.saxutils import quoteattr

HISTORY_DAYS = 420
SECURITIES = {
    "VTI": ("VANGUARD TOTAL STOCK MKT ETF", Decimal("231.40"), Decimal("0.93")),
    "BND": ("VANGUARD TOTAL BOND MARKET", Decimal("72.10"), Decimal("0.21")),
    "SAP": ("SAP SE", Decimal("182.30"), Decimal("0")),
}


@dataclass
class Account:
    id: str
    currency: str
    alias: str
    trades: list[dict] = field(default_factory=list)
    cash: list[dict] = field(default_factory=list)


def accounts_of(seed: str) -> tuple[str, str]:
    number = random.Random(seed).randint(10000, 99999)  # noqa: S311 -- sample data
    return f"U{number}01", f"U{number}02"


def _price(symbol: str, day: date) -> Decimal:
    """A symbol's close on a day: drifting slowly, the same for everyone."""
    base = SECURITIES[symbol][1]
    wobble = Decimal(random.Random(f"{symbol}:{day.isoformat()}").randint(-300, 300)) / 100  # noqa: S311
    return (base + Decimal(day.toordinal() % 97) / 10 + wobble).quantize(Decimal("0.01"))


def _trade(account: Account, n: int, day: date, symbol: str, quantity: Decimal, at: str) -> None:
    price = _price(symbol, day)
    commission = -max(Decimal("1.00"), (abs(quantity) * Decimal("0.005")).quantize(Decimal("0.01")))
    proceeds = -quantity * price
    account.trades.append(
        {
            "accountId": account.id,
            "currency": account.currency,
            "assetCategory": "STK",
            "symbol": symbol,
            "description": SECURITIES[symbol][0],
            "dateTime": f"{day:%Y%m%d};{at}",
            "tradeDate": f"{day:%Y%m%d}",
            "quantity": str(quantity),
            "tradePrice": str(price),
            "proceeds": str(proceeds),
            "ibCommission": str(commission),
            "ibCommissionCurrency": account.currency,
            "netCash": str(proceeds + commission),
            "buySell": "BUY" if quantity > 0 else "SELL",
            "tradeID": f"{account.id[1:]}{n:05d}",
            "transactionID": f"9{account.id[1:]}{n:05d}",
            "levelOfDetail": "EXECUTION",
        }
    )


def _cash(account: Account, n: int, day: date, type_: str, amount: Decimal, text: str, symbol=""):
    account.cash.append(
        {
            "accountId": account.id,
            "currency": account.currency,
            "type": type_,
            "symbol": symbol,
            "description": text,
            "amount": str(amount),
            "dateTime": f"{day:%Y%m%d}",
            "settleDate": f"{day:%Y%m%d}",
            "transactionID": f"8{account.id[1:]}{n:05d}",
            "levelOfDetail": "DETAIL",
        }
    )


def activity(seed: str, anchor: date, step: int) -> list[Account]:
    """Both accounts' whole activity as of ``step`` (the anchor's statement is step 0)."""
    rng = random.Random(seed)  # noqa: S311 -- sample data
    first, second = (Account(i, c, a) for i, c, a in zip(
        accounts_of(seed), ("USD", "EUR"), ("Individual", "Euro account"), strict=True
    ))  # fmt: skip
    start = anchor - timedelta(days=HISTORY_DAYS)
    _cash(
        first,
        0,
        start,
        "Deposits/Withdrawals",
        Decimal("50000"),
        "CASH RECEIPTS / ELECTRONIC FUND TRANSFERS",
    )
    _cash(
        second,
        0,
        start,
        "Deposits/Withdrawals",
        Decimal("20000"),
        "CASH RECEIPTS / ELECTRONIC FUND TRANSFERS",
    )
    trade_n = cash_n = 1
    for days in range(HISTORY_DAYS - 2, 0, -rng.randint(17, 23)):
        day = anchor - timedelta(days=days)
        for symbol in ("VTI", "BND"):
            _trade(first, trade_n, day, symbol, Decimal(rng.randint(2, 9)), "100501")
            trade_n += 1
        if days % 3 == 0:
            _trade(second, trade_n, day, "SAP", Decimal(rng.randint(1, 4)), "093015")
            trade_n += 1
    sold = anchor - timedelta(days=200)
    _trade(first, trade_n, sold, "BND", Decimal(-5), "153000")
    trade_n += 1
    for days in range(HISTORY_DAYS - 30, 0, -30):
        day = anchor - timedelta(days=days)
        _cash(first, cash_n, day, "Broker Interest Received", Decimal(rng.randint(500, 3000)) / 100,
              f"USD CREDIT INT FOR {day:%b-%Y}".upper())  # fmt: skip
        _cash(first, cash_n + 1, day, "Other Fees", Decimal("-4.50"), "MARKET DATA FEE")
        cash_n += 2
        if days % 90 < 30:
            dividend = Decimal(rng.randint(4000, 9000)) / 100
            _cash(first, cash_n, day, "Dividends", dividend, "VTI CASH DIVIDEND", "VTI")
            _cash(first, cash_n + 1, day, "Withholding Tax", -(dividend * Decimal("0.15")).quantize(
                Decimal("0.01")), "VTI US TAX", "VTI")  # fmt: skip
            cash_n += 2
    for n in range(1, step + 1):
        # The next days' activity: a trade and a dividend each, dated the anchor's day (IBKR's
        # statement of that day, made again with what happened since).
        _trade(first, 90000 + n, anchor, "VTI", Decimal(n), f"1{n % 6}0000")
        _cash(
            first, 90000 + n, anchor, "Dividends", Decimal("1.25") * n, "BND CASH DIVIDEND", "BND"
        )
    return [first, second]


def _day(raw: str) -> date:
    return date(int(raw[:4]), int(raw[4:6]), int(raw[6:8]))


def statement(seed: str, anchor: date, step: int, first: date, last: date, generated: str) -> bytes:
    """The Activity Flex statement of [first, last] (dates inclusive, as IBKR's fd/td are)."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<FlexQueryResponse queryName="Dashtam" type="AF">\n<FlexStatements count="2">\n'
    ]
    for account in activity(seed, anchor, step):
        parts.append(
            f'<FlexStatement accountId="{account.id}" fromDate="{first:%Y%m%d}" '
            f'toDate="{last:%Y%m%d}" period="" whenGenerated="{generated}">\n'
            f'<AccountInformation accountId="{account.id}" currency="{account.currency}" '
            f'acctAlias={quoteattr(account.alias)} name="Sandbox Investor" '
            'accountType="Individual" />\n'
        )
        held: dict[str, list[Decimal]] = {}
        cash = Decimal(0)
        for t in account.trades:
            if _day(t["tradeDate"]) <= last:
                quantity, cost = held.setdefault(t["symbol"], [Decimal(0), Decimal(0)])
                held[t["symbol"]] = [
                    quantity + Decimal(t["quantity"]),
                    cost - Decimal(t["netCash"]),
                ]
                cash += Decimal(t["netCash"])
        cash += sum(
            (Decimal(c["amount"]) for c in account.cash if _day(c["dateTime"]) <= last), Decimal(0)
        )
        positions = []
        for symbol, (quantity, cost) in sorted(held.items()):
            if quantity:
                mark = _price(symbol, last)
                positions.append((symbol, quantity, mark, quantity * mark, cost))
        total = cash + sum((p[3] for p in positions), Decimal(0))
        parts.append(
            "<EquitySummaryInBase>\n"
            f'<EquitySummaryByReportDateInBase accountId="{account.id}" currency="{account.currency}" '
            f'reportDate="{last:%Y%m%d}" cash="{cash}" stock="{total - cash}" total="{total}" />\n'
            "</EquitySummaryInBase>\n<OpenPositions>\n"
        )
        for symbol, quantity, mark, value, cost in positions:
            parts.append(
                f'<OpenPosition accountId="{account.id}" currency="{account.currency}" '
                f'assetCategory="STK" symbol="{symbol}" description={quoteattr(SECURITIES[symbol][0])} '
                f'reportDate="{last:%Y%m%d}" position="{quantity}" markPrice="{mark}" fxRateToBase="1" '
                f'positionValue="{value}" costBasisMoney="{cost}" levelOfDetail="SUMMARY" />\n'
            )
        parts.append("</OpenPositions>\n<Trades>\n")
        for t in account.trades:
            if first <= _day(t["tradeDate"]) <= last:
                parts.append(_element("Trade", t))
        parts.append("</Trades>\n<CashTransactions>\n")
        for c in account.cash:
            if first <= _day(c["dateTime"]) <= last:
                parts.append(_element("CashTransaction", c))
                # IBKR's SUMMARY lines repeat the details (a query with both): never counted.
                if c["type"] == "Dividends":
                    parts.append(_element("CashTransaction", c | {
                        "levelOfDetail": "SUMMARY", "transactionID": ""}))  # fmt: skip
        parts.append("</CashTransactions>\n</FlexStatement>\n")
    parts.append("</FlexStatements>\n</FlexQueryResponse>\n")
    return "".join(parts).encode()


def _element(name: str, attributes: dict) -> str:
    return f"<{name} " + " ".join(f"{k}={quoteattr(v)}" for k, v in attributes.items()) + " />\n"
