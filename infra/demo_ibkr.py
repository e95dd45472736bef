"""`inv demo --source ibkr`: Interactive Brokers' Flex Web Service connected as a person would,
offline.

The dev API serves a Flex look-alike (/sandbox/ibkr): the demo makes a Flex token and an
Activity Flex query there (what a person does in IBKR's portal), gives both to Dashtam (POST
.../authorization, tried once at IBKR, then sealed), and syncs twice: the first reads a year of
statements (IBKR still making it at first: asked again), the second only the next day's
activity. Then a new token replaces the old one at IBKR, the sync says the person must
reconnect, and reconnecting with the new token keeps every account and transaction. Every
request verifies the project's CA.
"""

from infra.demo import _counted, _say, _show_accounts, _show_transactions
from infra.demo_session import count_transactions, signed_in
from infra.errors import InfraError
from infra.layout import Layout

FLEX = "/sandbox/ibkr"


def run(layout: Layout) -> None:
    with signed_in(layout, "IBKR Flex") as call:
        _say("2. a Flex token and an Activity Flex query (made in the look-alike's portal)")
        made = call("POST", f"{FLEX}/tokens", 201, json={}).json()
        _say(f"     token {made['token'][:4]}… query id {made['query_id']}")
        _say("3. add an Interactive Brokers provider and give it the token and query id")
        provider = call(
            "POST", "/api/v1/providers", 201, json={"provider_key": "ibkr", "alias": "Demo IBKR"}
        ).json()
        path = f"/api/v1/providers/{provider['id']}"
        body = {"token": made["token"], "query_id": made["query_id"]}
        status = call("POST", f"{path}/authorization", 201, json=body).json()
        _say(f"     status={status['status']} (the token tried once at IBKR, then sealed)")
        if status["status"] != "active":
            raise InfraError(f"the connection ended {status['status']}, not active")
        _say("4. sync: a year of activity in one statement (IBKR makes it, then it is fetched)")
        first = call("POST", f"{path}/sync", 200).json()
        _say(
            f"     {first['accounts']} accounts, {first['positions']} positions, {_counted(first)}"
        )
        _show_accounts(call, path)
        _show_transactions(call, "the newest transactions")
        _say("5. sync again: only the next day's activity is new")
        second = call("POST", f"{path}/sync", 200).json()
        _say(f"     {_counted(second)}")
        _say("6. a new Flex token at IBKR invalidates the old one: the sync asks for the person")
        renewed = call("POST", f"{FLEX}/tokens", 201, json={"user": made["user"]}).json()
        call("POST", f"{path}/sync", 502)
        status = call("GET", f"{path}/authorization", 200).json()
        _say(f"     status={status['status']} action={status['action']}")
        _say(f"     {status['sync_error']}")
        _say("7. reconnect with the new token: the same accounts, nothing doubled")
        body = {"token": renewed["token"], "query_id": renewed["query_id"]}
        call("POST", f"{path}/authorization", 201, json=body)
        third = call("POST", f"{path}/sync", 200).json()
        _say(f"     {_counted(third)}")
        for account in call("GET", f"{path}/accounts", 200).json()["items"]:
            _say(f"     {account['name']:<22} {count_transactions(call, account['id'])}")
        stats = call("GET", f"{FLEX}/_control/{made['user']}", 200).json()
        _say(f"     {stats['sent']} SendRequest and {stats['got']} GetStatement calls to IBKR")
        _say(
            "Done: the Flex token is sealed in the vault; nothing of it was logged or stored plain."
        )
