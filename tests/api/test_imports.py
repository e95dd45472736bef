"""Manual accounts and files imported into accounts: OFX (Dashtam's own export read back), CSV
with a mapping, CAMT.053; never a duplicate (ids first, then content), nothing half-written."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete

from dashtam_models import Transaction
from tests.api.test_auth import is_problem
from tests.api.test_connections import signed_in
from tests.api.test_exports import all_transactions, checking_account
from tests.api.test_manual_accounts import manual_account
from tests.api.test_refresh import connected_schwab
from tests.api.test_sync import synced
from tests.fixtures.environment import ROOT
from tests.helpers import account_of

FILES = ROOT / "tests" / "fixtures" / "files"

CSV_MAPPING = {
    "date": "Date",
    "debit": "Debit",
    "credit": "Credit",
    "description": "Text",
    "date_format": "%d.%m.%Y",
    "decimal": ",",
    "thousands": ".",
    "delimiter": ";",
}


async def imported(client, headers, account_id, content: bytes, name: str, **form) -> dict:
    answer = await client.post(
        f"/api/v1/accounts/{account_id}/imports",
        headers=headers,
        files={"file": (name, content)},
        data=form,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def counts(answer: dict) -> tuple[int, int, int]:
    return answer["added"], answer["duplicates"], answer["skipped"]


async def test_dashtams_own_ofx_export_reimports_into_a_manual_account_exactly_once(
    client, session
):
    headers = await signed_in(client, "ofx-back")
    source_id, _ = await checking_account(client, session, headers)
    ofx = await client.get(
        f"/api/v1/accounts/{source_id}/transactions/export",
        headers=headers,
        params={"format": "ofx"},
    )
    assert ofx.status_code == 200
    target = await manual_account(client, headers)

    first = await imported(client, headers, target["id"], ofx.content, "export.ofx")
    assert (first["status"], first["format"]) == ("done", "ofx")
    exported = await all_transactions(client, headers, source_id)
    posted = [t for t in exported if t["status"] == "posted"]  # an OFX statement lists those
    assert counts(first) == (len(posted), 0, 0)
    again = await all_transactions(client, headers, target["id"])
    assert [(t["amount"], t["occurred_at"][:10]) for t in again] == [
        (t["amount"], t["occurred_at"][:10]) for t in posted
    ]
    assert (again[0]["payee"] or again[0]["description"]) == "Blue Bottle Coffee & Café"
    # The statement's balance came along.
    account = (await client.get(f"/api/v1/accounts/{target['id']}", headers=headers)).json()
    assert account["balance"]["current"] == "1234.56"

    second = await imported(client, headers, target["id"], ofx.content, "export.ofx")
    assert counts(second) == (0, len(posted), 0)
    assert len(await all_transactions(client, headers, target["id"])) == len(posted)

    listed = (await client.get(f"/api/v1/accounts/{target['id']}/imports", headers=headers)).json()
    assert [i["id"] for i in listed["items"]] == [second["id"], first["id"]]
    shown = (await client.get(f"/api/v1/imports/{first['id']}", headers=headers)).json()
    assert shown == first


def _ofx(*transactions: tuple[str, str, str, str]) -> bytes:
    """A small OFX 1.02 bank statement (SGML, closing tags left out as banks do)."""
    lines = "".join(
        f"<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>{day}<TRNAMT>{amount}<FITID>{fitid}<NAME>{name}"
        "</STMTTRN>\n"
        for fitid, day, amount, name in transactions
    )
    return (
        "OFXHEADER:100\nDATA:OFXSGML\nVERSION:102\nSECURITY:NONE\nENCODING:USASCII\n"
        "CHARSET:1252\nCOMPRESSION:NONE\nOLDFILEUID:NONE\nNEWFILEUID:NONE\n\n"
        "<OFX><SIGNONMSGSRSV1><SONRS><STATUS><CODE>0<SEVERITY>INFO</STATUS>"
        "<DTSERVER>20261201<LANGUAGE>ENG</SONRS></SIGNONMSGSRSV1>\n"
        "<BANKMSGSRSV1><STMTTRNRS><TRNUID>1<STATUS><CODE>0<SEVERITY>INFO</STATUS>\n"
        "<STMTRS><CURDEF>USD<BANKACCTFROM><BANKID>1<ACCTID>99<ACCTTYPE>CHECKING</BANKACCTFROM>\n"
        f"<BANKTRANLIST><DTSTART>20261101<DTEND>20261201\n{lines}</BANKTRANLIST>\n"
        "</STMTRS></STMTTRNRS></BANKMSGSRSV1></OFX>\n"
    ).encode("cp1252")


async def test_two_identical_charges_with_their_own_ids_stay_two_and_overlaps_add_nothing(client):
    headers = await signed_in(client, "twins")
    account = await manual_account(client, headers)
    november = _ofx(
        ("A1", "20261110", "-3.50", "COFFEE CART"),
        ("A2", "20261110", "-3.50", "COFFEE CART"),
        ("A3", "20261112", "-40.00", "GROCER"),
    )
    assert counts(await imported(client, headers, account["id"], november, "nov.qfx")) == (3, 0, 0)
    overlapping = _ofx(
        ("A3", "20261112", "-40.00", "GROCER"),
        ("A4", "20261120", "-9.99", "STREAMING CO"),
    )
    assert counts(await imported(client, headers, account["id"], overlapping, "x.ofx")) == (1, 1, 0)
    assert len(await all_transactions(client, headers, account["id"])) == 4


async def test_a_csv_with_a_mapping_imports_and_again_adds_nothing(client):
    headers = await signed_in(client, "csv")
    account = await manual_account(client, headers, currency="EUR")
    content = (
        "Date;Text;Debit;Credit\n"
        "03.11.2026;Bäckerei Müller;4,80;\n"
        "03.11.2026;Bäckerei Müller;4,80;\n"
        "05.11.2026;Gehalt November;;3.210,55\n"
        "\n"
    ).encode("cp1252")
    mapping = json.dumps({**CSV_MAPPING, "currency": "EUR"})
    first = await imported(client, headers, account["id"], content, "k.csv", mapping=mapping)
    assert counts(first) == (3, 0, 1)  # the two identical charges are two; the blank line skipped
    rows = await all_transactions(client, headers, account["id"])
    assert [(t["amount"], t["description"], t["currency"]) for t in rows] == [
        ("-4.80", "Bäckerei Müller", "EUR"),
        ("-4.80", "Bäckerei Müller", "EUR"),
        ("3210.55", "Gehalt November", "EUR"),
    ]
    # The account keeps the mapping: the same bank's next file comes without one.
    again = await imported(client, headers, account["id"], content, "k.csv")
    assert counts(again) == (0, 3, 1)


async def test_a_bad_line_fails_the_whole_import_naming_it_and_keeps_nothing(client):
    headers = await signed_in(client, "badcsv")
    account = await manual_account(client, headers)
    content = b"Date;Text;Debit;Credit\n03.11.2026;Fine;1,00;\n04.11.2026;Broken;abc;\n"
    answer = await client.post(
        f"/api/v1/accounts/{account['id']}/imports",
        headers=headers,
        files={"file": ("bad.csv", content)},
        data={"mapping": json.dumps(CSV_MAPPING)},
    )
    problem = is_problem(answer, 422)
    assert "line 3" in problem["detail"]
    assert problem["lines"][0]["line"] == 3
    assert "errors" not in problem  # a problem's `errors` are request fields (the document's)
    assert await all_transactions(client, headers, account["id"]) == []
    failed = (await client.get(f"/api/v1/imports/{problem['import_id']}", headers=headers)).json()
    assert (failed["status"], failed["added"], failed["errors"][0]["line"]) == ("failed", 0, 3)

    # A CSV without a mapping, a mapping that is not one, a file no format fits.
    files = {"file": ("x.csv", content)}
    url = f"/api/v1/accounts/{account['id']}/imports"
    is_problem(await client.post(url, headers=headers, files=files), 422)
    is_problem(
        await client.post(url, headers=headers, files=files, data={"mapping": '{"date": 1'}),
        422,
    )
    unknown = {"file": ("x.bin", b"\x00\x01\x02 not a statement")}
    is_problem(await client.post(url, headers=headers, files=unknown), 422)


CAMT = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
 <BkToCstmrStmt>
  <GrpHdr><MsgId>M1</MsgId><CreDtTm>2026-11-30T18:00:00</CreDtTm></GrpHdr>
  <Stmt>
   <Id>S1</Id><CreDtTm>2026-11-30T18:00:00</CreDtTm>
   <Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>EUR</Ccy></Acct>
   <Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">1500.00</Amt>
    <CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-11-30</Dt></Dt></Bal>
   <Ntry><NtryRef>E1</NtryRef><Amt Ccy="EUR">42.10</Amt><CdtDbtInd>DBIT</CdtDbtInd>
    <Sts>BOOK</Sts><BookgDt><Dt>2026-11-28</Dt></BookgDt><ValDt><Dt>2026-11-28</Dt></ValDt>
    <AcctSvcrRef>REF-1</AcctSvcrRef>
    <NtryDtls><TxDtls><RmtInf><Ustrd>Stadtwerke Strom</Ustrd></RmtInf></TxDtls></NtryDtls>
   </Ntry>
   <Ntry><Amt Ccy="EUR">9.99</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>PDNG</Sts>
    <BookgDt><Dt>2026-11-30</Dt></BookgDt><AcctSvcrRef>REF-2</AcctSvcrRef>
    <NtryDtls><TxDtls><RmtInf><Ustrd>Musikdienst</Ustrd></RmtInf></TxDtls></NtryDtls>
   </Ntry>
  </Stmt>
 </BkToCstmrStmt>
</Document>
"""


