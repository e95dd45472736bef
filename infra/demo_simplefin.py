"""`inv demo --source simplefin`: a SimpleFIN Bridge connected as a person would, offline.

The dev API serves a SimpleFIN Bridge look-alike (/sandbox/simplefin): the demo makes a setup
token there (what a person does at bridge.simplefin.org), pastes it into Dashtam (POST
.../authorization), and syncs twice: the first sync walks back 90 days in two requests, the
second reads from where the first left off, and finds the Bridge's pendings posted under new ids
and a block of past transactions re-issued under new ids, none of them doubled. Every request
verifies the project's CA.
"""

import secrets
import ssl

import httpx

from infra.demo import _counted, _say, _show_accounts
from infra.errors import InfraError
from infra.files import read_env
from infra.layout import Layout


def run(layout: Layout) -> None:
    env = read_env(layout.dev_env_file)
    api = env.get("API_BASE_URL", "https://localhost:8000").rstrip("/")
    tls = ssl.create_default_context(cafile=str(layout.ca_file))
    email = f"demo-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(18)
    with httpx.Client(base_url=api, verify=tls, timeout=60) as client:

        def call(method: str, path: str, expect: int, **kwargs) -> httpx.Response:
            response = client.request(method, path, **kwargs)
            _say(f"  {method:<6} {path:<48} {response.status_code}")
            if response.status_code != expect:
                raise InfraError(
                    f"{method} {path} answered {response.status_code}: {response.text[:300]}"
                )
            return response

        _say(f"SimpleFIN demo against {api} (verifying {layout.ca_file.relative_to(layout.root)})")
        _say(f"1. register {email} and log in")
        call("POST", "/api/v1/auth/register", 201, json={"email": email, "password": password})
        tokens = call(
            "POST", "/api/v1/auth/login", 200, json={"email": email, "password": password}
        ).json()
        client.headers["Authorization"] = f"Bearer {tokens['access_token']}"
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
            counted = _count_transactions(call, account["id"])
            _say(f"     {account['name']:<22} {counted}")
        stats = call("GET", f"/sandbox/simplefin/_control/{made['user']}", 200).json()
        status = call("GET", f"{path}/authorization", 200).json()
        _say(
            f"     {stats['requests']} requests to the Bridge so far (budget 24 a day); "
            f"next sync at {status['next_sync_at']}"
        )
        _say("Done: the access URL is sealed in the vault; nothing of it was printed or logged.")


def _count_transactions(call, account_id: str) -> str:
    statuses: dict[str, int] = {}
    cursor = None
    while True:
        query = f"limit=200&from=2000-01-01{f'&cursor={cursor}' if cursor else ''}"
        page = call("GET", f"/api/v1/accounts/{account_id}/transactions?{query}", 200).json()
        for t in page["items"]:
            statuses[t["status"]] = statuses.get(t["status"], 0) + 1
        cursor = page.get("next_cursor")
        if not cursor:
            return ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
