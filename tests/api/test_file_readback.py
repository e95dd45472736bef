"""Dashtam's own OFX exports read back by the file readers (issue 35: an export re-imported
gives the same transactions): the bank statement and the investment statement, as the API
serves them."""

import io
from datetime import datetime
from decimal import Decimal

from dashtam_api.sources.files import (
    FileBalance,
    FileError,
    FilePosition,
    FileTransaction,
    detect_format,
    read_file,
)
from tests.api.test_connections import signed_in
from tests.api.test_exports import all_transactions, checking_account
from tests.api.test_refresh import connected_schwab
from tests.api.test_sync import synced


def read_back(body: bytes) -> list:
    assert detect_format(body[:4096], "export.ofx") == "ofx"
    entries = list(read_file(io.BytesIO(body), format="ofx"))
    assert not [e for e in entries if isinstance(e, FileError)]
    return entries


def seconds(moment: str) -> datetime:
    # OFX dates carry milliseconds, and the export writes .000.
    return datetime.fromisoformat(moment).replace(microsecond=0)


async def test_a_bank_export_reads_back_into_the_same_transactions(client, session):
    headers = await signed_in(client, "readback")
    account_id, _ = await checking_account(client, session, headers)
    answer = await client.get(
        f"/api/v1/accounts/{account_id}/transactions/export",
        headers=headers,
        params={"format": "ofx"},
    )
    entries = read_back(answer.content)
    posted = [
        t for t in await all_transactions(client, headers, account_id) if t["status"] == "posted"
    ]
    read = [e.data for e in entries if isinstance(e, FileTransaction)]
    assert [t.external_id for t in read] == [t["id"] for t in posted]
    for mine, item in zip(read, posted, strict=True):
        assert mine.amount == Decimal(item["amount"])
        assert mine.currency == item["currency"]
        assert mine.status == "posted"
        assert mine.kind == item["kind"]
        assert mine.posted_at == seconds(item["posted_at"])
        assert mine.transacted_at == seconds(item["occurred_at"])
        # NAME holds the payee (else the description), cut at OFX's 32 characters.
        assert mine.description == (item["payee"] or item["description"])[:32].strip()
    assert read[0].memo == 'line one, "quoted"'
    assert read[0].description == "Blue Bottle Coffee & Café"
    (balance,) = [e for e in entries if isinstance(e, FileBalance)]
    assert (balance.current, balance.available) == (Decimal("1234.56"), Decimal("1200.00"))


async def test_an_investment_export_reads_back_into_the_same_trades_and_positions(
    institution_client, test_settings
):
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    await synced(client, headers, provider_id)
    accounts = (await client.get("/api/v1/accounts", headers=headers)).json()["items"]
    margin = next(a for a in accounts if "margin" in a["name"].lower())
    listed = await all_transactions(client, headers, margin["id"])
    positions = (
        await client.get(f"/api/v1/accounts/{margin['id']}/positions", headers=headers)
    ).json()["items"]
    answer = await client.get(
        f"/api/v1/accounts/{margin['id']}/transactions/export",
        headers=headers,
        params={"format": "ofx"},
    )
    entries = read_back(answer.content)
    by_id = {e.data.external_id: e.data for e in entries if isinstance(e, FileTransaction)}
    posted = [t for t in listed if t["status"] == "posted"]
    assert set(by_id) == {t["id"] for t in posted}
    for item in posted:
        mine = by_id[item["id"]]
        assert mine.amount == Decimal(item["amount"])
        assert mine.transacted_at == seconds(item["occurred_at"])
        if item["kind"] in ("trade", "dividend"):
            assert mine.kind == item["kind"]
            assert mine.symbol == item["symbol"]
    trade = next(t for t in posted if t["kind"] == "trade")
    mine = by_id[trade["id"]]
    assert (mine.quantity, mine.price, mine.fees) == (
        Decimal(trade["quantity"]), Decimal(trade["price"]), Decimal(trade["fees"]),
    )  # fmt: skip
    assert mine.description == trade["description"]
    read_positions = {e.holding.symbol: e.holding for e in entries if isinstance(e, FilePosition)}
    assert {s: (h.quantity, h.market_value) for s, h in read_positions.items()} == {
        p["symbol"]: (Decimal(p["quantity"]), Decimal(p["market_value"])) for p in positions
    }
