"""A connection's sync runs, newest first by cursor; pruning them after SYNC_RUNS_RETENTION_DAYS."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json
from sqlalchemy import text

from dashtam_api.accounts.schemas import TransactionCounts
from dashtam_api.cursors import Cursor, decode_cursor, encode_cursor
from dashtam_api.errors import ACCOUNT_GONE, NotFound, Unauthorized
from dashtam_core.database import Reader
from dashtam_models import SyncStatus, SyncTrigger


class SyncRunQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(20, ge=1, le=100, description="Runs per page.")
    cursor: Cursor = None


class SyncFailure(BaseModel):
    code: str = Field(
        description="The institution's error code (invalid_grant, server_error, ...) or ours: "
        "abandoned, cut_short, unsupported, refresh_<outcome> (no valid token could be had)."
    )
    detail: str | None = Field(description="For people; never holds a secret.")


class SyncRunOut(BaseModel):
    id: uuid.UUID
    trigger: Literal[tuple(t.value for t in SyncTrigger)]
    status: Literal[tuple(s.value for s in SyncStatus)]
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    accounts: int | None = Field(description="What a successful run wrote; null otherwise.")
    positions: int | None
    transactions: TransactionCounts | None
    error: SyncFailure | None


class SyncRunPage(BaseModel):
    items: list[SyncRunOut]
    limit: int
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


def _page_sql(after: bool) -> str:
    keyset = "AND (r.started_at, r.id) < ($4, $5)" if after else ""
    return f"""
SELECT p.id AS provider_id, r.id::text AS id, r.trigger, r.status, r.started_at, r.finished_at,
       (extract(epoch FROM r.finished_at - r.started_at) * 1000)::bigint AS duration_ms,
       r.accounts, r.positions, r.transactions_added, r.transactions_modified,
       r.transactions_removed, r.error, r.error_detail
  FROM users u
  LEFT JOIN providers p ON p.id = $2 AND p.user_id = u.id
  LEFT JOIN provider_connections c ON c.provider_id = p.id
  LEFT JOIN LATERAL (
        SELECT * FROM sync_runs r
         WHERE r.connection_id = c.id {keyset}
         ORDER BY r.started_at DESC, r.id DESC
         LIMIT $3 + 1) r ON true
 WHERE u.id = $1 AND u.is_active
 ORDER BY r.started_at DESC, r.id DESC
"""  # noqa: S608 (fixed fragments)


_FIRST_PAGE, _NEXT_PAGE = _page_sql(after=False), _page_sql(after=True)


def _item(row) -> dict:
    counted = row["transactions_added"] is not None
    return {
        "id": row["id"],
        "trigger": row["trigger"],
        "status": row["status"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "duration_ms": row["duration_ms"],
        "accounts": row["accounts"],
        "positions": row["positions"],
        "transactions": {
            "added": row["transactions_added"],
            "modified": row["transactions_modified"],
            "removed": row["transactions_removed"],
        }
        if counted
        else None,
        "error": {"code": row["error"], "detail": row["error_detail"]} if row["error"] else None,
    }


async def page(
    *, reader: Reader, user_id: uuid.UUID, provider_id: uuid.UUID, query: SyncRunQuery
) -> bytes:
    """The provider's runs as the JSON of SyncRunPage."""
    if query.cursor is None:
        rows = await reader.fetch(_FIRST_PAGE, user_id, provider_id, query.limit)
    else:
        at, run_id = decode_cursor(query.cursor)
        rows = await reader.fetch(_NEXT_PAGE, user_id, provider_id, query.limit, at, run_id)
    if not rows:
        raise Unauthorized(ACCOUNT_GONE)
    if rows[0]["provider_id"] is None:
        raise NotFound("No such provider.")
    runs = [row for row in rows if row["id"] is not None]
    more = len(runs) > query.limit
    runs = runs[: query.limit]
    return to_json(
        {
            "items": [_item(row) for row in runs],
            "limit": query.limit,
            "next_cursor": encode_cursor(runs[-1]["started_at"], runs[-1]["id"]) if more else None,
        }
    )


PRUNE = text(
    """
    DELETE FROM sync_runs WHERE id IN (
        SELECT id FROM sync_runs WHERE started_at < :before AND status <> 'running' LIMIT :batch)
    """
)


async def prune(ctx, *, batch: int = 5000) -> int:
    """Delete runs older than SYNC_RUNS_RETENTION_DAYS, a batch at a time (short locks)."""
    before = datetime.now(UTC) - timedelta(days=ctx.settings.SYNC_RUNS_RETENTION_DAYS)
    pruned = 0
    while True:
        async with ctx.sessions() as session:
            deleted = (await session.execute(PRUNE, {"before": before, "batch": batch})).rowcount
            await session.commit()
        pruned += deleted
        if deleted < batch:
            return pruned
