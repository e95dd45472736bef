"""Calling an institution: what each failure is called, and when a call is sent again.

Every call to an institution (token endpoint, revocation endpoint, data API) ends in an answer
or in one of these, each named the same way everywhere (the ``error`` of a problem, an audit row,
``sync_error``):

- ``timeout``: no answer in time (``OAUTH_HTTP_TIMEOUT_SECONDS``); the API answers 504.
- ``unreachable``: no connection, or the connection dropped before a whole answer; 502.
- ``http_<status>``: an HTTP error that is not an OAuth error; 502.
- ``invalid_response``: an answer that is not the JSON it should be; 502.

When a call is sent again (with exponential back-off and jitter, by stamina):

- A request that never left (the connection could not be opened, or no pooled connection came
  free) is safe to send again whatever it does: every call, token exchanges included.
- A request that may have reached the institution is sent again only when it is idempotent: data
  reads and RFC 7009 revocation, on ``timeout``, ``unreachable``, 429 and 5xx. A token exchange
  is never sent twice: the authorization code, or a rotating refresh token, may already be spent.

At most ``INSTITUTION_RETRIES`` more tries, and none started after twice the per-call timeout
has passed; a ``Retry-After`` longer than the longest back-off ends the retries at once.
"""

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx
import stamina
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from dashtam_core.config import Settings

log = logging.getLogger(__name__)

TIMEOUT = "timeout"
UNREACHABLE = "unreachable"
INVALID_RESPONSE = "invalid_response"

# Requests that provably never reached the institution.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
LONGEST_WAIT_SECONDS = 5.0

T = TypeVar("T")
# A request's extension naming its path with the ids left out ("/accounts/{uid}/balances"),
# for a source whose paths hold handles that must not reach the log: what the log names then.
PATH_TEMPLATE = "dashtam.path_template"


def transport_failure(exc: httpx.TransportError) -> tuple[str, str]:
    """(error, description) for a call that got no answer."""
    if isinstance(exc, httpx.TimeoutException):
        return TIMEOUT, f"no answer in time ({type(exc).__name__})"
    return UNREACHABLE, type(exc).__name__


def status_failure(status: int) -> tuple[str, bool]:
    """(error, transient) for an HTTP error answer."""
    return f"http_{status}", status >= 500 or status == 429


class _RetryableAnswer(Exception):
    """An answer worth asking again for (429, 5xx); carries it out of stamina's loop."""

    def __init__(self, response: httpx.Response):
        super().__init__(response.status_code)
        self.response = response


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max((parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def _idempotent_retry(exc: Exception) -> bool | float:
    if isinstance(exc, _RetryableAnswer):
        wait = _retry_after(exc.response)
        if wait is None:
            return True
        return wait if wait <= LONGEST_WAIT_SECONDS else False
    return isinstance(exc, httpx.TransportError)


def _unsent_retry(exc: Exception) -> bool:
    return isinstance(exc, NOT_SENT)


def _log_retry(details: RetryDetails) -> None:
    """One line per retry, naming the institution's host and path (its template, where the
    request gives one: ``PATH_TEMPLATE``), never a query or a token."""
    exc = details.caused_by
    if isinstance(exc, _RetryableAnswer):
        request, reason = exc.response.request, f"answered {exc.response.status_code}"
    else:
        try:
            request = exc.request  # httpx's errors raised in a request carry it
        except (AttributeError, RuntimeError):
            request = None
        reason = transport_failure(exc)[0] if isinstance(exc, httpx.TransportError) else "failed"
    if request is not None:
        where = request.url.host + (request.extensions.get(PATH_TEMPLATE) or request.url.path)
    else:
        where = "an institution"
    log.warning(
        "%s %s (%s); sending it again in %.1f s (retry %d)",
        where,
        reason,
        type(exc).__name__,
        details.wait_for,
        details.retry_num,
    )


# stamina's own hooks log a bare "stamina.retry_scheduled" (its details go to `extra`, which the
# log format drops); ours says what failed. stamina runs no other retries in this process.
set_on_retry_hooks([_log_retry])


def _policy(settings: Settings) -> dict:
    wait = settings.INSTITUTION_RETRY_WAIT_SECONDS
    return {
        "attempts": settings.INSTITUTION_RETRIES + 1,
        "timeout": settings.OAUTH_HTTP_TIMEOUT_SECONDS * 2,
        "wait_initial": wait,
        "wait_jitter": wait,
        "wait_max": LONGEST_WAIT_SECONDS,
    }


async def idempotent(
    settings: Settings, send: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response:
    """``send()`` until it answers something other than 429/5xx or the retries are spent.

    Returns the last answer (which may still be 429/5xx); raises the last transport error.
    """
    try:
        async for attempt in stamina.retry_context(on=_idempotent_retry, **_policy(settings)):
            with attempt:
                response = await send()
                if response.status_code in RETRIED_STATUSES:
                    raise _RetryableAnswer(response)
                return response
    except _RetryableAnswer as exc:
        return exc.response
    raise AssertionError("stamina ended without an attempt")  # pragma: no cover


async def once(settings: Settings, send: Callable[[], Awaitable[T]]) -> T:
    """``send()``, sent again only when it provably never reached the institution."""
    async for attempt in stamina.retry_context(on=_unsent_retry, **_policy(settings)):
        with attempt:
            return await send()
    raise AssertionError("stamina ended without an attempt")  # pragma: no cover
