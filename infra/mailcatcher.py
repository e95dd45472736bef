"""The local mail catcher of the development and test environments: an SMTP server that keeps
every message instead of delivering it, and an HTTPS API and page to read them.

One catcher serves both environments, as one PostgreSQL and one Valkey do: each message is
tagged with the environment that sent it (Dashtam's ``X-Dashtam-Environment`` header), so
`inv mail` shows development's and a test run deletes only testing's. The HTTP API is the slice
of Mailpit's (the catcher the Compose stack runs, tagged the same way) that Dashtam uses, so
one client reads either: ``GET /api/v1/messages``, ``GET|DELETE /api/v1/search?query=``
(``to:ADDRESS``, ``tag:NAME``, words), ``GET /api/v1/message/{ID}[/raw]``,
``DELETE /api/v1/messages``.

SMTP requires STARTTLS under the project's certificate, as Dashtam's mailer requires it of any
server. Messages are files (0600; reset links are secrets) under the servers' data, so they
survive a restart; the newest ``KEEP`` are kept. Started by the local runtime
(infra/runtime/mail_catcher.py) as ``uvicorn infra.mailcatcher:create_app --factory`` with
``DASHTAM_MAIL_*`` set; it listens on 127.0.0.1 only.
"""

import asyncio
import email
import email.policy
import html
import os
import re
import secrets
import shlex
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

KEEP = 1000
ENVIRONMENT_HEADER = "X-Dashtam-Environment"
_ID = re.compile(r"^[0-9]{19}-[0-9a-f]{8}$")


@dataclass(frozen=True)
class Stored:
    id: str
    path: Path
    message: EmailMessage

    @property
    def tags(self) -> list[str]:
        tags = [t.strip() for t in str(self.message.get("X-Tags", "")).split(",") if t.strip()]
        environment = str(self.message.get(ENVIRONMENT_HEADER, "")).strip()
        return sorted({*tags, environment} - {""})

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        return part.get_content() if part is not None else ""

    def addresses(self, *headers: str) -> list[dict[str, str]]:
        values = [str(v) for h in headers for v in self.message.get_all(h, [])]
        return [{"Name": name, "Address": address} for name, address in getaddresses(values)]

    def summary(self) -> dict:
        name, address = parseaddr(str(self.message.get("From", "")))
        created = datetime.fromtimestamp(int(self.id.split("-")[0]) / 1e9, UTC)
        return {
            "ID": self.id,
            "MessageID": str(self.message.get("Message-ID", "")).strip("<>"),
            "Read": False,
            "From": {"Name": name, "Address": address},
            "To": self.addresses("To"),
            "Cc": self.addresses("Cc"),
            "Bcc": [],
            "ReplyTo": self.addresses("Reply-To"),
            "Subject": str(self.message.get("Subject", "")),
            "Created": created.isoformat().replace("+00:00", "Z"),
            "Tags": self.tags,
            "Size": self.path.stat().st_size,
            "Attachments": 0,
            "Snippet": " ".join(self.text.split())[:250],
        }

    def detail(self) -> dict:
        out = self.summary()
        out.update(Date=str(self.message.get("Date", "")), Text=self.text, HTML="")
        return out

    def matches(self, terms: list[str]) -> bool:
        """Mailpit's search: every term must match; ``to:``/``from:``/``subject:``/``tag:``
        narrow it to one field, a bare word looks in the subject, addresses and text."""
        for term in terms:
            field, _, value = term.partition(":") if ":" in term else ("", "", term)
            value = value.lower()
            if field == "tag":
                found = value in (t.lower() for t in self.tags)
            elif field == "to":
                found = any(value in a["Address"].lower() for a in self.addresses("To", "Cc"))
            elif field == "from":
                found = value in str(self.message.get("From", "")).lower()
            elif field == "subject":
                found = value in str(self.message.get("Subject", "")).lower()
            else:
                haystack = " ".join(
                    [str(self.message.get(h, "")) for h in ("Subject", "From", "To")] + [self.text]
                )
                found = term.lower() in haystack.lower()
            if not found:
                return False
        return True


class Mailbox:
    """Messages as files named by arrival (nanoseconds) and a random suffix: sorting the names
    sorts the messages, newest last."""

    def __init__(self, directory: Path, keep: int = KEEP) -> None:
        self.directory = directory
        self.keep = keep
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # A message's file never changes once written: each is parsed once, not at every
        # search (tests poll by recipient while development's mail piles up to KEEP).
        self._parsed: dict[Path, Stored] = {}

    def add(self, raw: bytes) -> str:
        message_id = f"{time.time_ns():019d}-{secrets.token_hex(4)}"
        path = self.directory / f"{message_id}.eml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        for old in self._paths()[: -self.keep]:
            old.unlink(missing_ok=True)
            self._parsed.pop(old, None)
        return message_id

    def _paths(self) -> list[Path]:
        return sorted(self.directory.glob("*.eml"))

    def _load(self, path: Path) -> Stored | None:
        if path in self._parsed:
            return self._parsed[path]
        try:
            raw = path.read_bytes()
        except FileNotFoundError:  # deleted meanwhile
            return None
        message = email.message_from_bytes(raw, policy=email.policy.default)
        stored = self._parsed[path] = Stored(path.stem, path, message)  # type: ignore[arg-type]
        return stored

    def search(self, query: str = "") -> list[Stored]:
        """Newest first."""
        terms = shlex.split(query)
        paths = self._paths()
        for gone in self._parsed.keys() - set(paths):
            del self._parsed[gone]
        found = []
        for path in reversed(paths):
            stored = self._load(path)
            if stored is not None and stored.matches(terms):
                found.append(stored)
        return found

    def get(self, message_id: str) -> Stored | None:
        if message_id == "latest":
            paths = self._paths()
            return self._load(paths[-1]) if paths else None
        if not _ID.match(message_id):
            return None
        return self._load(self.directory / f"{message_id}.eml")

    def delete(self, stored: list[Stored]) -> int:
        for item in stored:
            item.path.unlink(missing_ok=True)
            self._parsed.pop(item.path, None)
        return len(stored)


