"""`inv demo`: the whole connect flow against the sandbox, over real HTTPS, as a browser would.

register -> log in -> add a sandbox provider -> ask for the authorization URL -> open the
institution's page -> approve -> follow the redirect to the callback server -> read the final
connection status -> sync the accounts and print them with balances and positions -> refresh
the tokens and show the new expiry -> sync again. Every request verifies the project's CA. The end-to-end tests drive the same
``Browser`` against their own servers.

Before connecting, it registers a webhook on a receiver of its own (HTTPS, on a free local port,
under the project's CA) and, at the end, shows the events that arrived, each signature checked
as the Standard Webhooks specification says: webhook.test, connection.active and the syncs'
sync.succeeded, sent by the dev API's dispatcher.
"""

import base64
import hashlib
import hmac
import json
import re
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin

import httpx

from infra.demo_session import say as _say
from infra.demo_session import signed_in
from infra.errors import InfraError
from infra.layout import Layout

# What the demo's receiver must get: the test event, the connection's activation and a
# sync.succeeded for each of the two syncs (delivered apart: the second may come a poll later).
EXPECTED_EVENTS = Counter({"webhook.test": 1, "connection.active": 1, "sync.succeeded": 2})


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.action = values.get("action")
        elif tag == "input" and values.get("type") == "hidden" and values.get("name"):
            self.fields[values["name"]] = values.get("value") or ""


@dataclass
class Step:
    method: str
    url: str
    status: int


class Browser:
    """Follows an authorization like a person's browser: page, form, redirects (Location)."""

    def __init__(self, ca_file: Path):
        self.http = httpx.Client(
            verify=ssl.create_default_context(cafile=str(ca_file)),
            follow_redirects=False,
            timeout=30,
        )
        self.steps: list[Step] = []
        self.redirects: list[str] = []  # every Location followed, in full

    def close(self) -> None:
        self.http.close()

    def _record(self, response: httpx.Response) -> httpx.Response:
        self.steps.append(
            Step(
                response.request.method,
                str(response.request.url).split("?")[0],
                response.status_code,
            )
        )
        return response

    def authorize(self, authorization_url: str, decision: str = "approve") -> httpx.Response:
        """Open the institution's page, answer it, follow the redirects to the final page."""
        page = self._record(self.http.get(authorization_url))
        if page.status_code != 200:
            raise InfraError(f"the institution's page answered {page.status_code}")
        form = _FormParser()
        form.feed(page.text)
        if form.action is None:
            raise InfraError("the institution's page has no form")
        response = self._record(
            self.http.post(
                urljoin(str(page.url), form.action), data={**form.fields, "decision": decision}
            )
        )
        while response.is_redirect:
            target = urljoin(str(response.url), response.headers["location"])
            self.redirects.append(target)
            response = self._record(self.http.get(target))
        return response


