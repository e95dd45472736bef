"""What the Enable Banking look-alike (sandbox/enablebanking.py) serves: its banks, and each
person's (PSU's) accounts at them, deterministic (seeded by the PSU and the bank), dated from
the day the PSU first consented there.

What changes from one read of an account's transactions to the next is what real banks do to
clients (``step``: how many times the account was read, whatever the consent):

- step 0: a card payment is pending (PDNG), with an ``entry_reference`` of its own;
- step 1 on: it is booked (BOOK) under a NEW ``entry_reference``, its text longer, and a new
  booked entry (a salary) has arrived; nothing else changes.

Banks differ in the balance types they list (ASPSPs return different subsets), and one books
an entry without ``entry_reference`` (some banks give none).
"""

import hashlib
import random
from datetime import date, timedelta
from decimal import Decimal

HISTORY_DAYS = 100
# ``period_days``: the longest period of transactions one listing may span, dates inclusive
# (None: any); ``names_date_from``: its refusal names the earliest date_from it takes;
# ``required_psu_headers``: it allows no unattended read (each must carry the person's headers).
BANKS = (
    {"name": "Sandbox Bank", "country": "FI", "bic": "SANDFIHH", "maximum_consent_validity":
     180 * 86400, "balances": ("CLBD", "ITAV", "XPCD"), "accounts": ("Current", "Savings"),
     "period_days": 90, "names_date_from": False},
    {"name": "Nordic Test Bank", "country": "FI", "bic": "NRDCFIHH", "maximum_consent_validity":
     90 * 86400, "balances": ("ITBD", "CLAV", "OPBD"), "accounts": ("Everyday", "Prepaid"),
     "period_days": None, "names_date_from": False},
    {"name": "Testbank Deutschland", "country": "DE", "bic": "TESTDEFF", "maximum_consent_validity":
     90 * 86400, "balances": ("XPCD", "PRCD"), "accounts": ("Girokonto", "Kreditkarte"),
     "period_days": 60, "names_date_from": True,
     "required_psu_headers": ["Psu-Ip-Address", "Psu-User-Agent"]},
    {"name": "Kartenbank", "country": "DE", "bic": "KARTDEFF", "maximum_consent_validity":
     90 * 86400, "balances": ("CLBD",), "accounts": ("Prepaid",),
     "period_days": 90, "names_date_from": False},
)  # fmt: skip
# Accounts some banks give no identification hash: a card known by its masked number only, and
# one known by nothing but the session's uid.
CARD, UID_ONLY = "Kreditkarte", "Prepaid"
MERCHANTS = ("K-MARKET", "S-MARKET", "HSL TICKET", "ALKO", "R-KIOSKI", "ABC STATION", "VR")
PENDING = ("CAFE REGATTA", "CAFE REGATTA HELSINKI 0423", "-6.40")
SALARY = ("SALARY DECEMBER", "2450.00")


def bank(name: str, country: str) -> dict | None:
    return next((b for b in BANKS if b["name"] == name and b["country"] == country), None)


def listed(bank_: dict) -> dict:
    """A bank as /aspsps lists it."""
    return {
        "name": bank_["name"],
        "country": bank_["country"],
        "logo": f"https://enablebanking.example/brands/{bank_['bic'].lower()}.png",
        "psu_types": ["personal"],
        "auth_methods": [{"name": "redirect", "psu_type": "personal", "approach": "REDIRECT"}],
        "maximum_consent_validity": bank_["maximum_consent_validity"],
        "sandbox": None,
        "beta": False,
        "bic": bank_["bic"],
        "required_psu_headers": list(bank_.get("required_psu_headers", ())),
    }


def identification_hash(psu: str, bank_: dict, n: int) -> str:
    """The same for the same PSU's account at the same bank, whatever the consent."""
    return hashlib.sha256(f"{psu}|{bank_['name']}|{bank_['country']}|{n}".encode()).hexdigest()


def accounts(psu: str, bank_: dict) -> list[dict]:
    """The PSU's accounts at the bank (without their uids, which each session gives)."""
    found = []
    for n, product in enumerate(bank_["accounts"]):
        digits = int(identification_hash(psu, bank_, n)[:12], 16) % 10**10
        iban = f"{bank_['country']}21{digits:010d}{n:04d}"
        ids = [{"identification": iban, "scheme_name": "IBAN"}]
        account_id = {"iban": iban}
        hashes = [identification_hash(psu, bank_, n)]
        if product == CARD:
            ids = [{"identification": f"5355********{digits % 10000:04d}", "scheme_name": "CPAN"}]
            account_id, hashes = {"other": ids[0]}, []
        elif product == UID_ONLY:
            ids, account_id, hashes = [], None, []
        found.append(
            {
                "account_id": account_id,
                "all_account_ids": ids,
                "name": f"{product} account",
                "details": None,
                "usage": "PRIV",
                "cash_account_type": {"Savings": "SVGS", CARD: "CARD"}.get(product, "CACC"),
                "product": product,
                "currency": "EUR",
                "psu_status": "Account Holder",
                "credit_limit": None,
                "identification_hash": hashes[0] if hashes else None,
                "identification_hashes": hashes,
            }
        )
    return found


