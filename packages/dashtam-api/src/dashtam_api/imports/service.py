"""Importing a file into an account: one transaction, constant memory, no duplicates.

The file is read entry by entry (sources/files) in a worker thread, BATCH rows at a time, and
written in the request's transaction: an import ends ``done`` with every row it added, or
``failed`` with none (the record of the failure, with its line-numbered errors, is written on its
own). Each row of the file is, in this order (docs/imports.md, "Duplicates"):

1. a duplicate when the account already holds its id: the format's own (OFX FITID, CAMT's
   references, a mapped CSV column), else one derived from its content and its place among the
   file's identical rows of that day (re-importing the same file, or an overlapping one, adds
   nothing; two identical charges of one day stay two);
2. a duplicate when the account holds a row of the same amount within IMPORT_MATCH_DAYS of its
   day and with a similar description (sync/transactions.similar) that no other row of this
   file took, and that this import did not add itself: a file for an account that also syncs
   adds only what the sync lacks;
3. else added, marked with the import (``import_id``: where it came from).
"""

import hashlib
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import islice

from anyio import to_thread
from fastapi import UploadFile
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.accounts import queries as account_queries
from dashtam_api.context import AppContext
from dashtam_api.errors import NotFound, ProblemError, Unprocessable
from dashtam_api.imports import queries
from dashtam_api.sources.files import (
    FORMATS,
    CsvMapping,
    FileAccount,
    FileBalance,
    FileError,
    FilePosition,
    FileProblem,
    FileSkipped,
    FileTransaction,
    detect_format,
    read_file,
)
from dashtam_api.sources.shapes import TransactionData
from dashtam_api.sync import queries as sync_queries
from dashtam_api.sync.queries import COLUMNS
from dashtam_api.sync.transactions import fingerprint, similar
from dashtam_api.unit_of_work import discard
from dashtam_models import Account, Import, ImportStatus, User

BATCH = 2000
# The errors a failed import keeps and shows (how many there were in all is counted).
MAX_ERRORS = 50


class ImportFailed(ProblemError):
    status = 422
    title = "Import Failed"


class TooLarge(ProblemError):
    status = 413


@dataclass
class Tally:
    added: int = 0
    updated: int = 0
    duplicates: int = 0
    skipped: int = 0
    errors: list[dict] = field(default_factory=list)
    error_count: int = 0

    def error(self, line: int | None, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"line": line, "message": message})


def out(record: Import) -> dict:
    return {
        "id": record.id,
        "account_id": record.account_id,
        "status": record.status,
        "format": record.format,
        "filename": record.filename,
        "added": record.added,
        "updated": record.updated,
        "duplicates": record.duplicates,
        "skipped": record.skipped,
        "errors": record.errors,
        "created_at": record.created_at,
        "finished_at": record.finished_at,
    }


def _mapping(raw: str | None) -> CsvMapping | None:
    if raw is None or raw == "":
        return None
    try:
        return CsvMapping.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "mapping"
        raise Unprocessable(f"mapping: {where}: {first['msg']}", field="mapping") from None


def _format(given: str | None, upload: UploadFile) -> str:
    if given:
        return given
    head = upload.file.read(4096)
    upload.file.seek(0)
    found = detect_format(head, upload.filename)
    if found is None:
        raise Unprocessable(
            f"the file's format could not be told from its content; give format, one of "
            f"{', '.join(FORMATS)}",
            field="format",
        )
    return found