class Receiver:
    """A webhook receiver: every POST kept as (arrival time, headers, body), answered 204 (or
    503 while ``failing``), keeping connections alive as a real endpoint would."""

    def __init__(self, layout: Layout) -> None:
        received = self.received = []
        # While set, every POST is answered 503 and not kept (the fault drill's receiver down).
        self.failing = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if receiver.failing:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                received.append((time.time(), headers, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:  # quiet: the demo prints what it got
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(layout.certs_dir / "server.pem", layout.certs_dir / "server-key.pem")
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://localhost:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self, secret: str, expected: Counter, within: float = 15.0) -> list[dict]:
        """The events received, signatures checked, once ``expected`` has come: at least so
        many of each type (two syncs' events are two of one type, and may come apart)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if expected <= Counter(json.loads(body)["type"] for _, _, body in self.received):
                break
            time.sleep(0.05)
        return [_verified(secret, headers, body) for _, headers, body in self.received]


def _verified(secret: str, headers: dict, body: bytes) -> dict:
    """The payload, if its signature is the Standard Webhooks one for this secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [s.partition(",")[2] for s in headers["webhook-signature"].split()]
    if not any(hmac.compare_digest(expected, o) for o in offered):
        raise InfraError(f"webhook {headers['webhook-id']}: the signature does not verify")
    return json.loads(body)


def run(layout: Layout) -> None:
    with signed_in(layout, "Sandbox") as call:
        _say("2. a webhook to a receiver of the demo's own, sent a test event")
        receiver = Receiver(layout)
        webhook = call(
            "POST",
            "/api/v1/webhooks",
            201,
            json={
                "url": receiver.url,
                "events": ["connection.active", "sync.succeeded", "sync.failed"],
                "description": "inv demo",
            },
        ).json()
        call("POST", f"/api/v1/webhooks/{webhook['id']}/test", 202)
        _say("3. the provider catalog")
        for kind in call("GET", "/api/v1/provider-types", 200).json():
            _say(f"     {kind['key']:<10} {kind['name']:<24} configured={kind['configured']}")
        _say("4. add a sandbox provider")
        provider = call(
            "POST",
            "/api/v1/providers",
            201,
            json={"provider_key": "sandbox", "alias": "Demo Sandbox"},
        ).json()
        path = f"/api/v1/providers/{provider['id']}/authorization"
        _say("5. ask for the authorization URL")
        start = call("POST", path, 201).json()
        _say(f"     {re.sub(r'state=[^&]+', 'state=…', start['authorization_url'])[:110]}")
        _say("6. approve at the institution and follow the redirects, as a browser")
        browser = Browser(layout.ca_file)
        try:
            final = browser.authorize(start["authorization_url"])
        finally:
            browser.close()
        for step in browser.steps:
            _say(f"  {step.method:<6} {step.url:<48} {step.status}")
        title = re.search(r"<h1>(.*?)</h1>", final.text)
        _say(f"     callback page: {title.group(1) if title else final.status_code}")
        _say("7. the connection")
        status = call("GET", path, 200).json()
        _say(
            f"     status={status['status']} scope={status['scope']} "
            f"expires_at={status['expires_at']}"
        )
        if status["status"] != "active":
            raise InfraError(f"the connection ended {status['status']}, not active")
        provider_path = f"/api/v1/providers/{provider['id']}"
        _say("8. sync the accounts, balances, positions and transactions")
        synced = call("POST", f"{provider_path}/sync", 200).json()
        _say(
            f"     {synced['accounts']} accounts, {synced['positions']} positions, "
            f"{_counted(synced)}"
        )
        _show_accounts(call, provider_path)
        pending = _show_transactions(call, "the newest transactions (cursor pages, newest first)")
        _say("9. refresh the tokens now")
        refreshed = call("POST", f"{path}/refresh", 200).json()
        _say(f"     expires_at {status['expires_at']} -> {refreshed['expires_at']}")
        _say(f"     reconnect_by {refreshed['reconnect_by']}")
        _say("10. sync again: the sandbox's numbers move and its clock a day with every sync")
        again = call("POST", f"{provider_path}/sync", 200).json()
        _say(f"     {_counted(again)}")
        _show_accounts(call, provider_path, positions=False)
        _say("11. yesterday's pending transactions, now")
        for transaction_id in pending:
            t = call("GET", f"/api/v1/transactions/{transaction_id}", 200).json()
            _say(f"     {_transaction_line(t)}  (was pending)")
        _say("12. the webhooks received (each signature checked)")
        try:
            events = receiver.events(webhook["secret"], EXPECTED_EVENTS)
        finally:
            receiver.close()
        for event in events:
            _say(f"     {event['type']:<18} {_event_line(event)}")
        if not Counter(e["type"] for e in events) >= EXPECTED_EVENTS:
            raise InfraError("not every webhook arrived: is the dev API's dispatcher running?")
        attempts = call("GET", f"/api/v1/webhooks/{webhook['id']}/deliveries", 200).json()
        answered = sorted({str(a["status_code"]) for a in attempts["items"]})
        _say(f"     {len(attempts['items'])} attempts on record, answered {', '.join(answered)}")
        _say(
            "Done: tokens stored encrypted and refreshed, accounts read into Dashtam; "
            "the audit log holds every token event."
        )


def _counted(synced: dict) -> str:
    counts = synced["transactions"]
    return (
        f"transactions: {counts['added']} added, {counts['modified']} modified, "
        f"{counts['removed']} removed"
    )


def _event_line(event: dict) -> str:
    data = event["data"]
    if event["type"] == "sync.succeeded":
        counts = data["counts"]
        moved = counts["transactions"] or {}
        return (
            f"{counts['accounts']} accounts, {counts['positions']} positions, "
            f"{moved.get('added', 0)} added / {moved.get('modified', 0)} modified transactions"
        )
    if event["type"].startswith("connection."):
        return f"{data.get('previous_status')} -> {data['status']}"
    return event["timestamp"]


def _transaction_line(t: dict) -> str:
    return (
        f"{t['occurred_at'][:10]} {t['status']:<9} {t['amount']:>10} {t['currency']} "
        f"{t['description'][:40]}"
    )


def _show_transactions(call, title: str) -> list[str]:
    """The first page (5) of the person's transactions; returns the pending ones' ids."""
    _say(f"     {title}:")
    page = call("GET", "/api/v1/transactions?limit=5", 200).json()
    for t in page["items"]:
        _say(f"     {_transaction_line(t)}")
    return [t["id"] for t in page["items"] if t["status"] == "pending"]


def _show_accounts(call, provider_path: str, *, positions: bool = True) -> None:
    accounts = call("GET", f"{provider_path}/accounts", 200).json()["items"]
    for account in accounts:
        balance = account["balance"] or {}
        _say(
            f"     {account['name']:<20} {account['account_type']:<10} "
            f"{account['number_masked'] or '':<9} {balance.get('current', '-'):>14} "
            f"{account['currency']}"
        )
        if not positions:
            continue
        held = call("GET", f"/api/v1/accounts/{account['id']}/positions", 200).json()["items"]
        for p in held:
            _say(
                f"         {p['symbol']:<6} {p['quantity']:>10} x {p['price']:>8} "
                f"= {p['market_value']:>12} (cost {p['cost_basis']})"
            )
