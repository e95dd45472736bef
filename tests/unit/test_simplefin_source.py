"""sources/simplefin.py without servers: what a setup token, an access URL and each kind of
answer mean (the whole flow against the Bridge look-alike is tests/api/test_simplefin_source.py)."""

import base64
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest

from dashtam_api.sources import simplefin
from dashtam_api.sources.shapes import SourceError

HERE = SimpleNamespace(local_environment=True, webhook_allow_private=True)
PRODUCTION = SimpleNamespace(local_environment=False, webhook_allow_private=False)
SECRET = "s3cr3t-p4ssw0rd-never-shown"


def token(url: str) -> str:
    return base64.b64encode(url.encode()).decode()


def test_a_setup_token_is_the_base64_of_a_claim_url():
    url = "https://bridge.example.com/simplefin/claim/abc"
    assert simplefin.claim_url_of(token(url), HERE) == url
    assert simplefin.claim_url_of(f"  {token(url)}\n", HERE) == url  # pasted with spaces


@pytest.mark.parametrize(
    "bad", ["not base64!", token("ftp://example.com/x"), token("just words"), "////"]
)
def test_what_is_not_a_setup_token_says_so(bad):
    with pytest.raises(simplefin.ClaimFailed) as caught:
        simplefin.claim_url_of(bad, HERE)
    assert caught.value.reason == "bad_token"


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/claim/x",
        "https://10.0.0.8/claim/x",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost/claim/x",
        "http://bridge.example.com/claim/x",  # http outside development
    ],
)
def test_a_claim_url_gets_the_webhook_address_checks_outside_development(url):
    assert simplefin.claim_url_of(token(url), HERE) == url
    with pytest.raises(simplefin.ClaimFailed) as caught:
        simplefin.claim_url_of(token(url), PRODUCTION)
    assert caught.value.reason == "refused_target"


def test_an_access_url_splits_into_root_and_credentials_and_is_checked():
    access = simplefin.access_of(f"https://user1:{SECRET}@bridge.example.com/simplefin/", HERE)
    assert (access.root, access.username, access.password, access.host) == (
        "https://bridge.example.com/simplefin",
        "user1",
        SECRET,
        "bridge.example.com",
    )
    for bad in ("https://bridge.example.com/simplefin", f"https://u:{SECRET}@10.1.2.3/s"):
        with pytest.raises(ValueError, match="access URL") as caught:
            simplefin.access_of(bad, PRODUCTION)
        assert SECRET not in str(caught.value)


def answer(status: int, body, *, kind: str = "application/json", **headers) -> httpx.Response:
    content = body if isinstance(body, bytes) else body.encode()
    return httpx.Response(status, content=content, headers={"content-type": kind, **headers})


def failure(response: httpx.Response) -> SourceError:
    with pytest.raises(SourceError) as caught:
        simplefin._document(response, "bridge.example.com")
    assert SECRET not in str(caught.value)
    return caught.value


def read_of(*bodies: str) -> simplefin.Reading:
    """What a read answered ``bodies`` (one a window, newest first) comes to."""
    now = datetime(2026, 12, 8, tzinfo=UTC)
    gathered = simplefin._Gathered(start=now - timedelta(days=60))
    for body in bodies:
        simplefin._gather(gathered, simplefin._document(answer(200, body), "bridge.example.com"))
    return simplefin._reading(gathered, now)


def refused(body: str) -> SourceError:
    """The SourceError an answer of errors alone (no account) fails the read with."""
    with pytest.raises(SourceError) as caught:
        read_of(body)
    assert SECRET not in str(caught.value)
    return caught.value


def test_402_is_a_lapsed_subscription_only_the_person_fixes():
    error = failure(answer(402, "Payment Required", kind="text/plain"))
    assert (error.error, error.needs_person, error.transient) == ("payment_required", True, False)
    assert "subscription has lapsed" in error.description


def test_an_html_403_or_429_is_the_front_door_and_passes_later():
    for status in (403, 429):
        page = "<!doctype html><html><body>Just a moment...</body></html>"
        error = failure(answer(status, page, kind="text/html", **{"retry-after": "60"}))
        assert (error.transient, error.needs_person) == (True, False)
        assert "web page" in error.description
        assert "JSON" not in error.description
    assert failure(answer(429, "<html>", kind="text/html", **{"retry-after": "60"})).retry_after