async def test_a_camt053_statement_imports_booked_and_pending_entries(client):
    headers = await signed_in(client, "camt")
    account = await manual_account(client, headers, currency="EUR")
    answer = await imported(client, headers, account["id"], CAMT.encode(), "stmt.xml")
    assert (answer["format"], counts(answer)) == ("camt053", (2, 0, 0))
    rows = await all_transactions(client, headers, account["id"])
    assert [(t["amount"], t["status"]) for t in rows] == [
        ("-42.10", "posted"),
        ("-9.99", "pending"),
    ]
    balance = (await client.get(f"/api/v1/accounts/{account['id']}", headers=headers)).json()
    assert balance["balance"]["current"] == "1500.00"


async def test_a_file_for_a_synced_account_adds_only_what_the_sync_lacks(client, session):
    headers = await signed_in(client, "overlap")
    account = await account_of(
        client, session, headers, alias="Synced", external_id="s-1", account_type="checking",
        name="Synced checking",
    )  # fmt: skip
    day = datetime(2026, 11, 10, 12, tzinfo=UTC)
    synced = [
        ("sync-1", Decimal("-23.40"), "UBER *TRIP 8H2K", day),
        ("sync-2", Decimal("-3.50"), "COFFEE CART #12", day + timedelta(days=1)),
        ("sync-3", Decimal("-3.50"), "COFFEE CART #12", day + timedelta(days=1)),
    ]
    for external_id, amount, description, when in synced:
        session.add(
            Transaction(
                user_id=account.user_id, account_id=account.id, external_id=external_id,
                status="posted", occurred_at=when, posted_at=when, amount=amount,
                currency="USD", description=description, kind="card",
            )
        )  # fmt: skip
    await session.commit()
    # The bank's file: the same three a day later and described its own way, and one more.
    content = _ofx(
        ("F1", "20261111", "-23.40", "UBER TRIP"),
        ("F2", "20261112", "-3.50", "Coffee Cart"),
        ("F3", "20261112", "-3.50", "Coffee Cart"),
        ("F4", "20261113", "-3.50", "Coffee Cart"),
    )
    answer = await imported(client, headers, account.id, content, "bank.ofx")
    assert counts(answer) == (1, 3, 0)
    rows = await all_transactions(client, headers, account.id)
    assert len(rows) == 4
    again = await imported(client, headers, account.id, content, "bank.ofx")
    assert counts(again) == (0, 4, 0)


