"""Exports that open where people take them: the CSV parsed back equals the account's rows, the
OFX parsed by ofxtools (a well-kept OFX library, which validates what it reads) equals them
too, for a bank statement and for an investment one; streamed in batches."""

import csv
import io
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from ofxtools.models.invest import BUYSTOCK, INCOME, INVBANKTRAN
from ofxtools.Parser import OFXTree

from dashtam_api.exports import service as exports
from dashtam_core.database import ConnectionReader
from dashtam_models import BalanceSnapshot, Transaction
from tests.api.test_api_keys import bearer, new_key
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in
from tests.api.test_refresh import connected_schwab
from tests.api.test_sync import synced
from tests.helpers import account_of


def parsed_ofx(body: bytes):
    tree = OFXTree()
    tree.parse(io.BytesIO(body))
    return tree.convert()


async def all_transactions(client, headers, account_id) -> list[dict]:
    answer = await client.get(
        f"/api/v1/accounts/{account_id}/transactions", headers=headers, params={"limit": 200}
    )
    return list(reversed(answer.json()["items"]))  # oldest first, as the export


async def checking_account(client, session, headers) -> tuple[str, list[Transaction]]:
    """A bank account with what makes files hard: markup characters, accents, a long payee,
    many decimals, a pending and a cancelled transaction."""
    account = await account_of(
        client, session, headers, alias="Everyday",
        external_id="chk-1", account_type="checking", name="Everyday Checking",
        number_last4="4321",
    )  # fmt: skip
    user_id, now = account.user_id, account.synced_at
    session.add(
        BalanceSnapshot(
            account_id=account.id,
            as_of=now,
            current=Decimal("1234.56"),
            available=Decimal("1200.00"),
        )
    )
    rows = [
        (
            "posted",
            "card",
            Decimal("-4.75"),
            "BLUE BOTTLE <COFFEE> & Co",
            "Blue Bottle Coffee & Café",
        ),
        ("posted", "deposit", Decimal("2500.00"), "PAYROLL ACME", None),
        (
            "posted",
            "card",
            Decimal("-0.123456"),
            "A payee whose name is far longer than thirty-two characters",
            None,
        ),
        ("pending", "card", Decimal("-12.00"), "PENDING DINER", "Diner"),
        ("cancelled", "card", Decimal("-99.00"), "HOTEL HOLD", None),
    ]
    made = []
    for n, (status, kind, amount, description, payee) in enumerate(rows):
        when = now - timedelta(days=10 - n)
        t = Transaction(
            user_id=user_id,
            account_id=account.id,
            external_id=f"x{n}",
            status=status,
            occurred_at=when,
            posted_at=when if status == "posted" else None,
            amount=amount,
            currency="USD",
            description=description,
            payee=payee,
            memo='line one, "quoted"' if n == 0 else None,
            kind=kind,
        )
        session.add(t)
        made.append(t)
    await session.commit()
    return str(account.id), made


