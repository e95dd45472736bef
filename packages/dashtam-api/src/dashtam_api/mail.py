"""Mail out, over SMTP with TLS (aiosmtplib): STARTTLS for smtp://, TLS from the start for
smtps://, the server's certificate verified (the system's CAs and the project's). Every message
says which Dashtam environment sent it (``X-Dashtam-Environment``)."""

import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

import aiosmtplib

from dashtam_core.config import Settings


class MailError(Exception):
    """The message could not be handed to the SMTP server; the reason, without credentials."""


class Mailer:
    def __init__(self, settings: Settings, tls: ssl.SSLContext) -> None:
        self.settings = settings
        self.tls = tls
        self._url = urlsplit(settings.SMTP_URL) if settings.SMTP_URL else None

    @property
    def enabled(self) -> bool:
        return self._url is not None

    def message(self, *, to: str, subject: str, text: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.settings.MAIL_FROM
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(domain="dashtam")
        message["X-Dashtam-Environment"] = self.settings.ENVIRONMENT
        message.set_content(text)
        return message

    async def send(self, message: EmailMessage) -> None:
        url = self._url
        if url is None:
            raise MailError("no SMTP_URL: this instance sends no mail")
        implicit = url.scheme == "smtps"
        try:
            await aiosmtplib.send(
                message,
                hostname=url.hostname,
                port=url.port or (465 if implicit else 587),
                username=unquote(url.username) if url.username else None,
                password=unquote(url.password) if url.password else None,
                use_tls=implicit,
                start_tls=not implicit,  # required: a server without STARTTLS is refused
                tls_context=self.tls,
                timeout=self.settings.SMTP_TIMEOUT_SECONDS,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise MailError(f"{url.hostname}:{url.port}: {type(exc).__name__}: {exc}") from None
