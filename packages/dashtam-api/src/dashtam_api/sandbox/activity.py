"""The sandbox account holder's transactions: deterministic, realistic, moving with every sync.

The sandbox has a clock per account holder: every listing of the accounts is step n (1, 2, ...,
the same step the balances follow, sandbox/data.py), and each step is one day of activity. Step
k's calendar day is recorded when the step is first reached (``store.count_sync``): it starts
30 days behind the real date and moves a day per step until it meets today, so the days never
lie in the future and never move once seen. Before step 1 lies a history of 90 days, all
settled by the first listing except the last purchases.

What happens on day k (a function of k alone, so every listing agrees with every other):

- Everyday Checking: a card purchase every day, pending for ``lag(k)`` steps and then posted:
  with the pending one's id on it (``pending_id``), without (a new id, as SimpleFIN-style banks
  do), or with a tip on top (a restaurant; linked); a payroll deposit every 14 days, a transfer
  to savings every 7, a hotel hold every 10 that is never charged (the pending vanishes: it is
  cancelled), two identical coffees every 9 (two real purchases: never one), a monthly fee and
  a month's interest.
- Brokerage: a dividend, a buy with a commission, a sell with a fee, and a deposit.

Amounts are Decimal, signed (money into the account positive), and leave as strings.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from dashtam_api.sandbox.data import ACCOUNT_IDS, BROKERAGE, CHECKING, CURRENCY

HISTORY_DAYS = 90
BEHIND_DAYS = 30

MERCHANTS = (
    # (payee, description while pending, description once posted, amount spent)
    ("Blue Bottle Coffee", "BLUE BOTTLE COFFEE", "BLUE BOTTLE COFFEE #0423 OAKLAND CA", "4.75"),
    ("Whole Foods", "WHOLE FOODS MKT", "WHOLE FOODS MKT #10234 BERKELEY CA", "86.42"),
    ("Chez Panisse", "CHEZ PANISSE", "CHEZ PANISSE BERKELEY CA", "64.00"),
    ("Shell", "SHELL OIL 5744", "SHELL OIL 57444190 BERKELEY CA", "52.18"),
    ("Amazon", "AMZN MKTP US", "AMZN MKTP US*2K4L19 AMZN.COM/BILL WA", "23.99"),
    ("Trader Joe's", "TRADER JOE'S #231", "TRADER JOE'S #231 OAKLAND CA", "41.07"),
    ("Netflix", "NETFLIX.COM", "NETFLIX.COM LOS GATOS CA", "15.49"),
)
TIP = Decimal("1.18")  # a restaurant's pending amount grows by the tip when it posts
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Activity:
    """One real transaction over its life at the institution."""

    account: str
    key: str  # stable per real transaction: ids are made from it
    step: int  # the day it happened
    amount: Decimal
    description: str
    kind: str
    payee: str | None = None
    memo: str | None = None
    # Card purchases: steps it stays pending (0: posts at once); how it posts.
    lag: int = 0
    posting: str = "linked"  # linked | unlinked | tipped | cancelled
    posted_description: str | None = None
    symbol: str | None = None
    asset_type: str | None = None
    quantity: Decimal | None = None
    price: Decimal | None = None
    fees: Decimal | None = None


def _card(k: int) -> list[Activity]:
    payee, pending_text, posted_text, amount = MERCHANTS[k % len(MERCHANTS)]
    posting = ("linked", "unlinked", "tipped", "unlinked")[k % 4]
    if posting == "tipped":
        payee, pending_text, posted_text, amount = MERCHANTS[2]
    found = [
        Activity(
            CHECKING,
            f"card-{k}",
            k,
            -Decimal(amount),
            pending_text,
            "card",
            payee=payee,
            lag=1 if k % 2 else 2,
            posting=posting,
            posted_description=posted_text,
        )
    ]
    if k % 10 == 5:
        found.append(
            Activity(
                CHECKING,
                f"hold-{k}",
                k,
                Decimal("-150.00"),
                "HILTON HOTELS AUTH HOLD",
                "card",
                payee="Hilton",
                lag=1,
                posting="cancelled",
            )
        )
    if k % 9 == 4:
        for slot in (1, 2):  # two coffees, same place, same amount, same day
            found.append(
                Activity(
                    CHECKING,
                    f"coffee-{k}-{slot}",
                    k,
                    Decimal("-5.25"),
                    "STARBUCKS STORE 1234",
                    "card",
                    payee="Starbucks",
                    lag=1,
                    posting="unlinked",
                    posted_description="STARBUCKS STORE 1234 SEATTLE WA",
                )
            )
    return found


# (every n days, on day k % n, account, key, amount, description, kind, details)
RECURRING = (
    (14, 0, CHECKING, "payroll", "2650.00", "ACME CORP PAYROLL", "deposit", {"payee": "Acme Corp"}),
    (7, 3, CHECKING, "transfer", "-500.00", "ONLINE TRANSFER TO SAVINGS XXXX4410", "transfer",
     {"memo": "Monthly savings"}),
    (30, 1, CHECKING, "fee", "-12.00", "MONTHLY SERVICE FEE", "fee", {}),
    (30, 28, CHECKING, "interest", "0.42", "INTEREST PAYMENT", "interest", {}),
    (30, 15, BROKERAGE, "dividend", "45.30", "VANGUARD TOTAL STOCK MARKET ETF DIVIDEND", "dividend",
     {"symbol": "VTI", "asset_type": "etf"}),
    (45, 7, BROKERAGE, "deposit", "1000.00", "ACH DEPOSIT FROM CHECKING", "deposit", {}),
)  # fmt: skip
# (every n days, on day k % n, key, symbol, quantity (negative: sold), price, fees)
TRADES = (
    (30, 16, "buy", "BND", "10", "73.00", "4.95"),
    (30, 20, "sell", "VTI", "-2", "270.00", "0.02"),
)


def _trade(k: int, key: str, symbol: str, quantity: str, price: str, fees: str) -> Activity:
    """A trade's cash: what the shares cost (or brought) less the fees, signed."""
    shares, each, cost = Decimal(quantity), Decimal(price), Decimal(fees)
    verb = "Bought" if shares > 0 else "Sold"
    return Activity(
        BROKERAGE,
        f"{key}-{k}",
        k,
        -(shares * each) - cost,
        f"{verb} {abs(shares)} {symbol} @ {price}",
        "trade",
        symbol=symbol,
        asset_type="etf",
        quantity=shares,
        price=each,
        fees=cost,
    )