def test_a_protocol_403_is_access_revoked_at_the_bridge():
    error = failure(answer(403, "Forbidden", kind="text/plain"))
    assert (error.error, error.needs_person) == ("access_revoked", True)


def test_a_page_with_200_is_transient_not_a_parse_error():
    error = failure(answer(200, "<html><body>maintenance</body></html>", kind="text/html"))
    assert error.transient
    assert "web page" in error.description


def test_v2_errlist_con_auth_needs_the_person_and_gen_is_transient():
    con_auth = {"errlist": [{"code": "con.auth", "msg": "Bank: sign in again", "conn_id": "C"}]}
    error = refused(str(con_auth).replace("'", '"'))
    assert (error.error, error.needs_person) == ("con.auth", True)
    assert "fix the connection at the SimpleFIN Bridge" in error.description
    gen = '{"errlist": [{"code": "gen.", "msg": "Try later"}], "accounts": []}'
    error = refused(gen)
    assert (error.error, error.transient, error.needs_person) == ("gen.", True, False)


def test_v1_errors_are_understood_by_what_they_say():
    error = refused('{"errors": ["Bank: authentication required"], "accounts": []}')
    assert (error.error, error.needs_person) == ("con.auth", True)
    error = refused('{"errors": ["Bank: temporarily down"], "accounts": []}')
    assert (error.transient, error.needs_person) == (True, False)


def test_a_v1_document_without_errors_is_read():
    document = simplefin._document(
        answer(200, '{"errors": [], "accounts": [{"id": "A", "org": {"domain": "x"}}]}'), "h"
    )
    assert document["accounts"][0]["id"] == "A"


def test_reads_start_at_the_history_then_where_they_left_off_at_most_a_window_back():
    from dashtam_api.sources.shapes import Windows

    now = datetime(2026, 12, 8, tzinfo=UTC)
    first = Windows(since={}, until=now)
    assert simplefin.start_of(first) == now - timedelta(days=90)
    assert simplefin.requests_for(first) == 2  # 90 days, 60 a request
    later = Windows(since={"A": now - timedelta(days=12), "B": now - timedelta(days=3)}, until=now)
    assert simplefin.start_of(later) == now - timedelta(days=12)
    assert simplefin.requests_for(later) == 1
    # An account quiet for months does not make every read walk the history again.
    quiet = Windows(since={"A": now - timedelta(days=3), "Q": now - timedelta(days=200)}, until=now)
    assert simplefin.start_of(quiet) == now - timedelta(days=60)
    assert simplefin.requests_for(quiet) == 1


def account(account_id: str, conn_id: str) -> dict:
    return {
        "id": account_id,
        "name": account_id,
        "conn_id": conn_id,
        "currency": "USD",
        "balance": "10.00",
        "balance-date": 1,
        "transactions": [],
    }


def body(errlist: list, accounts: list, **more) -> str:
    connections = [
        {"conn_id": "C1", "name": "First Bank"},
        {"conn_id": "C2", "name": "Second Bank"},
    ]
    return json.dumps(
        {"errlist": errlist, "connections": connections, "accounts": accounts, **more}
    )


def test_one_banks_con_auth_is_a_note_naming_it_and_the_other_banks_accounts_are_read():
    reading = read_of(
        body(
            [{"code": "con.auth", "msg": "Sign in again", "conn_id": "C1"}],
            [account("A1", "C1"), account("A2", "C2")],
        )
    )
    assert reading.failure is None
    assert [a.external_id for a in reading.accounts] == ["A1", "A2"]
    (note,) = reading.notes
    assert note.startswith("con.auth: First Bank: Sign in again")
    assert "fix the connection at the SimpleFIN Bridge" in note
    # Not every account was vouched for: none is closed, and nothing of the broken bank's
    # account is cancelled (its window is empty); the other's window is the one read.
    assert reading.complete is False
    windows = {a.external_id: a.window for a in reading.accounts}
    assert windows["A1"][0] == windows["A1"][1]
    assert windows["A2"][0] < windows["A2"][1]


