"""What Plaid's look-alike (sandbox/plaid_lookalike.py) serves: one bank login's data, in the
shapes of Plaid's API (every required field present, the nullable ones as explicit nulls).

A bank login (the username given to the stand-in Link) has a checking account, a credit card
and a brokerage account at "Sandbox Bank"; the bank moves on a ``step`` at a time:

- step 0: 40 days of posted history; pendings on the checking account (coffee, groceries,
  parking) and the card (a ride);
- step 1: the coffee, the groceries and the ride post under NEW ids naming their pending one
  (``pending_transaction_id``: Plaid lists the pending in ``removed``, the posted one in
  ``added``); the parking pending is gone (removed); a new pending appears;
- step 2 on: the posted groceries' amount changes (a tip added: ``modified``) and the new
  pending posts too;
- step 3 on: a posted card charge of 10 days ago is gone (the bank took back a duplicate:
  ``removed``, a posted transaction).

Every item (a Link of that login) sees the same bank under ids of its own: its account ids and
transaction ids are derived from the item, so a new Link of the same login lists everything
again under new ids, as Plaid does. The checking account has a ``persistent_account_id`` (the
same for every item, as Plaid gives for some institutions); the others do not.
"""

import hashlib
import random
from datetime import date, timedelta

CLIENT_ID = "dashtam-plaid-lookalike"
SECRET = "plaid-lookalike-secret"  # noqa: S105 -- the look-alike's own, dev and test only
INSTITUTION = ("ins_dashtam", "Sandbox Bank")
HISTORY_DAYS = 40
ACCOUNTS = (
    # key, name, official name, type, subtype, mask, balance (as Plaid signs it), persistent
    ("chk", "Plaid Checking", "Sandbox Gold Checking", "depository", "checking", "0000",
     "1210.55", True),
    ("card", "Plaid Credit Card", "Sandbox Rewards Visa", "credit", "credit card", "3333",
     "410.22", False),
    ("brk", "Plaid Brokerage", None, "investment", "brokerage", "5555", "5240.10", False),
)  # fmt: skip
MERCHANTS = (
    ("Whole Foods", "FOOD_AND_DRINK", "FOOD_AND_DRINK_GROCERIES"),
    ("Shell", "TRANSPORTATION", "TRANSPORTATION_GAS"),
    ("Netflix", "ENTERTAINMENT", "ENTERTAINMENT_TV_AND_MOVIES"),
    ("City Water", "RENT_AND_UTILITIES", "RENT_AND_UTILITIES_WATER"),
    ("Amazon", "GENERAL_MERCHANDISE", "GENERAL_MERCHANDISE_ONLINE_MARKETPLACES"),
    ("Chipotle", "FOOD_AND_DRINK", "FOOD_AND_DRINK_FAST_FOOD"),
)
# key: (account, merchant, amount (Plaid's sign: > 0 money out), category, step it posts at,
# or None: it never posts, removed at step 1)
PENDINGS = {
    "p-coffee": ("chk", "Blue Bottle Coffee", "4.50", "FOOD_AND_DRINK_COFFEE", 1),
    "p-grocery": ("chk", "Safeway", "62.18", "FOOD_AND_DRINK_GROCERIES", 1),
    "p-parking": ("chk", "City Parking", "3.00", "TRANSPORTATION_PARKING", None),
    "p-ride": ("card", "Uber", "18.75", "TRANSPORTATION_TAXIS_AND_RIDE_SHARES", 1),
    "p-new": ("chk", "Trader Joe's", "41.09", "FOOD_AND_DRINK_GROCERIES", 2),
}
APPEARS = {"p-new": 1}  # pendings that appear after step 0
TIP = "5.00"  # what the posted groceries gain at step 2 (modified)
TAKEN_BACK = ("h-card-10", 3)  # a posted charge removed at that step
SECURITIES = (
    ("sec-vti", "VTI", "Vanguard Total Stock Market ETF", "etf", "245.31"),
    ("sec-bnd", "BND", "Vanguard Total Bond Market ETF", "etf", "72.05"),
)
HOLDINGS = (("sec-vti", "12.5", "2100.00"), ("sec-bnd", "40", "2950.00"))
# (key, security, days ago, type, subtype, quantity, price, fees, amount: Plaid's sign)
INVESTMENT_TRANSACTIONS = (
    ("buy-vti", "sec-vti", 30, "buy", "buy", "2.5", "240.00", "1.00", "601.00"),
    ("sell-bnd", "sec-bnd", 20, "sell", "sell", "-5", "72.00", "0.50", "-359.50"),
    ("div-vti", "sec-vti", 10, "cash", "dividend", "0", "0", None, "-8.12"),
)
# An older history, for a login whose investments come asynchronously (its history beyond the
# first 30 days arrives after Link): a buy of a year ago.
OLDER_INVESTMENT_TRANSACTIONS = (
    ("buy-bnd-old", "sec-bnd", 365, "buy", "buy", "45", "70.00", "1.00", "3151.00"),
)
# How many days a new item's first ("initial") update covers, transactions and investments.
INITIAL_DAYS = 30