async def test_imports_are_the_persons_own(client):
    owner = await signed_in(client, "imp-owner")
    other = await signed_in(client, "imp-other")
    account = await manual_account(client, owner)
    made = await imported(
        client, owner, account["id"], _ofx(("Z", "20261101", "-1.00", "X")), "z.ofx"
    )
    is_problem(await client.get(f"/api/v1/imports/{made['id']}", headers=other), 404)
    is_problem(await client.get(f"/api/v1/accounts/{account['id']}/imports", headers=other), 404)
    refused = await client.post(
        f"/api/v1/accounts/{account['id']}/imports",
        headers=other,
        files={"file": ("z.ofx", _ofx(("Y", "20261101", "-1.00", "X")))},
    )
    is_problem(refused, 404)


async def test_a_sync_after_a_file_takes_over_the_imported_rows_instead_of_adding(
    institution_client, test_settings, session
):
    """The other order: a file brings transactions the sync has not read yet; when the sync
    lists them under the institution's ids, it takes the imported rows over (the re-issued-id
    rule, docs/transactions.md), it does not add them again."""
    client = institution_client
    headers, provider_id = await connected_schwab(client, test_settings)
    await synced(client, headers, provider_id)
    listed = await client.get("/api/v1/transactions", headers=headers, params={"limit": 200})
    rows = [t for t in listed.json()["items"] if t["status"] == "posted"]
    account_id = rows[0]["account_id"]
    taken = [t for t in rows if t["account_id"] == account_id]
    assert taken
    # As if the sync had not read these yet: gone from Dashtam, then brought by the bank's file.
    await session.execute(
        delete(Transaction).where(Transaction.id.in_([uuid.UUID(t["id"]) for t in taken]))
    )
    await session.commit()
    content = _ofx(
        *(
            (f"FILE-{n}", t["occurred_at"][:10].replace("-", ""), t["amount"], t["description"])
            for n, t in enumerate(taken)
        )
    )
    answer = await imported(client, headers, account_id, content, "bank.ofx")
    assert counts(answer) == (len(taken), 0, 0)

    await synced(client, headers, provider_id)
    after = [
        t for t in await all_transactions(client, headers, account_id) if t["status"] == "posted"
    ]
    assert len(after) == len(taken)  # taken over, not added
    assert {t["import_id"] for t in after} == {answer["id"]}
    assert sorted(t["amount"] for t in after) == sorted(t["amount"] for t in taken)


