"""Enable Banking's pieces that need no server: the JWT every call carries, the balance chosen,
the transactions' sign, status and ids, what each error code means for a connection."""

import logging
from datetime import date
from decimal import Decimal
from types import SimpleNamespace

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dashtam_api.sources import enablebanking, enablebanking_accounts
from dashtam_api.sources import enablebanking_api as api


@pytest.fixture
def app(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "app.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, as the Control Panel's
            serialization.NoEncryption(),
        )
    )
    return api.App("0f4e-app-id", path, "https://api.example"), key.public_key()


def test_the_jwt_is_rs256_with_the_app_id_as_kid_and_lives_an_hour(app):
    application, public = app
    token = api.token(application, now=1_700_000_000)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT", "kid": "0f4e-app-id"}
    claims = jwt.decode(
        token,
        public,
        algorithms=["RS256"],
        audience="api.enablebanking.com",
        issuer="enablebanking.com",
        options={"verify_exp": False},
    )
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["iat"] == 1_700_000_000
    # Fresh for every call: a later one is another token.
    assert api.token(application, now=1_700_000_001) != token


def test_an_unreadable_key_is_the_operators_to_fix(tmp_path):
    broken = api.App("id", tmp_path / "missing.pem", "https://api.example")
    with pytest.raises(api.SourceError) as caught:
        api.token(broken)
    assert caught.value.error == "application_key_unreadable"
    assert not caught.value.needs_person


def _balance(kind: str, amount: str) -> dict:
    return {"balance_type": kind, "balance_amount": {"amount": amount, "currency": "EUR"}}


@pytest.mark.parametrize(
    ("listed", "current", "available"),
    [
        ([("XPCD", "3"), ("CLBD", "1"), ("ITAV", "2"), ("CLAV", "9")], "1", "2"),
        ([("OPBD", "4"), ("ITBD", "5"), ("CLAV", "6")], "5", "6"),
        ([("PRCD", "7"), ("XPCD", "8")], "8", None),
        ([("INFO", "10"), ("OTHR", "11")], "10", None),  # none known: the first listed
    ],
)
def test_the_booked_balance_is_chosen_by_type(listed, current, available):
    chosen = enablebanking.balance_of([_balance(k, v) for k, v in listed])
    assert chosen.current == Decimal(current)
    assert chosen.available == (Decimal(available) if available else None)


def test_no_balance_listed_is_none():
    assert enablebanking.balance_of([]) is None


def _entry(**fields) -> dict:
    return {
        "transaction_amount": {"amount": "12.50", "currency": "EUR"},
        "credit_debit_indicator": "DBIT",
        "status": "BOOK",
        "booking_date": "2026-11-02",
        "value_date": "2026-11-01",
        "remittance_information": ["K-MARKET", "HELSINKI"],
        "creditor": {"name": "K-Market"},
        **fields,
    }


def test_amounts_are_signed_by_the_indicator_and_statuses_mapped():
    seen = {}
    out = enablebanking.transaction_of(_entry(entry_reference="E1"), seen)
    assert (out.external_id, out.amount, out.status) == ("E1", Decimal("-12.50"), "posted")
    assert (out.description, out.payee) == ("K-MARKET HELSINKI", "K-Market")
    assert out.posted_at.isoformat() == "2026-11-02T00:00:00+00:00"
    credit = enablebanking.transaction_of(
        _entry(entry_reference="E2", credit_debit_indicator="CRDT", debtor={"name": "Employer"}),
        seen,
    )
    assert (credit.amount, credit.payee) == (Decimal("12.50"), "Employer")
    pending = enablebanking.transaction_of(_entry(entry_reference="E3", status="PDNG"), seen)
    assert (pending.status, pending.posted_at) == ("pending", None)
    assert enablebanking.transaction_of(_entry(status="RJCT"), seen) is None


def test_an_entry_without_reference_gets_a_stable_id_numbered_among_twins():
    first, second = {}, {}
    ids = [enablebanking.transaction_of(_entry(), first).external_id for _ in range(2)]
    assert ids[0] != ids[1]  # two identical payments the same day are two
    again = [enablebanking.transaction_of(_entry(), second).external_id for _ in range(2)]
    assert again == ids  # the next read names them the same


