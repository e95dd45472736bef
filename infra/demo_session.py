"""What every `inv demo --source …` starts with: a client of the dev API that verifies the
project's CA, a new person registered and signed in, and ``call`` (a request printed as it goes,
an answer other than the one expected a one-line error)."""

import secrets
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from infra.errors import InfraError
from infra.files import read_env
from infra.layout import Layout

Call = Callable[..., httpx.Response]


def say(message: str) -> None:
    print(message, flush=True)


@contextmanager
def signed_in(layout: Layout, title: str) -> Iterator[Call]:
    env = read_env(layout.dev_env_file)
    api = env.get("API_BASE_URL", "https://localhost:8000").rstrip("/")
    tls = ssl.create_default_context(cafile=str(layout.ca_file))
    email = f"demo-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(18)
    with httpx.Client(base_url=api, verify=tls, timeout=60) as client:

        def call(method: str, path: str, expect: int, **kwargs) -> httpx.Response:
            response = client.request(method, path, **kwargs)
            say(f"  {method:<6} {path.split('?')[0]:<48} {response.status_code}")
            if response.status_code != expect:
                raise InfraError(
                    f"{method} {path} answered {response.status_code}: {response.text[:300]}"
                )
            return response

        say(f"{title} demo against {api} (verifying {layout.ca_file.relative_to(layout.root)})")
        say(f"1. register {email} and log in")
        call("POST", "/api/v1/auth/register", 201, json={"email": email, "password": password})
        tokens = call(
            "POST", "/api/v1/auth/login", 200, json={"email": email, "password": password}
        ).json()
        client.headers["Authorization"] = f"Bearer {tokens['access_token']}"
        yield call


def count_transactions(call: Call, account_id: str) -> str:
    """An account's transactions by status: "120 posted, 2 pending"."""
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