async def run(
    *,
    ctx: AppContext,
    session: AsyncSession,
    user: User,
    account_id: uuid.UUID,
    upload: UploadFile,
    format: str | None,
    mapping: str | None,
) -> dict:
    """Import ``upload`` into the person's account (the module's rules)."""
    found = await account_queries.account_for_owner(session, user_id=user.id, account_id=account_id)
    if found is None:
        raise NotFound("No such account.")
    account = found[0]
    if upload.size is not None and upload.size > ctx.settings.IMPORT_MAX_BYTES:
        raise TooLarge(f"The file is larger than {ctx.settings.IMPORT_MAX_BYTES} bytes.")
    csv_mapping = _mapping(mapping)
    fmt = _format(format, upload)
    if fmt == "csv" and csv_mapping is None:
        if account.import_mapping is None:
            raise Unprocessable(
                "a CSV file needs a mapping of its columns (this account has none saved)",
                field="mapping",
            )
        csv_mapping = CsvMapping.model_validate(account.import_mapping)
    await queries.lock_connection(session, connection_id=account.connection_id)
    record = Import(
        user_id=user.id,
        account_id=account.id,
        status=ImportStatus.RUNNING.value,
        format=fmt,
        filename=(upload.filename or "")[:255] or None,
        # When the import began (not its transaction's start: a person's imports list in
        # the order they were made).
        created_at=datetime.now(UTC),
    )
    session.add(record)
    await session.flush()
    tally = Tally()
    try:
        await _read_into(ctx, session, account, record, upload, fmt, csv_mapping, tally)
    except FileProblem as problem:
        tally.error(problem.line, problem.message)
    if tally.error_count:
        await discard(session)
        await _record_failure(ctx, record, tally)
    if fmt == "csv":
        # Saved for the next CSV of this account, which may then come without one.
        account.import_mapping = csv_mapping.model_dump()
    record.status = ImportStatus.DONE.value
    record.added, record.updated = tally.added, tally.updated
    record.duplicates, record.skipped = tally.duplicates, tally.skipped
    record.finished_at = datetime.now(UTC)
    await queries.fill_item_json(session, account_id=account.id)
    await session.flush()
    return out(record)


async def _record_failure(ctx: AppContext, record: Import, tally: Tally):
    """Nothing of the file is kept (the request's writes are discarded first); the failed
    import is recorded on its own, with its errors, and the answer names them."""
    failed = Import(
        user_id=record.user_id,
        account_id=record.account_id,
        status=ImportStatus.FAILED.value,
        format=record.format,
        filename=record.filename,
        skipped=tally.skipped,
        errors=tally.errors,
        created_at=record.created_at,
        finished_at=datetime.now(UTC),
    )
    async with ctx.sessions() as own:
        own.add(failed)
        await own.flush()
        failed_id = failed.id
        await own.commit()
    first = tally.errors[0]
    where = f"line {first['line']}: " if first["line"] else ""
    more = f" (and {tally.error_count - 1} more)" if tally.error_count > 1 else ""
    raise ImportFailed(
        f"The file was not imported: {where}{first['message']}{more}.",
        import_id=str(failed_id),
        # Not `errors`: a problem's errors are the request's fields (openapi.FieldError).
        lines=tally.errors,
        error_count=tally.error_count,
    )


async def _read_into(ctx, session, account, record, upload, fmt, mapping, tally) -> None:
    entries = read_file(upload.file, format=fmt, mapping=mapping)
    ids = _Ids()
    # A statement's positions (few: an investment account's holdings), written at its end.
    positions: list[FilePosition] = []
    statements = 0
    match = _Matcher(account, record, ctx.settings.IMPORT_MATCH_DAYS)
    while True:
        # The parser is plain Python: it runs beside the event loop, a batch at a time.
        batch = await to_thread.run_sync(lambda: list(islice(entries, BATCH)))
        if not batch:
            break
        rows: list[TransactionData] = []
        for entry in batch:
            if isinstance(entry, FileTransaction):
                data = entry.data
                if not data.currency:  # the file does not say: the account's
                    data = replace(data, currency=account.currency)
                rows.append(ids.given(data))
            elif isinstance(entry, FileAccount):
                statements += 1
                if statements > 1:  # another account's statement: not this account's rows
                    tally.error(
                        entry.line,
                        "the file holds the statements of several accounts: import each "
                        "account's own file into it",
                    )
            elif isinstance(entry, FileSkipped):
                tally.skipped += 1
            elif isinstance(entry, FileError):
                tally.error(entry.line, entry.message)
            elif isinstance(entry, FileBalance):
                if not tally.error_count:
                    await queries.add_balance(
                        session,
                        account_id=account.id,
                        as_of=entry.as_of,
                        currency=entry.currency or account.currency,
                        current=entry.current,
                        available=entry.available,
                        cash=entry.cash,
                        buying_power=entry.buying_power,
                    )
            elif isinstance(entry, FilePosition):
                positions.append(entry)
        # Once a row is bad nothing will be kept: the rest is only read for its errors.
        if rows and not tally.error_count:
            await match.write(session, rows, tally)
    if positions and not tally.error_count:
        await sync_queries.replace_positions(
            session,
            account_id=account.id,
            holdings=[p.holding for p in positions],
            currency=positions[0].currency or account.currency,
            as_of=max((p.as_of for p in positions if p.as_of), default=datetime.now(UTC)),
        )


