"""IBKR Flex Web Service documents parsed (sources/ibkr_flex.py): a statement's accounts,
positions, trades and cash transactions with exact Decimals and signs; the service's answers
and error codes; a DOCTYPE refused."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from dashtam_api.sources import ibkr_flex
from dashtam_api.sources.shapes import SourceError, Windows

STATEMENT = b"""<?xml version="1.0" encoding="UTF-8"?>
<FlexQueryResponse queryName="Dashtam" type="AF">
<FlexStatements count="1">
<FlexStatement accountId="U1234567" fromDate="20260101" toDate="20261207" period="Last365CalendarDays" whenGenerated="20261208;021500">
<AccountInformation accountId="U1234567" currency="USD" name="Pat Doe" acctAlias="Roth IRA" />
<EquitySummaryInBase>
<EquitySummaryByReportDateInBase accountId="U1234567" reportDate="20261206" cash="1000.00" total="24000.00" />
<EquitySummaryByReportDateInBase accountId="U1234567" reportDate="20261207" cash="1208.8" total="25158.3" />
</EquitySummaryInBase>
<OpenPositions>
<OpenPosition accountId="U1234567" currency="USD" assetCategory="STK" symbol="AAPL" description="APPLE INC" position="10" markPrice="195.25" positionValue="1952.5" costBasisMoney="1801.0" levelOfDetail="SUMMARY" />
</OpenPositions>
<Trades>
<Trade accountId="U1234567" currency="USD" assetCategory="STK" symbol="AAPL" dateTime="20260302;100501" tradeDate="20260302" quantity="15" tradePrice="180" ibCommission="-1" netCash="-2701" buySell="BUY" tradeID="700001" transactionID="900001" levelOfDetail="EXECUTION" />
<Trade accountId="U1234567" currency="USD" assetCategory="STK" symbol="AAPL" dateTime="20260610;143000" tradeDate="20260610" quantity="-5" tradePrice="190.5" ibCommission="-1.05" netCash="951.45" buySell="SELL" tradeID="700002" transactionID="900002" levelOfDetail="EXECUTION" />
</Trades>
<CashTransactions>
<CashTransaction accountId="U1234567" currency="USD" type="Deposits/Withdrawals" description="CASH RECEIPTS" amount="5000" dateTime="20260301" transactionID="800001" levelOfDetail="DETAIL" />
<CashTransaction accountId="U1234567" currency="USD" type="Dividends" symbol="AAPL" description="AAPL CASH DIVIDEND USD 0.25" amount="2.5" dateTime="20260515" transactionID="800002" levelOfDetail="DETAIL" />
<CashTransaction accountId="U1234567" currency="USD" type="Other Fees" description="MARKET DATA FEE" amount="-4.5" dateTime="20260601" transactionID="800003" levelOfDetail="DETAIL" />
<CashTransaction accountId="U1234567" currency="USD" type="Dividends" amount="2.5" dateTime="20260515" transactionID="" levelOfDetail="SUMMARY" />
</CashTransactions>
</FlexStatement>
</FlexStatements>
</FlexQueryResponse>
"""


def test_a_statement_reads_into_one_account_with_its_balance_positions_and_transactions():
    (account,) = ibkr_flex.statement(STATEMENT)
    assert (account.external_id, account.number_last4, account.currency) == (
        "U1234567",
        "4567",
        "USD",
    )
    assert "U1234567" not in account.name  # only the last four of the number are shown
    # The person's alias names it, never ``name`` (the holder's own name).
    assert account.name == "Roth IRA"
    (bare,) = ibkr_flex.statement(STATEMENT.replace(b' acctAlias="Roth IRA"', b""))
    assert "Pat Doe" not in bare.name
    # The last report date's equity summary is the balance.
    assert (account.balance.current, account.balance.cash) == (
        Decimal("25158.3"),
        Decimal("1208.8"),
    )
    (held,) = account.positions
    assert (held.symbol, held.asset_type, held.quantity, held.price) == (
        "AAPL",
        "equity",
        Decimal("10"),
        Decimal("195.25"),
    )
    assert (held.market_value, held.cost_basis) == (Decimal("1952.5"), Decimal("1801.0"))
    by_id = {t.external_id: t for t in account.transactions}
    # The SUMMARY line repeats the dividend: only DETAIL lines are read.
    assert set(by_id) == {
        "trade:700001",
        "trade:700002",
        "cash:800001",
        "cash:800002",
        "cash:800003",
    }
    buy, sell = by_id["trade:700001"], by_id["trade:700002"]
    assert (buy.kind, buy.amount, buy.quantity, buy.price, buy.fees) == (
        "trade",
        Decimal("-2701"),
        Decimal("15"),
        Decimal("180"),
        Decimal("1"),
    )
    assert (sell.amount, sell.quantity, sell.fees) == (
        Decimal("951.45"),
        Decimal("-5"),
        Decimal("1.05"),
    )
    # IBKR's times are US Eastern (EST on 2 March): stored in UTC.
    assert buy.posted_at == datetime(2026, 3, 2, 15, 5, 1, tzinfo=UTC)
    # A date alone is midnight Eastern: the same calendar day in UTC.
    assert by_id["cash:800001"].posted_at == datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
    assert [
        (by_id[i].kind, by_id[i].amount) for i in ("cash:800001", "cash:800002", "cash:800003")
    ] == [
        ("deposit", Decimal("5000")),
        ("dividend", Decimal("2.5")),
        ("fee", Decimal("-4.5")),
    ]
    assert all(isinstance(t.amount, Decimal) for t in account.transactions)


def test_the_services_answers_and_its_error_codes():
    ready = ibkr_flex.response(
        b"<FlexStatementResponse timestamp='08 December, 2026 02:15 AM EST'><Status>Success"
        b"</Status><ReferenceCode>1234567890</ReferenceCode><Url>https://example.test/"
        b"FlexStatementService.GetStatement</Url></FlexStatementResponse>"
    )
    assert (ready.status, ready.reference_code, ready.error_code) == ("Success", "1234567890", None)
    expired = ibkr_flex.response(
        b"<FlexStatementResponse><Status>Fail</Status><ErrorCode>1012</ErrorCode>"
        b"<ErrorMessage>Token has expired.</ErrorMessage></FlexStatementResponse>"
    )
    error = ibkr_flex.failure(expired)
    assert (error.needs_person, error.transient) == (True, False)
    assert "make a new Flex token in the IBKR portal" in error.description
    assert ibkr_flex.failure(ibkr_flex.Response("Fail", error_code="1015")).needs_person
    limited = ibkr_flex.failure(ibkr_flex.Response("Fail", error_code="1018"))
    assert (limited.transient, limited.needs_person, limited.retry_after) == (True, False, 60)
    other = ibkr_flex.failure(
        ibkr_flex.Response(
            "Fail", "x", error_code="1003", error_message="Statement is not available."
        )
    )
    assert other.transient
    assert "1003: Statement is not available." in other.description


def test_a_doctype_or_what_is_not_xml_is_refused():
    with pytest.raises(SourceError, match="DOCTYPE"):
        ibkr_flex.statement(b'<!DOCTYPE x [<!ENTITY a "b">]><FlexQueryResponse/>')
    with pytest.raises(SourceError, match="not XML"):
        ibkr_flex.statement(b"<FlexQueryResponse>")
    with pytest.raises(SourceError, match="not a date"):
        ibkr_flex.statement(STATEMENT.replace(b'dateTime="20260301"', b'dateTime="March"'))


def test_a_read_asks_for_periods_of_at_most_365_days_from_where_the_sync_left_off():
    now = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)  # 7 December, 22:00 in New York
    first = ibkr_flex.periods(Windows(since={}, until=now))
    assert first == [(date(2025, 12, 8), date(2026, 12, 7))]
    later = Windows(since={"U1": datetime(2026, 12, 1, 12, tzinfo=UTC)}, until=now)
    assert ibkr_flex.periods(later) == [(date(2026, 11, 30), date(2026, 12, 7))]
    # An account left off long ago: never further back than the history a first read reads.
    stale = Windows(since={"U1": datetime(2020, 1, 1, tzinfo=UTC)}, until=now)
    assert ibkr_flex.periods(stale) == first
    assert all((last - start).days < 365 for start, last in first)


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (b' tradeID="700001" transactionID="900001"', "tradeID or transactionID"),
        (b' netCash="-2701"', "netCash"),
        (b' transactionID="800002"', "transactionID"),
        (b' positionValue="1952.5"', "positionValue"),
    ],
)
def test_a_query_that_left_out_what_the_reader_needs_is_refused_naming_it(line, field):
    with pytest.raises(SourceError) as raised:
        ibkr_flex.statement(STATEMENT.replace(line, b""))
    assert field in raised.value.description
    assert raised.value.needs_person  # the person adds it to their query


def test_a_position_in_another_currency_is_kept_in_the_accounts():
    eur = STATEMENT.replace(
        b'currency="USD" assetCategory="STK" symbol="AAPL" description="APPLE INC"',
        b'currency="EUR" fxRateToBase="1.1" assetCategory="STK" symbol="AAPL" description="APPLE INC"',
    )
    (held,) = ibkr_flex.statement(eur)[0].positions
    assert (held.market_value, held.price, held.cost_basis) == (
        Decimal("2147.75"),
        Decimal("214.775"),
        Decimal("1981.10"),
    )