def refused_period(bank_: dict, date_from: date, date_to: date) -> dict | None:
    """The bank's refusal of a listing's period, as (message, detail); None: served."""
    longest = bank_["period_days"]
    if longest is None or (date_to - date_from).days + 1 <= longest:
        return None
    earliest = date_to - timedelta(days=longest - 1)
    return {
        "message": f"Transactions can be fetched for {longest} days at most",
        "detail": {"date_from": earliest.isoformat()} if bank_["names_date_from"] else None,
    }


def _entry(ref, status, amount: Decimal, text: str, booked: date, *, creditor=None, debtor=None):
    return {
        "entry_reference": ref,
        "merchant_category_code": None,
        "transaction_amount": {"currency": "EUR", "amount": str(abs(amount))},
        "creditor": {"name": creditor} if creditor else None,
        "debtor": {"name": debtor} if debtor else None,
        "credit_debit_indicator": "CRDT" if amount > 0 else "DBIT",
        "status": status,
        "booking_date": booked.isoformat() if status == "BOOK" else None,
        "value_date": booked.isoformat(),
        "transaction_date": booked.isoformat(),
        "remittance_information": [text],
        "bank_transaction_code": {"code": "PMNT", "description": None},
        "transaction_id": None,
    }


def transactions(psu: str, bank_: dict, n: int, anchor: date, step: int) -> list[dict]:
    """The account's entries, oldest first, as the bank lists them at ``step``."""
    key = identification_hash(psu, bank_, n)
    rng = random.Random(key)  # noqa: S311 -- sample data
    found = []
    for days_ago in range(HISTORY_DAYS, 0, -3):
        day = anchor - timedelta(days=days_ago)
        merchant = rng.choice(MERCHANTS)
        amount = -Decimal(rng.randint(150, 9000)) / 100
        ref = f"{key[:10]}-{days_ago:03d}"
        if bank_["name"] == "Nordic Test Bank" and days_ago % 30 == 1:
            ref = None  # this bank books some entries without a reference
        found.append(_entry(ref, "BOOK", amount, merchant, day, creditor=merchant))
    pending_text, booked_text, amount = PENDING
    if step == 0:
        found.append(
            _entry(f"{key[:10]}-pdng", "PDNG", Decimal(amount), pending_text, anchor,
                   creditor="CAFE REGATTA")
        )  # fmt: skip
    else:  # booked under a new reference, the day after, its text longer; a salary arrived
        found.append(
            _entry(f"{key[:10]}-book-1", "BOOK", Decimal(amount), booked_text,
                   anchor + timedelta(days=1), creditor="CAFE REGATTA")
        )  # fmt: skip
        found.append(
            _entry(f"{key[:10]}-salary", "BOOK", Decimal(SALARY[1]), SALARY[0],
                   anchor + timedelta(days=1), debtor="EMPLOYER OY")
        )  # fmt: skip
    return found


def balances(bank_: dict, entries: list[dict], anchor: date) -> list[dict]:
    """The bank's balance types, from its entries (booked ones, and pending for available)."""
    opening = Decimal("3500.00")

    def signed(e):
        value = Decimal(e["transaction_amount"]["amount"])
        return value if e["credit_debit_indicator"] == "CRDT" else -value

    booked = opening + sum((signed(e) for e in entries if e["status"] == "BOOK"), Decimal(0))
    pending = sum((signed(e) for e in entries if e["status"] == "PDNG"), Decimal(0))
    amounts = {
        "CLBD": booked, "ITBD": booked, "XPCD": booked + pending, "OPBD": booked + 10,
        "PRCD": booked - 5, "ITAV": booked + pending, "CLAV": booked + pending,
    }  # fmt: skip
    return [
        {
            "name": t,
            "balance_amount": {"currency": "EUR", "amount": str(amounts[t])},
            "balance_type": t,
            "last_change_date_time": None,
            "reference_date": anchor.isoformat(),
            "last_committed_transaction": None,
        }
        for t in bank_["balances"]
    ]
