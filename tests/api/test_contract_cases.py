"""The places where the OpenAPI document and the API disagreed (schemathesis, issue 34), each
held to what they agree on now: a request that fits the document is accepted or refused for a
reason the document declares and the schema cannot see; one that does not fit is refused."""

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from ofxtools.Parser import OFXTree

from dashtam_api.cursors import CURSOR_PATTERN, encode_cursor
from tests.api.test_auth import is_problem
from tests.api.test_balances import DAY1, accounts_of, snapshot
from tests.api.test_connections import signed_in
from tests.api.test_simplefin import synced_schwab

FIRST = "0" * 32  # what schemathesis sends: of the documented form, so a position
LATEST = encode_cursor(datetime(9999, 12, 31, tzinfo=UTC), uuid.UUID(int=2**128 - 1))
EARLIEST = encode_cursor(datetime(1, 1, 1, 0, 0, 1, tzinfo=UTC), uuid.UUID(int=0))


def operation(app, method: str, path: str) -> dict:
    return app.openapi()["paths"][path][method]


def body_schema(app, name: str) -> dict:
    return app.openapi()["components"]["schemas"][name]


async def test_any_cursor_of_the_documented_form_is_a_position_within_ones_own_rows(
    app, institution_client, test_settings
):
    client = institution_client
    headers, provider_id = await synced_schwab(client, test_settings)
    stranger = await signed_in(client, "cursor-stranger")
    transactions = (await client.get("/api/v1/transactions", headers=headers)).json()["items"]
    account_id = transactions[0]["account_id"]
    lists = [
        "/api/v1/transactions",
        f"/api/v1/accounts/{account_id}/transactions",
        "/api/v1/auth/security-events",
        f"/api/v1/providers/{provider_id}/sync-runs",
    ]
    for path in lists:
        everything = await client.get(path, headers=headers)
        assert everything.status_code == 200, everything.text
        assert everything.json()["items"], path
        # After the latest position: the whole first page; after the earliest: nothing.
        latest = await client.get(path, headers=headers, params={"cursor": LATEST})
        assert latest.json() == everything.json(), path
        for cursor in (FIRST, EARLIEST):
            answer = await client.get(path, headers=headers, params={"cursor": cursor})
            assert answer.status_code == 200, (path, answer.text)
            assert answer.json()["items"] == [], path
    # Another person's position moves only through their own rows.
    mine = (await client.get(lists[2], headers=stranger)).json()["items"]
    theirs = await client.get(lists[2], headers=stranger, params={"cursor": LATEST})
    assert theirs.json()["items"] == mine
    # Not of the form: refused, naming the cursor, as the document says (a 400 it declares).
    bad = await client.get(lists[0], headers=headers, params={"cursor": FIRST + "0"})
    assert is_problem(bad, 400)["parameter"] == "cursor"
    for path, method in (
        ("/api/v1/transactions", "get"),
        ("/api/v1/auth/security-events", "get"),
        ("/api/v1/providers/{provider_id}/sync-runs", "get"),
        ("/api/v1/webhooks/{endpoint_id}/deliveries", "get"),
    ):
        (cursor,) = [p for p in operation(app, method, path)["parameters"] if p["name"] == "cursor"]
        assert {"type": "string", "pattern": CURSOR_PATTERN} in cursor["schema"]["anyOf"]
        assert "400" in operation(app, method, path)["responses"]


async def test_days_are_iso_dates_of_any_year(client, auth_headers):
    for day in ("0", "1700000000", "2026-1-5", "2026-01-05T00:00:00"):
        for path in ("/api/v1/net-worth", "/api/v1/transactions"):
            answer = await client.get(path, headers=auth_headers, params={"to": day})
            assert is_problem(answer, 422)["errors"][0]["loc"] == ["query", "to"]
    # The first and the last day there is: an answer, never an overflow.
    for params in (
        {"to": "0001-01-01"},
        {"from": "9999-12-30", "to": "9999-12-31", "interval": "month"},
        {"from": "9999-12-31"},
        {"to": "0001-01-01", "interval": "week"},
    ):
        answer = await client.get("/api/v1/net-worth", headers=auth_headers, params=params)
        assert answer.status_code == 200, (params, answer.text)
        assert answer.json()["items"] == []
    answer = await client.get(
        "/api/v1/transactions", headers=auth_headers, params={"to": "9999-12-31"}
    )
    assert answer.status_code == 200


