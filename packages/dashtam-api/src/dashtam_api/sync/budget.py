"""A connection's daily request budget, for sources whose Limits set ``requests_per_day`` (the
SimpleFIN Bridge: 24 a day per access URL, a little leeway, then access disabled).

The rule: never more than ``requests_per_day`` requests in any 24 hours, every request counted
(the first sync's walk back through the history, any retry, failed reads, manual syncs). The
connection keeps when each request of the last 24 hours was sent (``budget_requests``):

- the sync loop claims a connection only once ``budget_next_at`` has passed: a request fits in
  the budget, and at least a day / ``requests_per_day`` after the last one, so a day's budget is
  spread over the day rather than spent in its first hours;
- a manual sync is refused (429, ``Retry-After``) only when no request fits;
- a read is not started when the requests its windows take (the source's ``requests_for``)
  do not fit: it waits,
  as a manual sync is told to, rather than spend part of the budget and fail;
- a read can never overspend: the sync's HTTP client refuses the request past what is left
  (``Allowance``), whatever the source needed (an account new at the Bridge walks its history).

A new access URL (a reconnection) starts a new budget, as the server counts per access URL.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.sources.shapes import SourceError
from dashtam_api.sync import queries

DAY = timedelta(days=1)


def recent(times: list[datetime] | None, now: datetime) -> list[datetime]:
    """The requests of the last 24 hours, oldest first."""
    return sorted(t for t in times or () if t > now - DAY)


def free_at(
    times: list[datetime] | None, now: datetime, per_day: int, needed: int = 1
) -> datetime | None:
    """When ``needed`` more requests fit in the budget (None: now)."""
    sent = recent(times, now)
    over = len(sent) + min(needed, per_day) - per_day
    if over <= 0:
        return None
    return sent[over - 1] + DAY


def next_at(times: list[datetime] | None, now: datetime, per_day: int) -> datetime | None:
    """When the sync loop may read next: a request fits, and the last one is a day /
    ``per_day`` old (None: now)."""
    sent = recent(times, now)
    moments = [m for m in (free_at(sent, now, per_day),) if m is not None]
    if sent:
        moments.append(sent[-1] + DAY / per_day)
    latest = max(moments, default=None)
    return latest if latest is not None and latest > now else None


def left(times: list[datetime] | None, now: datetime, per_day: int) -> int:
    return max(per_day - len(recent(times, now)), 0)


@dataclass(frozen=True)
class Gate:
    """What the budget says to a claim: ``wait`` (not now: until then), else the requests the
    read may send."""

    wait: datetime | None
    allowance: int
    sent: tuple[datetime, ...]

    def free_at(self, needed: int, per_day: int) -> datetime:
        """When ``needed`` requests fit (now, if they do)."""
        now = datetime.now(UTC)
        return free_at(self.sent, now, per_day, needed) or now


def gate(times: list[datetime] | None, now: datetime, per_day: int, *, loop: bool) -> Gate:
    """The sync loop waits for the budget's spread-out next moment (``next_at``); a person
    only for a request to fit (``free_at``)."""
    wait = (next_at if loop else free_at)(times, now, per_day)
    return Gate(wait, left(times, now, per_day), tuple(recent(times, now)))


class Allowance:
    """Counts the requests an HTTP client sends and refuses the one past ``limit`` (None: no
    limit), before it leaves: an httpx request hook."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.sent = 0

    async def __call__(self, request: httpx.Request) -> None:
        if self.limit is not None and self.sent >= self.limit:
            raise SourceError(
                "over_budget",
                f"this sync would send more than the {self.limit} requests left in the "
                "connection's daily budget; the rest waits for the next sync",
                transient=True,
            )
        self.sent += 1


async def record(
    session: AsyncSession, *, connection_id: uuid.UUID, sent: int, per_day: int
) -> None:
    """``sent`` requests sent now, kept with the last 24 hours' (the row locked)."""
    if not sent:
        return
    now = datetime.now(UTC)
    times = recent(await queries.budget_requests(session, connection_id=connection_id), now)
    times += [now] * sent
    await queries.set_budget(
        session,
        connection_id=connection_id,
        requests=times,
        next_at=next_at(times, now, per_day),
    )


async def hold(session: AsyncSession, *, connection_id: uuid.UUID, until: datetime) -> None:
    """The sync loop leaves the connection alone until then."""
    await queries.hold_budget(session, connection_id=connection_id, until=until)


async def reset(session: AsyncSession, *, connection_id: uuid.UUID) -> None:
    """A new budget (a new access URL)."""
    await queries.set_budget(session, connection_id=connection_id, requests=[], next_at=None)