def opaque(*parts: str) -> str:
    """An id of Plaid's form (37 characters of letters and digits), derived from ``parts``."""
    digest = hashlib.sha256(":".join(parts).encode()).hexdigest()
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    number = int(digest, 16)
    return "".join(alphabet[(number >> (6 * i)) % 62] for i in range(37))


def account_id(item_id: str, key: str) -> str:
    return opaque("account", item_id, key)


def transaction_id(item_id: str, key: str) -> str:
    return opaque("transaction", item_id, key)


def _null_location() -> dict:
    keys = ("address", "city", "region", "postal_code", "country", "lat", "lon", "store_number")
    return dict.fromkeys(keys)


def _null_payment_meta() -> dict:
    keys = (
        "reference_number", "ppd_id", "payee", "by_order_of", "payer", "payment_method",
        "payment_processor", "reason",
    )  # fmt: skip
    return dict.fromkeys(keys)


def _transaction(item_id, key, account, merchant, amount, detailed, day, pending, pending_of):
    primary = detailed.split("_")[0] if not detailed.startswith("FOOD_AND") else "FOOD_AND_DRINK"
    for known in ("RENT_AND_UTILITIES", "GENERAL_MERCHANDISE", "TRANSPORTATION", "ENTERTAINMENT"):
        if detailed.startswith(known):
            primary = known
    return {
        "account_id": account_id(item_id, account),
        "amount": float(amount),
        "iso_currency_code": "USD",
        "unofficial_currency_code": None,
        "category": None,
        "category_id": None,
        "check_number": None,
        "counterparties": [],
        "date": day.isoformat(),
        "datetime": None,
        "authorized_date": day.isoformat(),
        "authorized_datetime": None,
        "location": _null_location(),
        "name": merchant.upper() + (" POS" if not pending else ""),
        "merchant_name": merchant,
        "merchant_entity_id": None,
        "logo_url": None,
        "website": None,
        "payment_meta": _null_payment_meta(),
        "payment_channel": "in store",
        "pending": pending,
        "pending_transaction_id": transaction_id(item_id, pending_of) if pending_of else None,
        "account_owner": None,
        "transaction_id": transaction_id(item_id, key),
        "transaction_code": None,
        "personal_finance_category": {
            "primary": primary,
            "detailed": detailed,
            "confidence_level": "VERY_HIGH",
            "version": "v2",
        },
    }


def transactions(item_id: str, login: str, step: int, today: date) -> dict[str, dict]:
    """Everything the bank lists for the login at ``step``, by transaction id, as ``item_id``
    sees it."""
    rng = random.Random(f"plaid:{login}")  # noqa: S311 -- sample data
    found: dict[str, dict] = {}
    for account in ("chk", "card"):
        for days_ago in range(HISTORY_DAYS, 2, -2):
            merchant, _, detailed = MERCHANTS[rng.randrange(len(MERCHANTS))]
            amount = f"{rng.randint(300, 9000) / 100:.2f}"
            key = f"h-{account}-{days_ago}"
            if (key, min(step, TAKEN_BACK[1])) == TAKEN_BACK:
                continue
            t = _transaction(
                item_id, key, account, merchant, amount, detailed,
                today - timedelta(days=days_ago), False, None,
            )  # fmt: skip
            found[t["transaction_id"]] = t
        if account == "chk":  # the salary: money in, negative in Plaid's sign
            t = _transaction(
                item_id, "h-chk-salary", "chk", "Acme Payroll", "-2500.00",
                "INCOME_WAGES", today - timedelta(days=15), False, None,
            )  # fmt: skip
            t["personal_finance_category"]["primary"] = "INCOME"
            found[t["transaction_id"]] = t
    for key, (account, merchant, amount, detailed, posts_at) in PENDINGS.items():
        if step < APPEARS.get(key, 0):
            continue
        day = today - timedelta(days=1)
        if posts_at is not None and step >= posts_at:
            if key == "p-grocery" and step >= 2:
                amount = f"{float(amount) + float(TIP):.2f}"
            posted = _transaction(
                item_id, f"posted-{key}", account, merchant, amount, detailed, today, False, key
            )
            posted["authorized_date"] = day.isoformat()
            found[posted["transaction_id"]] = posted
        elif posts_at is not None or step == 0:
            t = _transaction(item_id, key, account, merchant, amount, detailed, day, True, None)
            found[t["transaction_id"]] = t
    return found


