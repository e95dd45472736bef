"""A connection's sync runs, newest first by cursor; pruning them after SYNC_RUNS_RETENTION_DAYS."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from dashtam_api.accounts.schemas import TransactionCounts
from dashtam_api.cursors import Cursor, decode_cursor, encode_cursor
from dashtam_api.errors import NotFound
from dashtam_api.sync import queries
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
    after = None if query.cursor is None else decode_cursor(query.cursor)
    rows = await queries.run_rows(
        reader, user_id=user_id, provider_id=provider_id, limit=query.limit, after=after
    )
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


async def prune(ctx, *, batch: int = 5000) -> int:
    """Delete runs older than SYNC_RUNS_RETENTION_DAYS, a batch at a time (short locks)."""
    before = datetime.now(UTC) - timedelta(days=ctx.settings.SYNC_RUNS_RETENTION_DAYS)
    pruned = 0
    while True:
        async with ctx.sessions() as session:
            deleted = await queries.prune_runs(session, before=before, batch=batch)
            await session.commit()
        pruned += deleted
        if deleted < batch:
            return pruned