class Handler:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if session.ssl is None:
            return "530 Must issue a STARTTLS command first"
        raw = envelope.original_content or b""
        message_id = await asyncio.to_thread(self.mailbox.add, raw)
        return f"250 Kept as {message_id}"


def _listing(found: list[Stored], request: Request) -> dict:
    try:
        start = max(0, int(request.query_params.get("start", 0)))
        limit = max(1, min(1000, int(request.query_params.get("limit", 50))))
    except ValueError:
        start, limit = 0, 50
    page = found[start : start + limit]
    return {
        "total": len(found),
        "unread": len(found),
        "count": len(page),
        "messages_count": len(found),
        "start": start,
        "tags": sorted({t for s in found for t in s.tags}),
        "messages": [s.summary() for s in page],
    }


_URL = re.compile(r"https?://[^\s<>&\"]+")


def _page(found: list[Stored]) -> str:
    items = []
    for stored in found[:200]:
        summary = stored.summary()
        text = _URL.sub(
            lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', html.escape(stored.text)
        )
        to = ", ".join(a["Address"] for a in summary["To"])
        items.append(
            f"<details><summary>{html.escape(summary['Created'][:19])} "
            f"[{html.escape(', '.join(summary['Tags']) or '-')}] "
            f"<b>{html.escape(summary['Subject'])}</b> to {html.escape(to)}</summary>"
            f"<pre>{text}</pre></details>"
        )
    body = "\n".join(items) or "<p>No mail yet.</p>"
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Dashtam mail</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto}"
        "pre{white-space:pre-wrap;background:#f4f4f4;padding:1rem}</style>"
        f"<h1>Mail kept by the local catcher ({len(found)})</h1>{body}</html>"
    )


def create_app() -> Starlette:
    directory = Path(os.environ["DASHTAM_MAIL_DIR"])
    smtp_port = int(os.environ["DASHTAM_MAIL_SMTP_PORT"])
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(os.environ["DASHTAM_MAIL_TLS_CERT"], os.environ["DASHTAM_MAIL_TLS_KEY"])
    mailbox = Mailbox(directory)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(
                Handler(mailbox),
                hostname="localhost",
                tls_context=tls,
                require_starttls=True,
                ident="Dashtam mail catcher",
            ),
            host="127.0.0.1",
            port=smtp_port,
        )
        try:
            yield
        finally:
            server.close()
            await server.wait_closed()

    async def health(request: Request) -> Response:
        count = len(mailbox._paths())
        return JSONResponse({"status": "ok", "messages": count, "smtp_port": smtp_port})

    async def messages(request: Request) -> Response:
        if request.method == "DELETE":
            mailbox.delete(mailbox.search())
            return PlainTextResponse("ok")
        return JSONResponse(_listing(mailbox.search(), request))

    async def search(request: Request) -> Response:
        try:
            found = mailbox.search(request.query_params.get("query", ""))
        except ValueError as exc:  # an unclosed quote
            return PlainTextResponse(f"bad query: {exc}", status_code=400)
        if request.method == "DELETE":
            mailbox.delete(found)
            return PlainTextResponse("ok")
        return JSONResponse(_listing(found, request))

    async def message(request: Request) -> Response:
        stored = mailbox.get(request.path_params["id"])
        if stored is None:
            return PlainTextResponse("message not found", status_code=404)
        if request.url.path.endswith("/raw"):
            return PlainTextResponse(stored.path.read_text(errors="replace"))
        return JSONResponse(stored.detail())

    async def page(request: Request) -> Response:
        try:
            found = mailbox.search(request.query_params.get("query", ""))
        except ValueError as exc:
            return PlainTextResponse(f"bad query: {exc}", status_code=400)
        return HTMLResponse(_page(found))

    return Starlette(
        routes=[
            Route("/", page),
            Route("/health", health),
            Route("/readyz", health),  # Mailpit's name for it
            Route("/api/v1/messages", messages, methods=["GET", "DELETE"]),
            Route("/api/v1/search", search, methods=["GET", "DELETE"]),
            Route("/api/v1/message/{id}", message),
            Route("/api/v1/message/{id}/raw", message),
        ],
        lifespan=lifespan,
    )
