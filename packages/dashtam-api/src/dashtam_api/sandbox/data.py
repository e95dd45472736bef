"""The sandbox account holder's money: deterministic, and different at every sync.

Each listing of the accounts (``GET /sandbox/api/accounts``) is step n = 1, 2, 3, ... for the
account holder behind the token, and everything is a function of n (docs/providers.md):

- Everyday Checking: balance 2450.17 + 10.25 * (n - 1), available 50.00 less.
- Brokerage: VTI quantity 120 + 0.125 * (n - 1) (a dividend reinvested each step) at
  267.92 + 0.50 * (n - 1); BND 220 at 73.00 - 0.05 * (n - 1); cash 1520.33; the balance is the
  cash plus the positions' market values.

Market values, cost bases and balances are rounded to the cent (half to even), as a bank
shows them. Every amount is a Decimal and leaves as a string: exact, never a float.
"""

from decimal import ROUND_HALF_EVEN, Decimal

CHECKING = "SBX-CHK-001"
BROKERAGE = "SBX-BRK-002"
ACCOUNT_IDS = (CHECKING, BROKERAGE)
CURRENCY = "USD"
CENT = Decimal("0.01")


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


def _positions(n: int) -> list[dict]:
    step = Decimal(n - 1)
    holdings = [
        (
            "VTI",
            "Vanguard Total Stock Market ETF",
            Decimal("120") + Decimal("0.125") * step,
            Decimal("267.92") + Decimal("0.50") * step,
            Decimal("212.40"),
        ),
        (
            "BND",
            "Vanguard Total Bond Market ETF",
            Decimal("220"),
            Decimal("73.00") - Decimal("0.05") * step,
            Decimal("74.10"),
        ),
    ]
    return [
        {
            "symbol": symbol,
            "description": description,
            "asset_type": "etf",
            "quantity": quantity,
            "price": price,
            "market_value": _cents(quantity * price),
            "cost_basis": _cents(quantity * average_cost),
            "currency": CURRENCY,
        }
        for symbol, description, quantity, price, average_cost in holdings
    ]


def accounts(n: int) -> list[dict]:
    step = Decimal(n - 1)
    checking = Decimal("2450.17") + Decimal("10.25") * step
    cash = Decimal("1520.33")
    invested = sum((p["market_value"] for p in _positions(n)), Decimal(0))
    return [
        {
            "id": CHECKING,
            "number": "000123450001",
            "name": "Everyday Checking",
            "type": "checking",
            "currency": CURRENCY,
            "balances": {"current": checking, "available": checking - Decimal("50.00")},
        },
        {
            "id": BROKERAGE,
            "number": "000123450002",
            "name": "Brokerage",
            "type": "brokerage",
            "currency": CURRENCY,
            "balances": {"current": cash + invested, "cash": cash, "buying_power": cash},
        },
    ]


def positions(account_id: str, n: int) -> list[dict] | None:
    """The account's positions at step n; None for an account that does not exist."""
    if account_id == BROKERAGE:
        return _positions(n)
    return [] if account_id == CHECKING else None


def as_strings(value):
    """Decimals as strings, all the way down (what the sandbox sends)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: as_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_strings(v) for v in value]
    return value
