"""The demo's webhook receiver (infra/demo.py): `inv demo` ends by showing what it received,
and waits for all of it, two events of one type included."""

import base64
import hashlib
import hmac
import json
import ssl
import threading
import uuid

import httpx

from infra.certs import ensure_certs
from infra.demo import EXPECTED_EVENTS, Receiver
from infra.layout import Layout

KEY = b"k" * 32
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def _deliver(receiver: Receiver, ca_file, event_type: str) -> None:
    """One event as the API's dispatcher sends it (Standard Webhooks headers, signed)."""
    body = json.dumps({"type": event_type, "data": {}}).encode()
    webhook_id, timestamp = f"msg_{uuid.uuid4().hex}", "1764633600"
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{signature}",
        "content-type": "application/json",
    }
    tls = ssl.create_default_context(cafile=str(ca_file))
    response = httpx.post(receiver.url, content=body, headers=headers, verify=tls)
    assert response.status_code == 204


def test_it_waits_for_the_second_sync_event_that_comes_a_poll_later(tmp_path):
    layout = Layout(root=tmp_path)
    ensure_certs(layout.certs_dir)
    receiver = Receiver(layout)
    try:
        for event_type in ("webhook.test", "connection.active", "sync.succeeded"):
            _deliver(receiver, layout.ca_file, event_type)
        later = threading.Timer(0.5, _deliver, (receiver, layout.ca_file, "sync.succeeded"))
        later.start()
        events = receiver.events(SECRET, EXPECTED_EVENTS, within=10)
        later.join()
    finally:
        receiver.close()
    assert [e["type"] for e in events].count("sync.succeeded") == 2