def day(k: int) -> list[Activity]:
    """Everything that happened on day k, in both accounts."""
    found = _card(k)
    for every, on, account, key, amount, description, kind, details in RECURRING:
        if k % every == on:
            found.append(
                Activity(account, f"{key}-{k}", k, Decimal(amount), description, kind, **details)
            )
    for every, on, *trade in TRADES:
        if k % every == on:
            found.append(_trade(k, *trade))
    return found


def _at(day_: date, k: int) -> str:
    """A time of day that differs between days (a real feed is not all midnights)."""
    moment = datetime.combine(day_, time(9, 0), tzinfo=UTC) + timedelta(minutes=(k * 37) % 600)
    return moment.isoformat().replace("+00:00", "Z")


def listing(account: str, n: int, day_of) -> list[dict]:
    """The account's transactions as the institution lists them at step n, oldest first;
    ``day_of(k)`` is step k's calendar day."""
    if account not in ACCOUNT_IDS:
        return []
    listed = []
    for k in range(1 - HISTORY_DAYS, n + 1):
        for activity in day(k):
            if activity.account != account:
                continue
            entry = _entry(activity, n, day_of)
            if entry is not None:
                listed.append(entry)
    return listed


def _entry(a: Activity, n: int, day_of) -> dict | None:
    pending_id = f"SBX-{a.key}"
    made = _at(day_of(a.step), a.step)
    base = {
        "currency": CURRENCY,
        "payee": a.payee,
        "memo": a.memo,
        "type": a.kind,
        "symbol": a.symbol,
        "asset_type": a.asset_type,
        "quantity": a.quantity,
        "price": a.price,
        "fees": a.fees,
        "transacted_at": made,
    }
    if a.lag and n < a.step + a.lag:
        return {
            **base,
            "id": pending_id,
            "status": "pending",
            "posted": None,
            "amount": a.amount,
            "description": a.description,
            "pending_id": None,
        }
    if a.posting == "cancelled":
        return None  # the hold was released: the institution lists nothing any more
    posted = _at(day_of(a.step + a.lag), a.step + a.lag) if a.lag else made
    amount = a.amount
    if a.posting == "tipped":
        amount = (a.amount * TIP).quantize(CENT)
    linked = a.posting in ("linked", "tipped")
    return {
        **base,
        "id": pending_id if a.lag == 0 else f"SBX-{a.key}-P",
        "status": "posted",
        "posted": posted,
        "amount": amount,
        "description": a.posted_description or a.description,
        "pending_id": pending_id if a.lag and linked else None,
    }
