"""`inv demo --source enablebanking`: a bank connected through Enable Banking as a person would,
offline.

The dev API serves an Enable Banking look-alike (/sandbox/enablebanking) and, unconfigured,
uses it with the application key `inv setup` made. The demo lists Finland's banks, picks one,
opens the stand-in bank's page and approves there as a browser would, follows its redirect
through the real callback server (which forwards code and state to the API), and syncs twice:
the second sync adds only what changed, the card payment that was pending booked under a new
entry_reference without a duplicate. Every request verifies the project's CA.
"""

import re

from infra.demo import Browser, _counted, _say, _show_accounts, _show_transactions
from infra.demo_session import signed_in
from infra.errors import InfraError
from infra.layout import Layout

BANK = {"name": "Sandbox Bank", "country": "FI"}


def run(layout: Layout) -> None:
    with signed_in(layout, "Enable Banking") as call:
        _say("2. add an Enable Banking provider and list Finland's banks")
        provider = call(
            "POST",
            "/api/v1/providers",
            201,
            json={"provider_key": "enablebanking", "alias": "Demo bank"},
        ).json()
        path = f"/api/v1/providers/{provider['id']}"
        for bank in call("GET", f"{path}/banks?country=FI", 200).json()["items"]:
            days = (bank["maximum_consent_validity"] or 0) // 86400
            _say(f"     {bank['name']:<20} {bank['bic'] or '':<10} consents up to {days} days")
        _say(f"3. pick {BANK['name']}: the answer is the bank's page")
        start = call("POST", f"{path}/authorization", 201, json={"bank": BANK}).json()
        _say(f"     {start['authorization_url']}")
        _say("4. approve at the bank and follow its redirect through the callback server")
        browser = Browser(layout.ca_file)
        try:
            final = browser.authorize(start["authorization_url"])
        finally:
            browser.close()
        for step in browser.steps:
            _say(f"  {step.method:<6} {step.url:<48} {step.status}")
        title = re.search(r"<h1>(.*?)</h1>", final.text)
        _say(f"     callback page: {title.group(1) if title else final.status_code}")
        status = call("GET", f"{path}/authorization", 200).json()
        _say(f"     status={status['status']} reconnect_by={status['reconnect_by']}")
        if status["status"] != "active":
            raise InfraError(f"the connection ended {status['status']}, not active")
        _say("5. sync: balances and 90 days of transactions (one of the bank's 4 reads a day)")
        first = call("POST", f"{path}/sync", 200).json()
        _say(f"     {first['accounts']} accounts, {_counted(first)}")
        _show_accounts(call, path, positions=False)
        _show_transactions(call, "the newest transactions")
        _say("6. sync again: the pending card payment booked under a new entry_reference")
        second = call("POST", f"{path}/sync", 200).json()
        _say(f"     {_counted(second)}")
        if _show_transactions(call, "the newest transactions"):
            raise InfraError("a pending transaction is still pending after the bank booked it")
        status = call("GET", f"{path}/authorization", 200).json()
        _say(f"     next sync at {status['next_sync_at']} (4 reads a day, spread out)")
        _say("Done: the session is sealed in the vault; accounts are keyed by identification_hash.")