async def test_a_long_series_pages_and_an_empty_range_is_empty(client, session):
    headers = await signed_in(client, "series")
    (account,) = await accounts_of(session, headers, client, "USD")
    session.add_all(
        [
            snapshot(account, DAY1 + timedelta(hours=23), "110.50"),
            snapshot(account, DAY1 + timedelta(days=2, hours=5), "90.25"),
            snapshot(account, DAY1 + timedelta(days=40), "1000.01"),
        ]
    )
    await session.flush()
    path = f"/api/v1/accounts/{account.id}/balances"
    # 1,000 days from `from`, ending the day before the first snapshot.
    start = DAY1.date() - timedelta(days=1000)
    first = await client.get(path, headers=headers, params={"from": str(start), "to": "2026-11-30"})
    assert first.status_code == 200, first.text
    assert first.json()["items"] == []
    assert first.json()["next_from"] == str(DAY1.date())
    rest = (
        await client.get(
            path, headers=headers, params={"from": first.json()["next_from"], "to": "2026-11-30"}
        )
    ).json()
    assert [(p["period"], p["current"]) for p in rest["items"]] == [
        ("2026-10-01", "110.50"),
        ("2026-10-03", "90.25"),
        ("2026-11-10", "1000.01"),
    ]
    assert rest["next_from"] is None
    # Weeks and months page on their own boundaries: 1,000 of them from the first one.
    weekly = await client.get(
        "/api/v1/net-worth",
        headers=headers,
        params={"from": "2000-01-05", "interval": "week"},  # a Wednesday: its week from Monday
    )
    assert weekly.json()["next_from"] == str(date(2000, 1, 3) + timedelta(weeks=1000))
    monthly = await client.get(
        "/api/v1/net-worth", headers=headers, params={"from": "1940-01-20", "interval": "month"}
    )
    assert monthly.json()["next_from"] == "2023-05-01"
    assert monthly.json()["items"] == []
    last = await client.get(
        "/api/v1/net-worth", headers=headers, params={"from": "2023-05-01", "interval": "month"}
    )
    assert [p["total"] for p in last.json()["items"]][-1] == "1000.01"
    assert last.json()["next_from"] is None
    # `to` before `from`: nothing, not even the week `from` is in.
    for where in (path, "/api/v1/net-worth"):
        empty = await client.get(
            where,
            headers=headers,
            params={"from": "2026-10-08", "to": "2026-10-06", "interval": "week"},
        )
        assert empty.status_code == 200, empty.text
        assert empty.json()["items"] == []
        assert empty.json()["next_from"] is None


async def test_an_export_of_an_empty_range_is_an_empty_file(institution_client, test_settings):
    client = institution_client
    headers, _ = await synced_schwab(client, test_settings)
    accounts = (await client.get("/api/v1/accounts", headers=headers)).json()["items"]
    path = f"/api/v1/accounts/{accounts[0]['id']}/transactions/export"
    backwards = {"from": "8859-07-09", "to": "1968-05-29"}
    answer = await client.get(path, headers=headers, params=backwards)
    assert answer.status_code == 200, answer.text
    assert len(list(csv.reader(io.StringIO(answer.text)))) == 1  # the header alone
    for account in accounts:
        path = f"/api/v1/accounts/{account['id']}/transactions/export"
        for params in (backwards, {"from": "9999-12-31", "to": "9999-12-31"}):
            ofx = await client.get(path, headers=headers, params={**params, "format": "ofx"})
            assert ofx.status_code == 200, ofx.text
            tree = OFXTree()
            tree.parse(io.BytesIO(ofx.content))
            statement = tree.convert().statements[0]
            assert list(statement.transactions) == []
    with_rows = (await client.get("/api/v1/transactions", headers=headers)).json()["items"][0]
    path = f"/api/v1/accounts/{with_rows['account_id']}/transactions/export"
    everything = await client.get(path, headers=headers, params={"to": "9999-12-31"})
    assert len(list(csv.reader(io.StringIO(everything.text)))) > 1


