"""Throttles on guessed credentials that slow attackers, not owners (OWASP's Authentication
Cheat Sheet: exponential delays per credential and source rather than a lockout anyone can set
off).

Three counts in Valkey, each of failures only:

- **a credential from one address**: past ``LOGIN_MAX_FAILURES`` failures, that pair waits
  ``LOGIN_BACKOFF_SECONDS``, twice as long after each further failure, at most
  ``LOGIN_LOCKOUT_SECONDS``; its attempts (even a right one) are refused meanwhile. A success
  clears the pair. Nobody elsewhere is affected: guessing at a person's e-mail from another
  address does not lock the person out.
- **a credential from everywhere**: past ``LOGIN_CREDENTIAL_MAX_FAILURES`` (many guessing
  addresses at once), the credential slows rather than blocks: each address may try it once per
  ``LOGIN_SLOW_SECONDS``, so its owner still signs in while guessing goes on elsewhere; an
  address that signed in with it lately is not slowed, nor is the second-factor step.
- **one address across credentials** (one client spraying guesses, or a stale app polling with
  a revoked credential): past ``LOGIN_ADDRESS_MAX_FAILURES``, that address's *failed* attempts
  are answered 429 with ``Retry-After: LOGIN_BACKOFF_SECONDS``, telling the client to back off.
  It is a signal, not a barrier (the two counts above are): its correct credentials are still
  accepted, so a person behind the same proxy or NAT is never refused because another's
  credentials failed.

Addresses are the client's real ones: behind the project's own proxy, the app reads
``X-Forwarded-For`` from ``TRUSTED_PROXIES`` only (main.py). Credentials are keyed by a digest,
never in clear.
"""

import hashlib
import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from dashtam_api.errors import TooManyRequests
from dashtam_core.config import Settings


@dataclass(frozen=True)
class Throttle:
    """The throttle of one credential (an e-mail, a SimpleFIN username) from one address, in one
    scope (``login``, ``simplefin``): their counts never mix."""

    redis: Redis
    settings: Settings
    scope: str
    credential: str
    address: str | None

    @property
    def _credential(self) -> str:
        digest = hashlib.sha256(self.credential.lower().encode()).hexdigest()[:32]
        return f"throttle:{self.scope}:credential:{digest}"

    @property
    def _pair(self) -> str:
        return f"{self._credential}:from:{self.address or '-'}"

    @property
    def _address(self) -> str:
        return f"throttle:{self.scope}:address:{self.address or '-'}"

    @property
    def _window(self) -> int:
        """How long failures are remembered after the last one: long enough for the backoff to
        keep doubling up to its ceiling."""
        return 4 * self.settings.LOGIN_LOCKOUT_SECONDS

    async def wait(self, *, slowed: bool = True) -> int:
        """Seconds this credential must wait from this address before it may be tried (0: now).
        Past the credential's ceiling everywhere, takes this address's turn, unless this address
        has signed in with it lately (a known pair) or ``slowed`` is false (a step that only a
        right password reaches: the second factor)."""
        lock_until, failures_everywhere, known = await self.redis.mget(
            f"{self._pair}:until", f"{self._credential}:failures", f"{self._pair}:known"
        )
        if lock_until is not None:
            left = math.ceil(float(lock_until) - time.time())
            if left > 0:
                return left
        ceiling = self.settings.LOGIN_CREDENTIAL_MAX_FAILURES
        if slowed and known is None and int(failures_everywhere or 0) >= ceiling:
            slow = self.settings.LOGIN_SLOW_SECONDS
            took_turn = await self.redis.set(f"{self._pair}:turn", 1, ex=slow, nx=True)
            if not took_turn:
                return max(await self.redis.ttl(f"{self._pair}:turn"), 1)
        return 0

    async def check(self, message: str) -> None:
        """Refuse (429, Retry-After) while this credential must wait from this address."""
        left = await self.wait()
        if left:
            raise TooManyRequests(message, retry_after=left)

    async def failed(self, *, known_credential: bool = True) -> int:
        """Count a failure. Returns the seconds this address should wait before failing again
        (its failures across credentials past their limit), else 0. ``known_credential``
        false (a SimpleFIN username that does not exist): only the address counts, so guesses
        at random names leave no keys behind per name."""
        keys = [self._address]
        if known_credential:
            keys += [f"{self._pair}:failures", f"{self._credential}:failures"]
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.incr(key)
                pipe.expire(key, self._window)
            counts = (await pipe.execute())[::2]
        settings = self.settings
        if known_credential:
            beyond = counts[1] - settings.LOGIN_MAX_FAILURES
            if beyond >= 0:
                wait = min(
                    settings.LOGIN_BACKOFF_SECONDS * 2 ** min(beyond, 30),
                    settings.LOGIN_LOCKOUT_SECONDS,
                )
                await self.redis.set(f"{self._pair}:until", time.time() + wait, ex=wait)
        if counts[0] > settings.LOGIN_ADDRESS_MAX_FAILURES:
            return settings.LOGIN_BACKOFF_SECONDS
        return 0

    async def succeeded(self) -> None:
        """A right credential: this pair starts afresh and is known for a while (never slowed
        by guessing elsewhere); the counts everywhere stay."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"{self._pair}:failures", f"{self._pair}:until")
            pipe.set(f"{self._pair}:known", 1, ex=self._window)
            await pipe.execute()