async def test_a_file_of_several_accounts_is_refused_whole(client):
    headers = await signed_in(client, "two-accounts")
    account = await manual_account(client, headers)
    one = _ofx(("A1", "20261110", "-3.50", "COFFEE CART"))
    start, end = one.index(b"<STMTTRNRS>"), one.index(b"</STMTTRNRS>") + len(b"</STMTTRNRS>")
    second = one[start:end].replace(b"<ACCTID>99", b"<ACCTID>77").replace(b"A1", b"B1")
    answer = await client.post(
        f"/api/v1/accounts/{account['id']}/imports",
        headers=headers,
        files={"file": ("two.ofx", one[:end] + second + one[end:])},
    )
    problem = is_problem(answer, 422)
    assert "several accounts" in problem["detail"]
    assert await all_transactions(client, headers, account["id"]) == []


async def test_an_upload_without_credentials_is_refused_before_it_is_read(client):
    answer = await client.post(
        "/api/v1/accounts/5f2b1b5c-ebad-407f-8d5b-63687994943e/imports",
        files={"file": ("x.ofx", _ofx(("A", "20261101", "-1.00", "X")))},
    )
    assert (answer.status_code, answer.headers["content-type"]) == (401, "application/problem+json")


async def test_a_file_that_repeats_a_held_charge_beside_its_twin_adds_the_twin(client):
    """The charge already held by its id is that row's own: its identical twin in the same
    file (another id) is a second charge, not a duplicate of the first by content."""
    headers = await signed_in(client, "twin-later")
    account = await manual_account(client, headers)
    first = _ofx(("A1", "20261110", "-3.50", "COFFEE CART"))
    assert counts(await imported(client, headers, account["id"], first, "a.ofx")) == (1, 0, 0)
    both = _ofx(
        ("A1", "20261110", "-3.50", "COFFEE CART"), ("A2", "20261110", "-3.50", "COFFEE CART")
    )
    assert counts(await imported(client, headers, account["id"], both, "b.ofx")) == (1, 1, 0)
    assert len(await all_transactions(client, headers, account["id"])) == 2


async def test_a_pending_entry_booked_in_a_later_file_is_posted_not_kept_pending(client):
    headers = await signed_in(client, "camt-posts")
    account = await manual_account(client, headers, currency="EUR")
    first = await imported(client, headers, account["id"], CAMT.encode(), "day1.xml")
    assert counts(first) == (2, 0, 0)
    booked = CAMT.replace("<Sts>PDNG</Sts>", "<Sts>BOOK</Sts>").replace(
        '<Amt Ccy="EUR">9.99</Amt>', '<Amt Ccy="EUR">10.49</Amt>'
    )
    second = await imported(client, headers, account["id"], booked.encode(), "day2.xml")
    assert (second["added"], second["updated"], second["duplicates"]) == (0, 1, 1)
    rows = await all_transactions(client, headers, account["id"])
    assert [(t["amount"], t["status"]) for t in rows] == [
        ("-42.10", "posted"),
        ("-10.49", "posted"),
    ]


async def test_a_statement_listing_a_symbol_twice_imports_its_lots_added_up(client):
    """Two lots of one symbol (long positions listed apart) are one position, as a sync
    merges them; the table holds one row per symbol."""
    headers = await signed_in(client, "lots")
    account = await manual_account(client, headers)
    text = (FILES / "investment.ofx").read_bytes()
    start, end = text.index(b"<POSSTOCK>"), text.index(b"</POSSTOCK>") + len(b"</POSSTOCK>")
    once = await imported(client, headers, account["id"], text, "one.ofx")
    single = (
        await client.get(f"/api/v1/accounts/{account['id']}/positions", headers=headers)
    ).json()["items"]
    twice = text[:end] + text[start:end] + text[end:]
    other = await manual_account(client, headers, name="Lots")
    await imported(client, headers, other["id"], twice, "two.ofx")
    doubled = (
        await client.get(f"/api/v1/accounts/{other['id']}/positions", headers=headers)
    ).json()["items"]
    assert once["status"] == "done"
    assert len(doubled) == len(single)  # one row per symbol, not two
    held = {p["symbol"]: Decimal(p["quantity"]) for p in single}
    ratios = sorted(Decimal(p["quantity"]) / held[p["symbol"]] for p in doubled)
    assert ratios == [1] * (len(single) - 1) + [2]  # the stock's lots added up