@pytest.mark.parametrize(
    ("status", "body", "needs_person", "ended", "spent", "transient"),
    [
        (401, {"error": "EXPIRED_SESSION"}, True, True, False, False),
        (401, {"error": "REVOKED_SESSION"}, True, False, False, False),
        (404, {"error": "SESSION_DOES_NOT_EXIST"}, True, False, False, False),
        (400, {"error": "ASPSP_PSU_ACTION_REQUIRED"}, True, False, False, False),
        (429, {"code": 429, "error": "ASPSP_RATE_LIMIT_EXCEEDED"}, False, False, True, True),
        (502, {"error": "ASPSP_ERROR"}, False, False, False, True),
        (503, "a proxy's page", False, False, False, True),
        (422, {"error": "WRONG_REQUEST_PARAMETERS"}, False, False, False, False),
    ],
)
def test_error_codes_mean_what_they_mean_for_the_connection(
    status, body, needs_person, ended, spent, transient
):
    answer = httpx.Response(status, json=body) if isinstance(body, dict) else httpx.Response(status)
    failure = api.failure(answer)
    assert (failure.needs_person, failure.ended, failure.budget_spent, failure.transient) == (
        needs_person,
        ended,
        spent,
        transient,
    )
    assert failure.error == (body["error"] if isinstance(body, dict) else f"http_{status}")


def test_accounts_are_keyed_by_identification_hash_never_uid():
    session = {
        "accounts": [
            {"uid": "u-1", "identification_hash": "h-1", "account_id": {"iban": "FI2112345600000785"},
             "name": "Current", "currency": "EUR", "cash_account_type": "CACC"},
            {"uid": "u-2", "identification_hashes": ["h-2"], "currency": "SEK"},
        ]
    }  # fmt: skip
    held = enablebanking_accounts.accounts_of(session)
    assert [(a.uid, a.hash, a.last4, a.type) for a in held] == [
        ("u-1", "h-1", "0785", "checking"),
        ("u-2", "h-2", None, "bank"),
    ]
    restored = enablebanking_accounts.held_of(enablebanking_accounts.credential("s-1", held))
    assert restored == ("s-1", held)


@pytest.mark.parametrize(
    "account",
    [
        {"uid": "u-1", "account_id": "FI2112345600000785"},
        {"uid": "u-1", "account_id": {"other": ["5355"]}},
        {"uid": "u-1", "all_account_ids": {"identification": "x"}},
        {"uid": "u-1", "identification_hashes": "h-1"},
    ],
)
def test_an_account_of_another_shape_is_the_sources_shape_error(account):
    with pytest.raises(api.SourceError) as caught:
        enablebanking_accounts.accounts_of({"accounts": [account]})
    assert caught.value.error == "invalid_response"


@pytest.mark.parametrize("party", [{"creditor": ["K-Market"]}, {"debtor": "Employer"}])
def test_a_party_of_another_shape_is_the_sources_shape_error(party):
    entry = _entry(**party, credit_debit_indicator="CRDT" if "debtor" in party else "DBIT")
    with pytest.raises(api.SourceError) as caught:
        enablebanking.transaction_of(entry, {})
    assert caught.value.error == "invalid_response"


def test_a_new_consent_keeps_the_key_of_an_account_found_by_any_hash_or_identifier():
    before = enablebanking_accounts.accounts_of(
        {"accounts": [
            {"uid": "u-1", "identification_hashes": ["h-old", "h-2"]},
            {"uid": "u-2", "account_id": {"iban": "FI2112345600000785"}},
            {"uid": "u-3", "account_id": {"other": {"identification": "5355**12",
                                                    "scheme_name": "CPAN"}}},
        ]}
    )  # fmt: skip
    known = enablebanking_accounts.known_keys(before, stored=["h-old"])
    after, left_out = enablebanking_accounts.covered(
        {"accounts": [
            # The bank now names its first hash otherwise: found by the second.
            {"uid": "v-1", "identification_hash": "h-new", "identification_hashes": ["h-2"]},
            # A hash now, where there was only an IBAN: still the IBAN's account.
            {"uid": "v-2", "identification_hash": "h-9", "all_account_ids": [
                {"identification": "FI2112345600000785", "scheme_name": "IBAN"}]},
            {"uid": "v-3", "all_account_ids": [{"identification": "5355**12",
                                                "scheme_name": "CPAN"}]},
            {"uid": "v-4", "name": "Prepaid"},  # nothing but a uid
        ]},
        known,
    )  # fmt: skip
    assert [a.hash for a in after] == [a.hash for a in before]
    assert [a.uid for a in after] == ["v-1", "v-2", "v-3"]
    assert left_out == ["Prepaid"]
    assert before[1].last4 == "0785"


