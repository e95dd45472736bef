"""Where a webhook may be sent: the URL's form when it is registered, and the addresses its
host resolves to before every connection (so a name that resolves to our own network, now or
after the check, cannot be used to reach it).

Outside development and testing (or with WEBHOOK_ALLOW_PRIVATE off) only ``https`` and only
globally routable addresses: loopback, private, shared (CGNAT), link-local (cloud metadata at
169.254.169.254), multicast, reserved and unspecified ones are refused, IPv4-mapped IPv6 ones
by their IPv4 address. The connection is made to the checked address itself, with the URL's
name for TLS (SNI and certificate) and the Host header.
"""

import asyncio
import ipaddress
import re
import select
import socket
from collections.abc import Iterable
from typing import Annotated
from urllib.parse import urlsplit

import httpcore
from pydantic import AfterValidator, Field

MAX_URL_LENGTH = 2000
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The form a URL must have, as the OpenAPI document gives it: every URL of this form passes
# check_url where http and private targets are allowed; what else check_url refuses (http, or
# a private address, in production) depends on the deployment. Plain ASCII (ECMA-262 and Rust
# regex read it alike): a host name of LDH labels, an IPv4 address or an IPv6 one in brackets
# (each form ipaddress accepts), a port 1-65535, then a path and query of RFC 3986's characters.
_H16 = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join(
    (
        f"(?:{_H16}:){{7}}{_H16}",
        f"(?:{_H16}:){{1,7}}:",
        f"(?:{_H16}:){{1,6}}:{_H16}",
        *(f"(?:{_H16}:){{1,{n}}}(?::{_H16}){{1,{7 - n}}}" for n in (5, 4, 3, 2)),
        f"{_H16}:(?::{_H16}){{1,6}}",
        f":(?:(?::{_H16}){{1,7}}|:)",
    )
)
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = "6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}"
_CHAR = "[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2}"
URL_PATTERN = (
    f"^https?://(?:{_LABEL}(?:\\.{_LABEL})*|\\[(?:{_IPV6})\\])(?::(?:{_PORT}))?"
    f"(?:/(?:{_CHAR})*)*(?:\\?(?:{_CHAR}|[/?])*)?$"
)
HTTPS_URL_PATTERN = URL_PATTERN.replace("^https?://", "^https://", 1)
_URL = re.compile(URL_PATTERN)


def _url_form(url: str) -> str:
    if not _URL.fullmatch(url):
        raise ValueError(
            "must be an http(s) URL: scheme://host[:port][/path][?query] (no user name, "
            "password or #fragment; a host name in ASCII)"
        )
    return url


WebhookUrl = Annotated[
    str, AfterValidator(_url_form), Field(json_schema_extra={"pattern": URL_PATTERN})
]


class RefusedTarget(Exception):
    """A target this instance will not send to; the message says why, for people."""


def public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_url(url: str, *, allow_http: bool, allow_private: bool) -> str:
    """The URL if it may be registered; RefusedTarget saying what is wrong otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise RefusedTarget(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedTarget(f"not a URL: {exc}") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise RefusedTarget(f"the URL must start with {' or '.join(s + '://' for s in schemes)}")
    if not parts.hostname:
        raise RefusedTarget("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise RefusedTarget("the URL must not carry a user name or password")
    if parts.fragment:
        raise RefusedTarget("the URL must not have a fragment (#...)")
    if port == 0:
        raise RefusedTarget("the URL's port must be 1-65535")
    if not allow_private:
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            if parts.hostname.rstrip(".").lower() in ("localhost", "localhost.localdomain") or (
                parts.hostname.rstrip(".").lower().endswith(".localhost")
            ):
                raise RefusedTarget("the URL's host is this machine") from None
        else:
            if not public(literal):
                raise RefusedTarget(f"{literal} is not a public address")
    return url


async def resolve(host: str, port: int) -> list[IPAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    seen: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        seen[ipaddress.ip_address(sockaddr[0].split("%", 1)[0])] = None
    return list(seen)


def refused(addresses: Iterable[IPAddress]) -> IPAddress | None:
    return next((a for a in addresses if not public(a)), None)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving and checking every address before connecting."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout=None, local_address=None, socket_options=None
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took over {timeout}s") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve ({exc.strerror})") from None
        if not self.allow_private:
            bad = refused(addresses)
            if bad is not None:
                raise RefusedTarget(f"{host} resolves to {bad}, which is not a public address")
        last: Exception | None = None
        for address in addresses:  # every one passed the check: connect to it, not the name
            try:
                return _Stream(
                    await self._inner.connect_tcp(
                        str(address), port, timeout, local_address, socket_options
                    )
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise RefusedTarget("webhooks are sent over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Stream(httpcore.AsyncNetworkStream):
    """AnyIO's stream, with what httpcore asks of it on every request answered from the socket
    itself: its pool asks each kept-alive connection whether it has expired (``is_readable``)
    before every request, and AnyIO builds a table of attribute getters to answer each time
    (profiled: a third of a dispatcher's CPU with 16 connections)."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._info: dict[str, object] = {}
        self._poll = _poll_of(inner.get_extra_info("socket"))

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str):
        if info == "is_readable":
            return self._poll is None or bool(self._poll.poll(0))
        if info not in self._info:  # fixed for the connection's life (addresses, TLS object)
            self._info[info] = self._inner.get_extra_info(info)
        return self._info[info]


def _poll_of(sock: socket.socket | None):
    """A poll on the socket's readability: for an idle kept-alive HTTP/1.1 connection, reading
    can only mean the server closing it (so it is not reused). None when there is no socket."""
    if sock is None or sock.fileno() == -1:
        return None
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    return poll