def accounts(item_id: str, login: str) -> list[dict]:
    listed = []
    for key, name, official, kind, subtype, mask, balance, persistent in ACCOUNTS:
        account = {
            "account_id": account_id(item_id, key),
            "balances": {
                "available": float(balance) if kind == "depository" else None,
                "current": float(balance),
                "limit": 2000.0 if kind == "credit" else None,
                "iso_currency_code": "USD",
                "unofficial_currency_code": None,
            },
            "mask": mask,
            "name": name,
            "official_name": official,
            "type": kind,
            "subtype": subtype,
        }
        if persistent:
            account["persistent_account_id"] = opaque("persistent", login, key)
        listed.append(account)
    return listed


def item(item_id: str, products: list[str], webhook: str | None, error: dict | None) -> dict:
    return {
        "item_id": item_id,
        "institution_id": INSTITUTION[0],
        "institution_name": INSTITUTION[1],
        "webhook": webhook,
        "auth_method": None,
        "error": error,
        "available_products": sorted({"balance", "identity"} - set(products)),
        "billed_products": sorted(products),
        "products": sorted(products),
        "consented_products": sorted(products),
        "consent_expiration_time": None,
        "update_type": "background",
    }


def securities() -> list[dict]:
    found = []
    for key, ticker, name, kind, close in SECURITIES:
        found.append(
            {
                "security_id": opaque("security", key),
                "isin": None,
                "cusip": None,
                "sedol": None,
                "institution_security_id": None,
                "institution_id": None,
                "proxy_security_id": None,
                "name": name,
                "ticker_symbol": ticker,
                "is_cash_equivalent": False,
                "type": kind,
                "subtype": kind,
                "close_price": float(close),
                "close_price_as_of": None,
                "update_datetime": None,
                "iso_currency_code": "USD",
                "unofficial_currency_code": None,
                "market_identifier_code": "XNAS",
                "sector": None,
                "industry": None,
                "cfi_code": None,
                "figi": None,
                "option_contract": None,
                "fixed_income": None,
            }
        )
    return found


def holdings(item_id: str) -> list[dict]:
    prices = {key: close for key, _, _, _, close in SECURITIES}
    return [
        {
            "account_id": account_id(item_id, "brk"),
            "security_id": opaque("security", key),
            "institution_price": float(prices[key]),
            "institution_price_as_of": None,
            "institution_price_datetime": None,
            "institution_value": round(float(prices[key]) * float(quantity), 2),
            "cost_basis": float(cost),
            "quantity": float(quantity),
            "iso_currency_code": "USD",
            "unofficial_currency_code": None,
            "vested_quantity": None,
            "vested_value": None,
        }
        for key, quantity, cost in HOLDINGS
    ]


def investment_transactions(
    item_id: str, today: date, start: date, end: date, *, older: bool = False
) -> list[dict]:
    """What the bank lists from ``start`` to ``end``; ``older``: with the older history."""
    names = {key: name for key, _, name, _, _ in SECURITIES}
    found = []
    listed = INVESTMENT_TRANSACTIONS + (OLDER_INVESTMENT_TRANSACTIONS if older else ())
    for (
        key,
        security,
        days_ago,
        kind,
        subtype,
        quantity,
        price,
        fees,
        amount,
    ) in listed:
        day = today - timedelta(days=days_ago)
        if not start <= day <= end:
            continue
        found.append(
            {
                "investment_transaction_id": opaque("investment", item_id, key),
                "account_id": account_id(item_id, "brk"),
                "security_id": opaque("security", security),
                "date": day.isoformat(),
                "transaction_datetime": None,
                "name": f"{subtype.upper()} {names[security]}",
                "quantity": float(quantity),
                "amount": float(amount),
                "price": float(price),
                "fees": float(fees) if fees is not None else None,
                "type": kind,
                "subtype": subtype,
                "iso_currency_code": "USD",
                "unofficial_currency_code": None,
                "cancel_transaction_id": None,
            }
        )
    return found


def error(error_type: str, code: str, message: str, status: int) -> dict:
    """A PlaidError body."""
    return {
        "error_type": error_type,
        "error_code": code,
        "error_code_reason": None,
        "error_message": message,
        "display_message": None,
        "request_id": opaque("request", code, message)[:15],
        "causes": [],
        "status": status,
        "documentation_url": f"https://plaid.com/docs/errors/#{code.lower()}",
        "suggested_action": None,
    }
