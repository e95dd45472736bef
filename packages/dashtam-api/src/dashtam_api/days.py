"""Days as the API takes them (``?from=2026-01-31``): an ISO date and nothing else, any year
from 1 to 9999, and the UTC instants that bound one.

pydantic alone also reads ``0`` or ``1700000000`` as a date (a Unix time); the OpenAPI document
says ``format: date``, so anything that is not ``YYYY-MM-DD`` is refused (422). The bounds never
overflow, and are always real times: asyncpg sends ``datetime.min`` and ``datetime.max`` as
-infinity and infinity (a series between them would never end), so the first and last instants
are one microsecond inside those.
"""

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from pydantic import BeforeValidator

_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(microseconds=1)
LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(microseconds=1)


def _iso_only(value: object) -> object:
    if isinstance(value, str) and not _ISO_DAY.fullmatch(value):
        raise ValueError("must be a day: YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_only)]


def day_start(day: date) -> datetime:
    """The day's first instant, UTC."""
    return max(datetime.combine(day, time.min, tzinfo=UTC), EARLIEST)


def day_end(day: date) -> datetime:
    """The first instant after the day (an exclusive bound), UTC."""
    return day_start(day + timedelta(days=1)) if day < date.max else LATEST


def days_before(day: date, days: int) -> date:
    """``days`` days earlier, or the first day there is."""
    return day - timedelta(days=days) if (day - date.min).days >= days else date.min
