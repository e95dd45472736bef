"""`inv demo --source plaid`: Plaid connected as a person would, offline.

The dev API serves Plaid's look-alike (/sandbox/plaid): the demo starts a Link through Dashtam
(POST .../authorization: a link token and the page that opens Link), completes it at the
look-alike's stand-in Link (what the page's Sign in does), hands the public token back (POST
.../authorization/exchange), and syncs: accounts, positions, two years of transactions paged
from no cursor. Then the bank moves on (pendings post under new ids, one is dropped) and Plaid
says so with a signed SYNC_UPDATES_AVAILABLE webhook, which Dashtam verifies and answers with a
sync from the cursor: the pendings become their posted selves, nothing doubled. Every request
verifies the project's CA.
"""

import secrets
import time

from infra.demo import _counted, _say, _show_accounts
from infra.demo_session import count_transactions, signed_in
from infra.errors import InfraError
from infra.layout import Layout


def run(layout: Layout) -> None:
    login = f"user_demo_{secrets.token_hex(3)}"
    with signed_in(layout, "Plaid") as call:
        _say("2. add a Plaid provider and start a Link (transactions and investments)")
        provider = call(
            "POST", "/api/v1/providers", 201, json={"provider_key": "plaid", "alias": "Demo Plaid"}
        ).json()
        path = f"/api/v1/providers/{provider['id']}"
        begun = call(
            "POST",
            f"{path}/authorization",
            201,
            json={"products": ["transactions", "investments"]},
        ).json()
        _say(f"     link page: {begun['link_url'][:60]}… (open it to do this in a browser)")
        _say(f"3. sign in at the stand-in Link as {login}; the public token goes to Dashtam")
        completed = call(
            "POST",
            "/sandbox/plaid/link/complete",
            200,
            json={"link_token": begun["link_token"], "username": login},
        ).json()
        status = call(
            "POST",
            f"{path}/authorization/exchange",
            200,
            json={"public_token": completed["public_token"]},
        ).json()
        _say(f"     status={status['status']} (the access token is sealed in the vault)")
        _say("4. sync: the item's whole history, page after page")
        first = call("POST", f"{path}/sync", 200).json()
        _say(
            f"     {first['accounts']} accounts, {first['positions']} positions, {_counted(first)}"
        )
        _show_accounts(call, path)
        _say("5. the bank moves on; Plaid's signed webhook tells Dashtam, which syncs")
        call("POST", f"/sandbox/plaid/_control/{login}/advance", 204)
        item_id = call("GET", f"/sandbox/plaid/_control/{login}", 200).json()["items"][-1]
        hook = call(
            "POST", "/sandbox/plaid/_control/webhook", 200, json={"item_id": item_id}
        ).json()
        answer = call(
            "POST",
            "/api/v1/plaid/webhook",
            200,
            content=hook["body"].encode(),
            headers={
                "Content-Type": "application/json",
                "Plaid-Verification": hook["plaid_verification"],
            },
        ).json()
        _say(f"     the webhook was verified: {answer['received']}")
        run = _second_run(call, path)
        _say(f"     the webhook's sync ({run['trigger']}): {_counted(run)}")
        _say("6. what Dashtam holds now, and the newest transactions")
        accounts = call("GET", f"{path}/accounts", 200).json()["items"]
        for account in accounts:
            _say(f"     {account['name']:<22} {count_transactions(call, account['id'])}")
        checking = next(a for a in accounts if a["name"] == "Plaid Checking")
        newest = call("GET", f"/api/v1/accounts/{checking['id']}/transactions?limit=6", 200).json()[
            "items"
        ]
        for t in newest:
            _say(
                f"     {t['occurred_at'][:10]} {t['status']:<9} {t['amount']:>10} "
                f"{t['currency']} {t['description']}"
            )
        _say("Done: nothing of the access token was printed or logged.")


def _second_run(call, path: str, timeout: float = 30) -> dict:
    """The sync the webhook started, once it has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = call("GET", f"{path}/sync-runs", 200).json()["items"]
        if len(runs) >= 2 and runs[0]["status"] != "running":
            if runs[0]["status"] != "succeeded":
                raise InfraError(f"the webhook's sync ended {runs[0]['status']}: {runs[0]}")
            return runs[0]
        time.sleep(0.5)
    raise InfraError("the webhook's sync did not end within 30 seconds")