def test_con_auth_of_every_bank_whose_accounts_came_fails_needing_the_person_after_them():
    reading = read_of(
        body(
            [
                {"code": "con.auth", "msg": "Sign in again", "conn_id": "C1"},
                {"code": "con.auth", "msg": "Sign in again", "conn_id": "C2"},
            ],
            [account("A1", "C1"), account("A2", "C2")],
        )
    )
    assert (reading.failure.error, reading.failure.needs_person) == ("con.auth", True)
    assert len(reading.accounts) == 2  # still written: what came was paid for


def test_warnings_and_errors_about_an_account_never_fail_a_read():
    reading = read_of(
        body(
            [
                {"code": "gen.quota", "msg": "Too many requests today"},
                {"code": "act.missingdata", "msg": "Incomplete", "account_id": "A2"},
            ],
            [account("A1", "C1"), account("A2", "C2")],
            errors=["Too many requests today", "You are near the daily limit"],
        )
    )
    assert reading.failure is None
    assert reading.notes == (
        "gen.quota: Too many requests today",
        "act.missingdata: A2: Incomplete",
        "gen.warning: You are near the daily limit",
    )


def test_an_error_about_the_whole_answer_fails_the_read_after_the_accounts_that_came():
    reading = read_of(
        body([{"code": "gen.", "msg": "Trouble"}], [account("A1", "C1")]),
    )
    assert (reading.failure.error, reading.failure.transient) == ("gen.", True)
    assert [a.external_id for a in reading.accounts] == ["A1"]
    assert all(a.window[0] == a.window[1] for a in reading.accounts)


class Endless:
    """A server that answers a body of 1,000 chunks of 64 KiB (a setup token can point
    anywhere; endless, for what reads it whole): how many chunks of it were asked for."""

    def __init__(self, chunk: bytes = b" " * 65536):
        self.chunk, self.sent = chunk, 0

    async def body(self):
        while self.sent < 1000:
            self.sent += 1
            yield self.chunk

    def handler(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=self.body(), headers={"content-type": "text/plain"})


CAPPED = SimpleNamespace(
    local_environment=True, webhook_allow_private=True, SIMPLEFIN_MAX_ANSWER_BYTES=1024 * 1024
)


async def test_an_endless_accounts_answer_is_read_no_further_than_the_cap():
    from dashtam_api.sources.shapes import Windows

    server = Endless()
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handler)) as http:
        with pytest.raises(SourceError) as caught:
            await simplefin.read(
                base_url=None,
                credential=f"https://u:{SECRET}@bridge.example.com/simplefin",
                http=http,
                settings=CAPPED,
                windows=Windows(since={}, until=datetime(2026, 12, 8, tzinfo=UTC)),
            )
    assert caught.value.error == "invalid_response"
    assert "SIMPLEFIN_MAX_ANSWER_BYTES" in caught.value.description
    assert SECRET not in str(caught.value)
    assert server.sent <= 1024 * 1024 // 65536 + 2  # stopped at the cap, not at the end


async def test_an_endless_claim_answer_is_refused_unread():
    server = Endless()
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handler)) as http:
        with pytest.raises(simplefin.ClaimFailed) as caught:
            await simplefin.claim(http, token("https://bridge.example.com/claim/x"), CAPPED)
    assert (caught.value.reason, caught.value.error) == ("upstream", "invalid_response")
    assert server.sent <= 3  # an access URL is a few hundred bytes: 64 KiB read at most


def test_a_pending_with_no_time_is_listed_without_one_not_dated_now():
    """Dated by the reconciliation when first seen: the same listing reads the same on every
    read (a time of the read's own would rewrite the row each sync)."""
    raw = {"id": "P", "posted": 0, "amount": "-1.50", "description": "KIOSK", "pending": True}
    first = read_of(body([], [{**account("A1", "C1"), "transactions": [raw]}]))
    (listed,) = first.accounts[0].transactions
    assert (listed.status, listed.transacted_at, listed.posted_at) == ("pending", None, None)


def test_every_broken_bank_is_named_in_the_connections_error():
    reading = read_of(
        body(
            [
                {"code": "con.auth", "msg": "Sign in again.", "conn_id": "C1"},
                {"code": "con.auth", "msg": "Sign in again.", "conn_id": "C2"},
            ],
            [account("A1", "C1"), account("A2", "C2")],
        )
    )
    assert reading.failure.description == (
        f"First Bank: Sign in again; Second Bank: Sign in again: {simplefin.FIX_AT_BRIDGE}"
    )