@pytest.mark.parametrize("path", ["/api/v1/auth/login/second-factor", "/api/v1/auth/totp/disable"])
async def test_exactly_one_non_empty_code_as_the_document_says(app, client, auth_headers, path):
    name = {"/api/v1/auth/login/second-factor": "SecondFactorLogin"}.get(path, "TotpDisable")
    schema = body_schema(app, name)
    assert schema["oneOf"] == [{"required": ["code"]}, {"required": ["recovery_code"]}]
    for field in ("code", "recovery_code"):
        assert schema["properties"][field]["type"] == "string"  # never null
        assert schema["properties"][field]["minLength"] == 1
    challenge = {"challenge": "0" * 20} if "second-factor" in path else {}
    for body in (
        {"code": "", "recovery_code": ""},
        {"code": "", "recovery_code": "0" * 39},
        {"code": None},
        {"code": ""},
        {},
    ):
        answer = await client.post(path, headers=auth_headers, json={**challenge, **body})
        is_problem(answer, 422)
    # One code, as the document allows: not a 422 (wrong, or nothing to disable).
    answer = await client.post(path, headers=auth_headers, json={**challenge, "code": "000000"})
    assert answer.status_code in (401, 409), answer.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/password-reset/complete", {"password": "a long new password"}),
        ("/api/v1/auth/verify-email", {}),
    ],
)
async def test_a_token_never_sent_is_a_declared_404(app, client, path, body):
    answer = await client.post(path, json={"token": "dtx_" + "0" * 40, **body})
    assert is_problem(answer, 404)["parameter"] == "token"
    assert "404" in operation(app, "post", path)["responses"]


async def test_a_webhook_url_is_of_the_documented_form(app, client, auth_headers):
    for name in ("WebhookCreate", "WebhookUpdate"):
        url = body_schema(app, name)["properties"]["url"]
        assert url["pattern"].startswith("^https?://")
    for bad in ("0", "https://", "https://example.com/#x", "https://example.com:0/"):
        answer = await client.post(
            "/api/v1/webhooks",
            headers=auth_headers,
            json={"url": bad, "events": ["sync.failed"]},
        )
        assert is_problem(answer, 422)["errors"][0]["loc"] == ["body", "url"], bad
    created = await client.post(
        "/api/v1/webhooks",
        headers=auth_headers,
        json={"url": "http://[::1]:8080/hook?x=1", "events": ["sync.failed"]},
    )
    assert created.status_code == 201, created.text
    endpoint = f"/api/v1/webhooks/{created.json()['id']}"
    for body in ({"url": "0"}, {"enabled": 0}, {"enabled": None}, {"events": None}):
        is_problem(await client.patch(endpoint, headers=auth_headers, json=body), 422)
    changed = await client.patch(endpoint, headers=auth_headers, json={"url": "http://0/"})
    assert changed.status_code == 200, changed.text


async def test_a_setup_token_for_an_account_not_ones_own_is_a_declared_404(
    app, client, auth_headers
):
    answer = await client.post(
        "/api/v1/simplefin/setup-tokens",
        headers=auth_headers,
        json={"account_ids": [str(uuid.uuid4())]},
    )
    assert is_problem(answer, 404)["parameter"] == "account_ids"
    assert "404" in operation(app, "post", "/api/v1/simplefin/setup-tokens")["responses"]


async def test_simplefin_without_credentials_is_a_401_with_the_basic_challenge(app, client):
    answer = await client.get("/simplefin/accounts")
    is_problem(answer, 401)
    assert answer.headers["www-authenticate"] == 'Basic realm="SimpleFIN", charset="UTF-8"'
    documented = operation(app, "get", "/simplefin/accounts")["responses"]
    assert "WWW-Authenticate" in documented["401"]["headers"]
    assert "403" in documented


async def test_text_that_postgresql_cannot_store_is_refused_not_a_500(client, auth_headers):
    for path, body in (
        ("/api/v1/api-keys", {"name": "a\x00b", "scopes": ["providers:read"]}),
        (
            "/api/v1/webhooks",
            {"url": "https://example.com/", "events": ["sync.failed"], "description": "a\x00b"},
        ),
        ("/api/v1/simplefin/setup-tokens", {"label": "a\x00b"}),
    ):
        is_problem(await client.post(path, headers=auth_headers, json=body), 422)
    for params in ({"q": "a\x00"}, {"symbol": "\x00"}):
        is_problem(
            await client.get("/api/v1/transactions", headers=auth_headers, params=params), 422
        )


async def test_an_integer_is_a_json_integer(client, auth_headers):
    body = {"name": "script", "scopes": ["providers:read"]}
    for days in ("90", True, 90.5):
        answer = await client.post(
            "/api/v1/api-keys", headers=auth_headers, json={**body, "expires_in_days": days}
        )
        is_problem(answer, 422)
    answer = await client.post(
        "/api/v1/api-keys", headers=auth_headers, json={**body, "expires_in_days": 90.0}
    )
    assert answer.status_code == 201, answer.text  # JSON Schema's integer: 90.0 is one
