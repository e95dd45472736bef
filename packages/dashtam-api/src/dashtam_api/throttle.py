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
  ``LOGIN_SLOW_SECONDS``, so its owner still signs in while guessing goes on elsewhere.
- **one address across credentials** (one client spraying guesses, or a stale app polling with
  a revoked credential): past ``LOGIN_ADDRESS_MAX_FAILURES``, that address's *failed* attempts
  are answered 429. Its correct credentials are still accepted: a person behind the same
  proxy or NAT is never refused because another's credentials failed.

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

    async def wait(self) -> int:
        """Seconds this credential must wait from this address before it may be tried (0: now).
        Takes this address's turn when the credential is past its ceiling everywhere."""
        lock_until, failures_everywhere = await self.redis.mget(
            f"{self._pair}:until", f"{self._credential}:failures"
        )
        if lock_until is not None:
            left = math.ceil(float(lock_until) - time.time())
            if left > 0:
                return left
        if int(failures_everywhere or 0) >= self.settings.LOGIN_CREDENTIAL_MAX_FAILURES:
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

    async def failed(self) -> int:
        """Count a failure. Returns the seconds this address must now wait before failing again
        (its failures across credentials past their limit), else 0."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in (f"{self._pair}:failures", f"{self._credential}:failures", self._address):
                pipe.incr(key)
                pipe.expire(key, self._window)
            pair_failures, _, _, _, address_failures, _ = await pipe.execute()
        settings = self.settings
        beyond = pair_failures - settings.LOGIN_MAX_FAILURES
        if beyond >= 0:
            wait = min(
                settings.LOGIN_BACKOFF_SECONDS * 2 ** min(beyond, 30),
                settings.LOGIN_LOCKOUT_SECONDS,
            )
            await self.redis.set(f"{self._pair}:until", time.time() + wait, ex=wait)
        if address_failures > settings.LOGIN_ADDRESS_MAX_FAILURES:
            return max(await self.redis.ttl(self._address), 1)
        return 0

    async def succeeded(self) -> None:
        """A right credential: this pair starts afresh (the counts everywhere stay)."""
        await self.redis.delete(f"{self._pair}:failures", f"{self._pair}:until")