async def test_a_retry_logs_the_paths_template_never_a_uid_or_session_id(app, caplog):
    application, _ = app
    settings = SimpleNamespace(
        INSTITUTION_RETRY_WAIT_SECONDS=0.0, INSTITUTION_RETRIES=1, OAUTH_HTTP_TIMEOUT_SECONDS=5
    )

    def refused(request: httpx.Request):
        raise httpx.ConnectError("refused", request=request)

    uid, session_id = "0d5c2f0e9b7a4c43a1c6d2b9e8f7a6b5", "7f1e2d3c4b5a69788796a5b4c3d2e1f0"
    async with httpx.AsyncClient(transport=httpx.MockTransport(refused)) as http:
        client = api.Client(http, application, settings)
        with caplog.at_level(logging.WARNING, logger="dashtam_api.upstream"):
            for call in (client.balances(uid), client.close_session(session_id)):
                with pytest.raises(api.SourceError):
                    await call
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "api.example/accounts/{uid}/balances unreachable" in logged
    assert "api.example/sessions/{id} unreachable" in logged
    assert uid not in logged
    assert session_id not in logged


@pytest.mark.parametrize(
    ("call", "answer"),
    [
        ("balances", {"balances": 5}),
        ("balances", {"balances": "CLBD"}),
        ("aspsps", {"aspsps": 1}),
        ("transactions", {"transactions": {"entry_reference": "E1"}}),
    ],
)
async def test_a_list_of_another_shape_is_the_sources_shape_error(app, call, answer):
    application, _ = app
    settings = SimpleNamespace(
        INSTITUTION_RETRY_WAIT_SECONDS=0.0,
        INSTITUTION_RETRIES=0,
        OAUTH_HTTP_TIMEOUT_SECONDS=5,
        ENABLE_BANKING_BOOKED_ONLY=False,
    )
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    async with httpx.AsyncClient(transport=transport) as http:
        client = api.Client(http, application, settings)
        calls = {
            "transactions": lambda: enablebanking._pages(
                client, "u-1", date(2026, 1, 1), date(2026, 1, 2), None
            ),
            "balances": lambda: client.balances("u-1"),
            "aspsps": lambda: client.aspsps("FI"),
        }
        with pytest.raises(api.SourceError) as caught:
            await calls[call]()
    assert caught.value.error == "invalid_response"


def test_two_accounts_never_share_a_key():
    # Two accounts of a new consent both match the one the connection had (a joint account's
    # IBAN listed under both, say): the second keeps a key of its own.
    known = {enablebanking_accounts._digest("FI2112345600000785"): "k-old"}
    iban = {"iban": "FI2112345600000785"}
    held = enablebanking_accounts.accounts_of(
        {"accounts": [
            {"uid": "v-1", "identification_hash": "h-1", "account_id": iban},
            {"uid": "v-2", "identification_hash": "h-2", "account_id": iban},
        ]},
        known,
    )  # fmt: skip
    assert [a.hash for a in held] == ["k-old", "h-2"]


@pytest.mark.parametrize(
    ("detail", "day"),
    [
        ({"date_from": "2026-09-10"}, date(2026, 9, 10)),
        ({"date_from": "the 10th"}, None),
        ("Transactions can be fetched for 90 days at most", None),
        (None, None),
    ],
)
def test_a_refused_period_names_the_day_the_bank_takes_when_it_says(detail, day):
    body = {"code": 422, "error": "WRONG_TRANSACTIONS_PERIOD", "message": "m", "detail": detail}
    failure = api.failure(httpx.Response(422, json=body))
    assert isinstance(failure, api.PeriodRefused)
    assert (failure.error, failure.date_from, failure.transient) == (
        "WRONG_TRANSACTIONS_PERIOD",
        day,
        False,
    )
    assert not failure.needs_person