class _Ids:
    """The id of a row whose format gives none: a digest of what it says and of how many
    identical rows of the same day came before it in the file. Counted per day, as files list
    by date: memory stays what one day's rows take, whatever the file's length."""

    def __init__(self) -> None:
        self.day = None
        self.seen: dict[bytes, int] = {}

    def given(self, data: TransactionData) -> TransactionData:
        if data.external_id:
            return data
        day = data.occurred_at.date()
        if day != self.day:
            self.day, self.seen = day, {}
        said = repr((day, data.amount, data.description, data.payee, data.memo)).encode()
        digest = hashlib.blake2b(said, digest_size=12).digest()
        nth = self.seen.get(digest, 0)
        self.seen[digest] = nth + 1
        return replace(data, external_id=f"import:{digest.hex()}:{nth}")


def _params(rows: list[TransactionData]) -> dict[str, list]:
    """The rows as a list per column of the transactions' COLUMNS."""
    params = {c: [getattr(t, c) for t in rows] for c, _ in COLUMNS if c != "fingerprint"}
    params["fingerprint"] = [fingerprint(t) for t in rows]
    return params


class _Matcher:
    """Rules 1 to 3 of the module's docstring, a batch at a time."""

    def __init__(self, account: Account, record: Import, days: int) -> None:
        self.account, self.record, self.days = account, record, days
        # Held rows already taken as the duplicate of a row of this file.
        self.taken: set[uuid.UUID] = set()

    async def write(self, session: AsyncSession, rows: list[TransactionData], tally: Tally):
        by_id: dict[str, TransactionData] = {}
        for t in rows:
            if t.external_id in by_id:
                tally.duplicates += 1  # the file repeats an id: one row
            else:
                by_id[t.external_id] = t
        held = await queries.held_ids(session, account_id=self.account.id, ids=list(by_id))
        # A held row is its own file row's: no other row of the file may take it by content.
        self.taken.update(row_id for row_id, _ in held.values())
        # A pending the account holds that the file lists posted (a CAMT entry booked since,
        # under the same reference) is completed with what the file says.
        posting = [
            by_id[i] for i, (_, status) in held.items() if status == "pending"
            if by_id[i].status == "posted"
        ]  # fmt: skip
        if posting:
            tally.updated += await queries.post_pendings(
                session, account_id=self.account.id, params=_params(posting)
            )
        tally.duplicates += len(held) - len(posting)
        fresh = [t for i, t in by_id.items() if i not in held]
        probed = await queries.same_content(
            session,
            account_id=self.account.id,
            import_id=self.record.id,
            candidates=[(n, t.amount, t.occurred_at.date()) for n, t in enumerate(fresh)],
            days=self.days,
        )
        matched: set[int] = set()
        for n, row_id, description in probed:
            if n in matched or row_id in self.taken:
                continue
            if similar(description, fresh[n].description):
                matched.add(n)
                self.taken.add(row_id)
        tally.duplicates += len(matched)
        new = [t for n, t in enumerate(fresh) if n not in matched]
        if not new:
            return
        written = await queries.insert_rows(
            session,
            user_id=self.account.user_id,
            account_id=self.account.id,
            import_id=self.record.id,
            params=_params(new),
        )
        tally.added += written
        tally.duplicates += len(new) - written


async def page(
    *, session: AsyncSession, user: User, account_id: uuid.UUID, limit: int, offset: int
) -> dict:
    if (
        await account_queries.account_for_owner(session, user_id=user.id, account_id=account_id)
        is None
    ):
        raise NotFound("No such account.")
    items, total = await queries.imports_page(
        session, user_id=user.id, account_id=account_id, limit=limit, offset=offset
    )
    return {"items": [out(i) for i in items], "total": total, "limit": limit, "offset": offset}
