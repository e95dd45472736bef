import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class LineError(BaseModel):
    line: int | None = Field(description="The file's line (1-based) where it is; null: the file.")
    message: str


class ImportOut(BaseModel):
    id: uuid.UUID
    account_id: uuid.UUID
    status: Literal["running", "done", "failed"] = Field(
        description="done: every new row added; failed: none (errors say why)."
    )
    format: Literal["ofx", "csv", "camt053"]
    filename: str | None
    added: int = Field(description="Rows new to the account.")
    updated: int = Field(
        description="Pendings the account held that the file lists posted, now posted."
    )
    duplicates: int = Field(
        description="Rows the account already held: by id, or by amount, day and description "
        "(docs/imports.md)."
    )
    skipped: int = Field(description="Lines deliberately not imported (blank, informational).")
    errors: list[LineError] = Field(description="What was wrong, line by line (the first 50).")
    created_at: datetime
    finished_at: datetime | None


class ImportPage(BaseModel):
    items: list[ImportOut]
    total: int
    limit: int
    offset: int
