"""`inv demo --source simplefin`: a SimpleFIN Bridge connected as a person would, offline.

The dev API serves a SimpleFIN Bridge look-alike (/sandbox/simplefin): the demo makes a setup
token there (what a person does at bridge.simplefin.org), pastes it into Dashtam (POST
.../authorization), and syncs twice: the first sync walks back 90 days in two requests, the
second reads from where the first left off, and finds the Bridge's pendings posted under new ids
and a block of past transactions re-issued under new ids, none of them doubled. Every request
verifies the project's CA.
"""

from infra.demo import _counted, _say, _show_accounts
from infra.demo_session import count_transactions, signed_in
from infra.errors import InfraError
from infra.layout import Layout


def run(layout: Layout) -> None:
    with signed_in(layout, "SimpleFIN") as call:
        _say("2. a setup token from the SimpleFIN Bridge (the look-alike this API serves)")
        made = call("POST", "/sandbox/simplefin/setup-tokens", 201).json()
        _say(f"     {made['setup_token'][:24]}… (the base64 of a claim URL, claimable once)")
        _say("3. add a SimpleFIN provider and paste the setup token")
        provider = call(
            "POST",
            "/api/v1/providers",
            201,
            json={"provider_key": "simplefin", "alias": "Demo Bridge"},
        ).json()
        path = f"/api/v1/providers/{provider['id']}"
        status = call(
            "POST", f"{path}/authorization", 201, json={"setup_token": made["setup_token"]}
        ).json()
        _say(f"     status={status['status']} reconnect_by={status['reconnect_by']}")
        if status["status"] != "active":
            raise InfraError(f"the connection ended {status['status']}, not active")
        _say("4. sync: 90 days of history, 60 days a request")
        first = call("POST", f"{path}/sync", 200).json()
        _say(
            f"     {first['accounts']} accounts, {first['positions']} positions, {_counted(first)}"
        )
        _show_accounts(call, path)
        _say("5. sync again: pendings posted under new ids, a block of ids re-issued")
        second = call("POST", f"{path}/sync", 200).json()
        _say(f"     {_counted(second)}")
        _say("6. what Dashtam holds now")
        for account in call("GET", f"{path}/accounts", 200).json()["items"]:
            counted = count_transactions(call, account["id"])
            _say(f"     {account['name']:<22} {counted}")
        stats = call("GET", f"/sandbox/simplefin/_control/{made['user']}", 200).json()
        status = call("GET", f"{path}/authorization", 200).json()
        _say(
            f"     {stats['requests']} requests to the Bridge so far (budget 24 a day); "
            f"next sync at {status['next_sync_at']}"
        )
        _say("Done: the access URL is sealed in the vault; nothing of it was printed or logged.")