async def test_a_bank_account_exports_as_csv_and_as_an_ofx_bank_statement(client, session):
    headers = await signed_in(client, "export")
    account_id, _ = await checking_account(client, session, headers)
    url = f"/api/v1/accounts/{account_id}/transactions/export"

    answer = await client.get(url, headers=headers, params={"format": "csv"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert (
        'filename="dashtam-everyday-checking-start-now.csv"'
        in answer.headers["content-disposition"]
    )
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert tuple(rows[0]) == exports.CSV_COLUMNS
    listed = await all_transactions(client, headers, account_id)
    assert [r["id"] for r in rows] == [t["id"] for t in listed]  # every status, oldest first
    for row, item in zip(rows, listed, strict=True):
        for column in ("status", "amount", "currency", "description", "kind"):
            assert row[column] == item[column], column
        assert row["payee"] == (item["payee"] or "")
        assert row["memo"] == (item["memo"] or "")
        assert datetime.fromisoformat(row["occurred_at"]) == datetime.fromisoformat(
            item["occurred_at"]
        )
    assert {r["status"] for r in rows} == {"posted", "pending", "cancelled"}

    answer = await client.get(url, headers=headers, params={"format": "ofx"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-ofx"
    ofx = parsed_ofx(answer.content)
    (statement,) = ofx.statements
    assert statement.account.accttype == "CHECKING"
    assert statement.curdef == "USD"
    assert statement.balance.balamt == Decimal("1234.56")
    assert statement.availbal.balamt == Decimal("1200.00")
    posted = [t for t in listed if t["status"] == "posted"]
    assert [t.fitid for t in statement.transactions] == [t["id"] for t in posted]
    assert [t.trnamt for t in statement.transactions] == [Decimal(t["amount"]) for t in posted]
    first = statement.transactions[0]
    assert first.name == "Blue Bottle Coffee & Café"  # escaped on the way out, whole again
    assert first.memo == 'line one, "quoted"'
    assert first.trntype == "POS"
    assert len(statement.transactions[2].name) == 32  # OFX's limit for NAME

    # A window of days, both included.
    day = posted[1]["occurred_at"][:10]
    answer = await client.get(url, headers=headers, params={"from": day, "to": day})
    assert [r["id"] for r in csv.DictReader(io.StringIO(answer.text))] == [posted[1]["id"]]


async def test_a_brokerage_account_exports_an_investment_statement(
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
    assert answer.status_code == 200
    (statement,) = parsed_ofx(answer.content).statements
    by_id = {
        t.invtran.fitid if hasattr(t, "invtran") else t.stmttrn.fitid: t
        for t in statement.transactions
    }
    posted = [t for t in listed if t["status"] == "posted"]
    assert set(by_id) == {t["id"] for t in posted}
    trade = next(t for t in posted if t["kind"] == "trade")
    buy = by_id[trade["id"]]
    assert isinstance(buy, BUYSTOCK)
    assert buy.units == Decimal(trade["quantity"])
    assert buy.unitprice == Decimal(trade["price"])
    assert buy.fees == Decimal(trade["fees"])
    assert buy.total == Decimal(trade["amount"])
    assert buy.secid.uniqueid == trade["symbol"]
    dividend = next(t for t in posted if t["kind"] == "dividend")
    assert isinstance(by_id[dividend["id"]], INCOME)
    assert by_id[dividend["id"]].total == Decimal(dividend["amount"])
    assert all(
        isinstance(t, INVBANKTRAN)
        for i, t in by_id.items()
        if i not in (trade["id"], dividend["id"])
    )
    assert {p.secid.uniqueid: p.mktval for p in statement.positions} == {
        p["symbol"]: Decimal(p["market_value"]) for p in positions
    }


async def test_exports_stream_in_batches_and_refuse_what_they_should(
    client, session, connection, monkeypatch
):
    headers = await signed_in(client, "batches")
    account_id, made = await checking_account(client, session, headers)
    # The export as the server streams it, chunk by chunk (the in-process client would
    # gather the body): a chunk per batch of rows from the cursor.
    monkeypatch.setattr(exports, "BATCH", 2)  # five rows: three batches
    reader = ConnectionReader((await connection.get_raw_connection()).driver_connection)
    user_id = made[0].user_id
    export = await exports.account(reader, user_id, uuid.UUID(account_id))
    window = exports.Window.of(None, None)
    chunks = [c async for c in exports.csv_export(reader, user_id, export, window)]
    assert len(chunks) == 3
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert [r["id"] for r in rows] == [str(t.id) for t in made]
    ofx = [c async for c in exports.ofx_export(reader, user_id, export, window)]
    # The header, the statement's start, two batches of posted rows, its balances, the end.
    assert len(ofx) == 1 + 1 + 2 + 1 + 1
    assert len(parsed_ofx(b"".join(ofx)).statements[0].transactions) == 3
    url = f"/api/v1/accounts/{account_id}/transactions/export"

    is_problem(await client.get(url, headers=headers, params={"format": "xls"}), 422)
    backwards = await client.get(  # an empty range: an empty file (issue 34's contract)
        url, headers=headers, params={"from": "2026-02-01", "to": "2026-01-01"}
    )
    assert backwards.status_code == 200
    assert backwards.text.count("\n") == 1  # the header alone
    stranger = await signed_in(client, "stranger")
    is_problem(await client.get(url, headers=stranger), 404)
    # A key with transactions:read exports; one without is refused.
    reads = await new_key(client, headers, ["transactions:read"])
    assert (await client.get(url, headers=bearer(reads))).status_code == 200
    other = await new_key(client, headers, ["accounts:read"])
    is_problem(await client.get(url, headers=bearer(other)), 403)
