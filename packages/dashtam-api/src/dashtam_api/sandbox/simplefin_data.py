"""What the SimpleFIN Bridge look-alike (sandbox/simplefin_bridge.py) serves one Bridge user:
deterministic (seeded by the user), dated from the moment their setup token was made.

Two bank connections at the Bridge: a credit union (checking, credit card) and a brokerage (one
account with holdings). What changes between reads is what real banks do to SimpleFIN clients:

- step 0: the checking account and the card each have pendings (posted 0, ``pending: true``);
- step 1 on (the Bridge's next refresh): each of those pendings has posted under a NEW id, with
  a longer description and no link to the pending one; one pending is gone (cancelled at the
  bank); a new pending appears; and the checking account's transactions of 3 to 9 days before
  the anchor are re-issued under new ids (once: from then on those new ids stay).
"""

import random
from datetime import datetime, timedelta
from decimal import Decimal

HISTORY_DAYS = 120
CONNECTIONS = (
    {"conn_id": "CON-CU", "name": "Sandbox Credit Union", "org_id": "sandbox-cu",
     "org_url": "https://cu.sandbox.example", "sfin_url": "https://cu.sandbox.example/simplefin"},
    {"conn_id": "CON-BRK", "name": "Sandbox Brokerage", "org_id": "sandbox-brk",
     "org_url": "https://brokerage.sandbox.example", "sfin_url": "https://brokerage.sandbox.example"},
)  # fmt: skip
ACCOUNTS = (
    {"id": "ACT-CHK", "name": "Everyday Checking", "conn_id": "CON-CU", "opening": "2450.00"},
    {"id": "ACT-CARD", "name": "Rewards Visa", "conn_id": "CON-CU", "opening": "-312.40"},
    {"id": "ACT-BRK", "name": "Individual Brokerage", "conn_id": "CON-BRK", "opening": "1200.00"},
)
MERCHANTS = (
    "WHOLE FOODS MARKET", "SHELL OIL", "NETFLIX.COM", "CITY WATER UTIL", "AMAZON MKTPLACE",
    "CHIPOTLE", "TARGET", "LYFT RIDE", "COSTCO WHSE", "SPOTIFY USA",
)  # fmt: skip
# (description while pending, description once posted, amount) for the step-0 pendings.
PENDINGS = {
    "ACT-CHK": (
        ("BLUE BOTTLE COFFEE", "BLUE BOTTLE COFFEE #0423 OAKLAND CA", "-4.50"),
        ("SAFEWAY", "SAFEWAY STORE 1187 BERKELEY CA", "-62.18"),
        ("PARKING METER", None, "-3.00"),  # cancelled at the bank: never posts
    ),
    "ACT-CARD": (("UBER TRIP", "UBER *TRIP HELP.UBER.COM", "-18.75"),),
}
NEW_PENDING = ("TRADER JOE'S", "-41.09")
REISSUED_DAYS = (3, 9)  # the checking account's block re-issued under new ids at step 1
HOLDINGS = (
    ("VTI", "Vanguard Total Stock Market ETF", "12.5", "245.31", "2100.00"),
    ("BND", "Vanguard Total Bond Market ETF", "40", "72.05", "2950.00"),
)


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _posted(account_id: str, seed: str, anchor: datetime) -> list[dict]:
    """The account's posted history: a few a day, HISTORY_DAYS back from the anchor."""
    rng = random.Random(f"{seed}:{account_id}")  # noqa: S311 -- sample data
    found = []
    for days_ago in range(HISTORY_DAYS, 0, -1):
        for n in range(rng.randint(0, 3)):
            at = anchor - timedelta(days=days_ago, hours=rng.randint(1, 20))
            if account_id == "ACT-BRK":
                description, amount = "DIVIDEND RECEIVED", Decimal(rng.randint(100, 5000)) / 100
                if rng.random() < 0.7:
                    continue
            else:
                description = rng.choice(MERCHANTS)
                amount = -Decimal(rng.randint(150, 25000)) / 100
                if account_id == "ACT-CARD" and rng.random() < 0.05:
                    description, amount = (
                        "PAYMENT THANK YOU",
                        Decimal(rng.randint(20000, 90000)) / 100,
                    )
                if account_id == "ACT-CHK" and rng.random() < 0.1:
                    description, amount = (
                        "PAYROLL ACME CORP",
                        Decimal(rng.randint(150000, 300000)) / 100,
                    )
            found.append(
                {
                    "id": f"{account_id}-{days_ago:03d}-{n}",
                    "posted": _epoch(at),
                    "amount": str(amount),
                    "description": description,
                    "payee": description.title(),
                    "memo": "",
                    "transacted_at": _epoch(at - timedelta(hours=2)),
                    "days_ago": days_ago,
                }
            )
    return found


def transactions(account_id: str, seed: str, anchor: datetime, step: int) -> list[dict]:
    """The account's transactions as the Bridge lists them at ``step`` (pending ones too)."""
    listed = _posted(account_id, seed, anchor)
    if step >= 1 and account_id == "ACT-CHK":
        low, high = REISSUED_DAYS
        for t in listed:
            if low <= t["days_ago"] <= high:
                t["id"] = f"{t['id']}-R"  # the bank re-issued them: same content, new ids
    made = anchor - timedelta(days=1)
    for n, (pending, posted, amount) in enumerate(PENDINGS.get(account_id, ())):
        if step == 0:
            listed.append(
                {"id": f"{account_id}-PEND-{n}", "posted": 0, "amount": amount,
                 "description": pending, "payee": "", "memo": "",
                 "transacted_at": _epoch(made), "pending": True}
            )  # fmt: skip
        elif posted is not None:
            listed.append(
                {"id": f"{account_id}-POST-{n}", "posted": _epoch(anchor), "amount": amount,
                 "description": posted, "payee": "", "memo": "", "transacted_at": _epoch(made)}
            )  # fmt: skip
    if step >= 1 and account_id == "ACT-CHK":
        listed.append(
            {"id": f"{account_id}-PEND-NEW", "posted": 0, "amount": NEW_PENDING[1],
             "description": NEW_PENDING[0], "payee": "", "memo": "",
             "transacted_at": _epoch(anchor), "pending": True}
        )  # fmt: skip
    for t in listed:
        t.pop("days_ago", None)
    return listed


def holdings(account_id: str, anchor: datetime) -> list[dict]:
    if account_id != "ACT-BRK":
        return []
    return [
        {
            "id": f"HOLD-{symbol}",
            "created": _epoch(anchor),
            "currency": "USD",
            "symbol": symbol,
            "description": description,
            "shares": shares,
            "market_value": str(Decimal(shares) * Decimal(price)),
            "purchase_price": str((Decimal(cost) / Decimal(shares)).quantize(Decimal("0.01"))),
            "cost_basis": cost,
        }
        for symbol, description, shares, price, cost in HOLDINGS
    ]


def balance(account_id: str, listed: list[dict]) -> Decimal:
    """The opening balance and every posted transaction listed (a fixed sum per step)."""
    opening = Decimal(next(a["opening"] for a in ACCOUNTS if a["id"] == account_id))
    return opening + sum((Decimal(t["amount"]) for t in listed if t["posted"]), Decimal(0))
