"""A sync: claim the connection, get a valid access token, read the institution, write it down.

Three short transactions, none of them open while the institution's data API is called:

1. claim: ``sync_lease_until`` is set on the connection, under its row lock. A claim whose
   holder crashed lapses after SYNC_LEASE_SECONDS. The background loop claims only connections
   whose last sync is a period old, so each is synced once per period, whichever process does it.
2. the access token, refreshed first when it expires within REFRESH_MARGIN_SECONDS (the refresh
   rules of connections/refresh.py, committed at once: a rotated refresh token is never lost
   to a later failure). An access token the data API refuses is refreshed once and tried again.
3. write, under the row lock again, only while the claim is still ours: accounts upserted by the
   institution's id (ones no longer listed get ``closed_at``), a balance snapshot per account,
   the positions replaced, the transactions reconciled (sync/transactions.py); ``synced_at``;
   the claim released.

Every claim starts a ``sync_runs`` row in the claim's transaction, and the write (or the release
after a failure) ends it in the same transaction as what it records, so a run is never left
claiming what did not happen. A run left ``running`` by a process that died is ended ``failed``
(``abandoned``) by the next claim of its connection, which can only come once its lease lapsed.

Transactions are read from where each account's last sync leaves off (``_windows``): the newest
posted one less TRANSACTIONS_OVERLAP_DAYS, or the oldest of our pendings if that is earlier (so
every pending is looked at again until it posts or is cancelled); an account read before that
has no transaction from its last sync less the overlap; an account never read before from as
far back as the institution keeps.

A sync asked for while another holds the claim (an institution's webhook saying there is news,
``sync_wanted``) is not dropped: it is marked wanted (Valkey, WANTED) and the sync holding the
claim, once it has given the claim back having synced, starts one more in the background.
"""

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from redis.exceptions import RedisError

from dashtam_api import metrics
from dashtam_api.audit import service as audit
from dashtam_api.connections import queries as connection_queries
from dashtam_api.connections import refresh
from dashtam_api.context import AppContext
from dashtam_api.sources import SOURCES, Kind, Reading
from dashtam_api.sources.shapes import SourceError, Windows
from dashtam_api.sync import budget, queries
from dashtam_api.sync import transactions as ledger
from dashtam_core.vault import token_context
from dashtam_models import (
    BalanceSnapshot,
    ConnectionStatus,
    ProviderConnection,
    SyncStatus,
    SyncTrigger,
)

# The connections the sync loop claims next (jobs/loops.py reads it here).
DUE_FOR_SYNC = queries.DUE_FOR_SYNC
WANTED = "sync:wanted:"  # + connection id: a sync asked for while one ran (sync_wanted)


def syncable_keys(ctx: AppContext) -> list[str]:
    return [k for k, spec in ctx.registry.items() if spec.source and spec.configured]


@dataclass
class SyncResult:
    # synced | sync_failed | claimed (someone else holds it) | not_due | inactive |
    # over_budget (the source's daily requests are spent until ``retry_at``)
    kind: str
    synced_at: datetime | None = None
    accounts: int = 0
    positions: int = 0
    refreshed: bool = False
    error: str | None = None
    error_description: str | None = None
    transient: bool = False
    refresh_outcome: refresh.Outcome | None = None
    status: str | None = None
    transactions: ledger.Counts = field(default_factory=ledger.Counts)
    run_id: uuid.UUID | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True)
class Claim:
    """What the claim step saw; ``lease`` is None when the connection was not taken."""

    lease: datetime | None
    status: str
    held_until: datetime | None = None
    synced_at: datetime | None = None
    provider_key: str = ""
    user_id: uuid.UUID | None = None
    provider_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None
    # The source's daily budget (None: it has none): its ``wait`` set, the claim was not taken.
    gate: budget.Gate | None = None


ABANDONED = "The process running this sync stopped before it ended."


async def _start_run(
    session, connection: ProviderConnection, trigger: refresh.Trigger, now: datetime
) -> uuid.UUID:
    """End the connection's abandoned runs, start this one (in the claim's transaction)."""
    await queries.abandon_runs(session, connection_id=connection.id, now=now, detail=ABANDONED)
    if trigger is refresh.Trigger.ON_DEMAND:
        kind = SyncTrigger.MANUAL
    else:  # the background loop: its first sync of a new connection is the connect's
        kind = SyncTrigger.CONNECT if connection.synced_at is None else SyncTrigger.SCHEDULE
    return await queries.start_run(session, connection_id=connection.id, trigger=kind, now=now)


async def _end_run(session, run_id: uuid.UUID | None, status: SyncStatus, **values) -> None:
    """End a run still running (one the next claim has already called abandoned stays so)."""
    if run_id is None:
        return
    await queries.end_run(
        session, run_id=run_id, status=status, finished_at=datetime.now(UTC), **values
    )


async def _claim(
    ctx: AppContext, connection_id: uuid.UUID, *, stale_only: bool, trigger: refresh.Trigger
) -> Claim:
    """Take the sync lease under the row lock (the background loop skips locked rows), and
    start the run."""
    now = datetime.now(UTC)
    async with ctx.sessions() as session:
        row = await queries.connection_to_claim(
            session, connection_id=connection_id, skip_locked=stale_only
        )
        if row is None:
            await session.commit()
            return Claim(None, status="unknown")
        connection, provider = row
        stale_before = now - timedelta(seconds=ctx.settings.SYNC_INTERVAL_SECONDS)
        held = connection.sync_lease_until is not None and connection.sync_lease_until > now
        fresh = connection.synced_at is not None and connection.synced_at > stale_before
        claim = Claim(
            None,
            status=connection.status,
            held_until=connection.sync_lease_until if held else None,
            synced_at=connection.synced_at,
            provider_key=provider.provider_key,
            user_id=provider.user_id,
            provider_id=provider.id,
        )
        per_day = _requests_per_day(ctx, provider.provider_key)
        if per_day is not None and connection.status == ConnectionStatus.ACTIVE and not held:
            gate = budget.gate(connection.budget_requests, now, per_day, loop=stale_only)
            claim = replace(claim, gate=gate)
            if gate.wait is not None:
                if connection.budget_next_at is None or connection.budget_next_at < gate.wait:
                    connection.budget_next_at = gate.wait  # what the status shows as next
                await session.commit()
                return claim
        if connection.status == ConnectionStatus.ACTIVE and not held and not (stale_only and fresh):
            claim = replace(
                claim,
                lease=now + timedelta(seconds=ctx.settings.SYNC_LEASE_SECONDS),
                run_id=await _start_run(session, connection, trigger, now),
            )
            connection.sync_lease_until = claim.lease
        await session.commit()
    return claim


def _requests_per_day(ctx: AppContext, provider_key: str) -> int | None:
    spec = ctx.registry.get(provider_key)
    source = SOURCES.get(spec.source) if spec and spec.source else None
    return source.limits.requests_per_day if source else None


async def _access_token(ctx: AppContext, connection_id: uuid.UUID, *, force: bool):
    """A valid access token (refreshed first if due, or always when ``force``), or the
    refresh outcome that prevented one."""
    async with ctx.sessions() as session:
        margin = timedelta(seconds=ctx.settings.REFRESH_MARGIN_SECONDS)
        outcome = await refresh.refresh(
            ctx,
            session,
            connection_id,
            trigger=refresh.Trigger.ON_USE,
            due_before=None if force else datetime.now(UTC) + margin,
        )
        await session.commit()
        if outcome.kind not in (refresh.Kind.REFRESHED, refresh.Kind.NOT_DUE):
            return None, outcome
        stored = await connection_queries.token_of(session, connection_id=connection_id)
        await session.commit()
    access = ctx.vault.open(
        stored.access_token_encrypted, context=token_context(connection_id, "access")
    )
    return access, outcome


async def sync_connection(
    ctx: AppContext,
    connection_id: uuid.UUID,
    *,
    trigger: refresh.Trigger,
    stale_only: bool,
    present: dict | None = None,
) -> SyncResult:
    """``present``: the person who asked for it (``ip``, ``user_agent``: Windows.present)."""
    result = await _sync_connection(
        ctx, connection_id, trigger=trigger, stale_only=stale_only, present=present
    )
    metrics.SYNCS.labels(result.kind).inc()
    return result


async def sync_wanted(
    ctx: AppContext, connection_id: uuid.UUID, *, trigger: refresh.Trigger
) -> SyncResult:
    """A sync now, or, while another holds the claim, one once that one is done (the module's
    last rule). Marked, then tried once more: the holder has either not given its claim back
    yet (and sees the mark when it has) or has (and this one runs)."""
    result = await sync_connection(ctx, connection_id, trigger=trigger, stale_only=False)
    if result.kind != "claimed":
        return result
    await ctx.redis.set(f"{WANTED}{connection_id}", 1, ex=ctx.settings.SYNC_LEASE_SECONDS)
    return await sync_connection(ctx, connection_id, trigger=trigger, stale_only=False)


async def _sync_connection(
    ctx: AppContext,
    connection_id: uuid.UUID,
    *,
    trigger: refresh.Trigger,
    stale_only: bool,
    present: dict | None = None,
) -> SyncResult:
    claim = await _claim(ctx, connection_id, stale_only=stale_only, trigger=trigger)
    lease = claim.lease
    if lease is None:
        if claim.status != ConnectionStatus.ACTIVE:
            return SyncResult("inactive", status=claim.status)
        if claim.held_until is not None:
            return SyncResult("claimed", status=claim.status)
        if claim.gate is not None and claim.gate.wait is not None:
            return SyncResult("over_budget", status=claim.status, retry_at=claim.gate.wait)
        return SyncResult("not_due", status=claim.status, synced_at=claim.synced_at)
    try:
        result = await _sync_claimed(ctx, connection_id, claim, trigger=trigger, present=present)
    except Exception:
        # Cut short (our database or cache went away under it, above all): the claim is given
        # back at once or as soon as the database is back, not left to lapse after
        # SYNC_LEASE_SECONDS with every sync of the connection answered "claimed" till then.
        ctx.when_back(
            f"giving back the sync claim of connection {connection_id}",
            lambda: _release(
                ctx,
                connection_id,
                claim,
                code="cut_short",
                error="the sync was cut short",
                retry=False,
            ),
            within=ctx.settings.SYNC_LEASE_SECONDS,
        )
        raise
    result.run_id = claim.run_id
    if result.kind == "synced" and await _was_wanted(ctx, connection_id):
        ctx.in_background(
            f"the sync wanted while connection {connection_id}'s ran",
            sync_connection(
                ctx, connection_id, trigger=refresh.Trigger.BACKGROUND, stale_only=False
            ),
        )
    return result


async def _was_wanted(ctx: AppContext, connection_id: uuid.UUID) -> bool:
    """A sync was asked for while this one ran (the mark taken); the cache away: none was."""
    try:
        return bool(await ctx.redis.getdel(f"{WANTED}{connection_id}"))
    except RedisError:
        return False


async def _sync_claimed(
    ctx: AppContext,
    connection_id: uuid.UUID,
    claim: Claim,
    *,
    trigger: refresh.Trigger,
    present: dict | None = None,
) -> SyncResult:
    spec = ctx.registry.get(claim.provider_key)
    source = SOURCES.get(spec.source) if spec and spec.source else None
    if source is None:
        await _release(
            ctx, connection_id, claim, code="unsupported", error="no source reads it", retry=False
        )
        return SyncResult("unsupported", status=claim.status)
    refreshed = False
    if source.kind is Kind.OAUTH2:
        credential, outcome = await _access_token(ctx, connection_id, force=False)
        refreshed = outcome.kind is refresh.Kind.REFRESHED
        if credential is None:
            await _release(
                ctx,
                connection_id,
                claim,
                code=outcome.error or f"refresh_{outcome.kind.value}",
                error=f"refresh: {outcome.error or outcome.kind}",
                retry=trigger is refresh.Trigger.BACKGROUND,
            )
            return SyncResult(
                "sync_failed",
                refresh_outcome=outcome,
                status=outcome.status,
                error=outcome.error or outcome.kind.value,
            )
    else:
        credential = await _sealed_credential(ctx, connection_id)
    windows = replace(await _windows(ctx, connection_id), present=present)
    limits = source.limits
    if claim.gate is not None:
        # A source with a budget says what its read of these windows takes.
        wanted = source.requests_for(windows) or 1
        if wanted > claim.gate.allowance:
            # Not started: it could not finish within what is left of the day's budget.
            await _release(
                ctx,
                connection_id,
                claim,
                code="over_budget",
                error=f"over_budget: this sync takes {wanted} requests, "
                f"{claim.gate.allowance} are left of the day's budget",
                retry=False,
            )
            retry_at = claim.gate.free_at(wanted, limits.requests_per_day)
            async with ctx.sessions() as session:
                await budget.hold(session, connection_id=connection_id, until=retry_at)
                await session.commit()
            return SyncResult("over_budget", status=claim.status, retry_at=retry_at)
    # Every request the read sends is counted (and refused past the budget's allowance); a
    # budget of reads counts the read once, whatever its requests.
    per_read = limits.budget_counts == "read"
    allowance = budget.Allowance(claim.gate.allowance if claim.gate and not per_read else None)
    hooks = {"event_hooks": {"request": [allowance]}}
    client = ctx.guarded_http if source.person_named_servers else ctx.http

    async def read(http, credential: str):
        return await source.read(
            base_url=spec.api_base_url,
            credential=credential,
            http=http,
            settings=ctx.settings,
            windows=windows,
        )

    failure: SourceError | None = None
    try:
        async with client(**hooks) as http:
            try:
                reading = await read(http, credential)
            except SourceError as exc:
                if not (exc.unauthorized and source.kind is Kind.OAUTH2):
                    raise
                # The institution dropped the token early: one forced refresh, one more try.
                credential, outcome = await _access_token(ctx, connection_id, force=True)
                if credential is None:
                    raise
                refreshed = True
                reading = await read(http, credential)
    except SourceError as exc:
        failure = exc
    finally:
        # Counted at once, in a transaction of its own, however the read ended and whatever
        # follows (the write refusing a value, the database gone): the requests were sent.
        sent = min(allowance.sent, 1) if per_read else allowance.sent
        await _spend(ctx, connection_id, sent, limits.requests_per_day)
    if failure is not None and failure.budget_spent and limits.requests_per_day:
        return await _spent_at_source(ctx, connection_id, claim, failure, limits.requests_per_day)
    if failure is not None:
        ending = _failed(failure, claim, trigger, per_day=limits.requests_per_day)
        await _release(ctx, connection_id, claim, **ending)
        return _failed_result(failure, claim, refreshed)
    if reading.failure is None:
        result = await _write(ctx, connection_id, claim, reading, started=windows.state)
    else:
        # The read failed, but what came is written first (data a budget already paid for).
        ending = _failed(reading.failure, claim, trigger, per_day=limits.requests_per_day)
        result = await _write(
            ctx, connection_id, claim, reading, ending=ending, started=windows.state
        )
        if result.kind == "sync_failed" and reading.failure.budget_spent and ending["hold"]:
            # The institution's daily limit, reached part way: the rest waits, as above.
            result = SyncResult("over_budget", status=claim.status, retry_at=ending["hold"])
        elif result.kind == "sync_failed":
            result = _failed_result(reading.failure, claim, refreshed)
    result.refreshed = refreshed
    return result


def _failed(
    failure: SourceError, claim: Claim, trigger: refresh.Trigger, *, per_day: int | None
) -> dict:
    """What ``_release`` records of a source's failure. A source that asked us to wait
    (``Retry-After``, a per-minute limit's wait) is not read by the sync loop before then
    (``hold``), whether or not it has a budget."""
    wait = failure.retry_after
    if per_day is not None and failure.budget_spent and not wait:
        wait = int(budget.DAY.total_seconds() / per_day)  # the next read's share of the day
    return {
        "hold": datetime.now(UTC) + timedelta(seconds=wait) if wait else None,
        "code": failure.error,
        "error": f"{failure.error}: {failure.description}",
        "retry": trigger is refresh.Trigger.BACKGROUND,
        "needs_person": failure.needs_person,
        "ended": failure.ended,
        "audited": {
            "action": "sync_failed",
            "user_id": claim.user_id,
            "provider_id": claim.provider_id,
            "details": {
                "trigger": trigger.value,
                "error": failure.error,
                "error_description": failure.description,
                "transient": failure.transient,
            },
        },
    }


def _failed_result(failure: SourceError, claim: Claim, refreshed: bool) -> SyncResult:
    if failure.needs_person:
        status = (ConnectionStatus.EXPIRED if failure.ended else ConnectionStatus.ERROR).value
    else:
        status = claim.status
    return SyncResult(
        "sync_failed",
        error=failure.error,
        error_description=failure.description,
        transient=failure.transient,
        refreshed=refreshed,
        status=status,
    )


async def _spent_at_source(
    ctx: AppContext, connection_id: uuid.UUID, claim: Claim, failure: SourceError, per_day: int
) -> SyncResult:
    """The institution refused the read for its daily limit (a PSD2 bank's few unattended
    reads): nothing is wrong with the connection; like a budget of ours spent, the sync loop
    leaves it alone until the next read's share of the day (or what the institution asked)."""
    wait = failure.retry_after or int(budget.DAY.total_seconds() / per_day)
    retry_at = datetime.now(UTC) + timedelta(seconds=wait)
    await _release(
        ctx,
        connection_id,
        claim,
        code=failure.error,
        error=f"{failure.error}: {failure.description}",
        retry=False,
        hold=retry_at,
    )
    return SyncResult("over_budget", status=claim.status, retry_at=retry_at)


async def _sealed_credential(ctx: AppContext, connection_id: uuid.UUID) -> str:
    """The credential a connection of a kind without refreshes holds (a SimpleFIN access URL),
    opened from the vault; it is never kept anywhere else."""
    async with ctx.sessions() as session:
        stored = await connection_queries.token_of(session, connection_id=connection_id)
        await session.commit()
    return ctx.vault.open(
        stored.access_token_encrypted, context=token_context(connection_id, "access")
    )


async def _windows(ctx: AppContext, connection_id: uuid.UUID) -> Windows:
    """Where each account's transactions are read from this time (the module's rule)."""
    overlap = timedelta(days=ctx.settings.TRANSACTIONS_OVERLAP_DAYS)
    since = {}
    async with ctx.sessions() as session:
        for (
            external_id,
            newest_posted,
            oldest_pending,
            synced_at,
        ) in await queries.transaction_marks(session, connection_id=connection_id):
            starts = [d for d in (newest_posted and newest_posted - overlap, oldest_pending) if d]
            if not starts and synced_at is not None:
                # Read before, nothing listed yet: from its last sync, as if one had posted then.
                starts = [synced_at - overlap]
            if starts:
                since[external_id] = min(starts)
        state = await queries.source_state(session, connection_id=connection_id)
        await session.commit()
    return Windows(since=since, until=datetime.now(UTC), state=state)


async def _release(
    ctx: AppContext,
    connection_id: uuid.UUID,
    claim: Claim,
    *,
    code: str,
    error: str,
    retry: bool,
    needs_person: bool = False,
    audited: dict | None = None,
    hold: datetime | None = None,
    ended: bool = False,
) -> None:
    """Give the claim back after a failure: at once (a person may try again), or, for the
    background loop, after SYNC_RETRY_SECONDS (its back-off); the run ends ``failed`` with
    ``code`` and ``error``, and ``audited`` (the audit row that says why) is written in the
    same transaction. ``needs_person``: the connection turns ``error`` (the source said only
    the person can fix it; connection.error goes to their webhooks) and is not read again
    until they reconnect."""
    async with ctx.sessions() as session:
        await _given_back(
            ctx,
            session,
            connection_id,
            claim,
            code=code,
            error=error,
            retry=retry,
            needs_person=needs_person,
            audited=audited,
            hold=hold,
            ended=ended,
        )
        await session.commit()


async def _given_back(
    ctx: AppContext,
    session,
    connection_id: uuid.UUID,
    claim: Claim,
    *,
    code: str,
    error: str,
    retry: bool,
    needs_person: bool = False,
    audited: dict | None = None,
    hold: datetime | None = None,
    ended: bool = False,
) -> None:
    """``_release``'s statements, in ``session``'s transaction (``hold``: the budget's next
    read no sooner)."""
    until = (
        datetime.now(UTC) + timedelta(seconds=ctx.settings.SYNC_RETRY_SECONDS) if retry else None
    )
    await queries.give_back_claim(
        session, connection_id=connection_id, lease=claim.lease, until=until, error=error[:500]
    )
    if needs_person:
        await queries.needs_person(
            session, connection_id=connection_id, error=error[:500], ended=ended
        )
    await _end_run(
        session, claim.run_id, SyncStatus.FAILED, error=code[:100], error_detail=error[:500]
    )
    if audited is not None:
        await audit.record(session=session, connection_id=connection_id, **audited)
    if hold is not None:
        await budget.hold(session, connection_id=connection_id, until=hold)


async def _spend(ctx: AppContext, connection_id: uuid.UUID, sent: int, per_day: int | None) -> None:
    """The read's requests counted against the budget, committed (for a source that has one;
    nothing is sent to the database for one that has none, or when no request left)."""
    if per_day is None or not sent:
        return
    async with ctx.sessions() as session:
        await budget.record(session, connection_id=connection_id, sent=sent, per_day=per_day)
        await session.commit()


async def _write(
    ctx: AppContext,
    connection_id: uuid.UUID,
    claim: Claim,
    reading: Reading,
    *,
    ending: dict | None = None,
    started=None,
) -> SyncResult:
    """What the read found written, the run ended ``succeeded`` (its notes, if any, kept as
    its ``error_detail`` and the connection's ``sync_error``); with ``ending`` (a failure the
    read came with), the run ends as ``_release`` ends it instead, in the same transaction."""
    user_id, lease = claim.user_id, claim.lease
    accounts = reading.accounts
    as_of = datetime.now(UTC)
    async with ctx.sessions() as session:
        connection = await queries.locked_connection(session, connection_id=connection_id)
        if connection is None or connection.sync_lease_until != lease:
            # Our claim lapsed and someone else took over (or the connection went away).
            await session.rollback()
            return SyncResult("claimed", status=connection.status if connection else "unknown")
        positions = 0
        counted = ledger.Counts()
        seen: list[str] = []
        for data in accounts:
            seen.append(data.external_id)
            account_id = await queries.upsert_account(
                session,
                user_id=user_id,
                connection_id=connection_id,
                data=data,
                as_of=as_of,
            )
            if data.balance is not None:
                session.add(
                    BalanceSnapshot(
                        account_id=account_id,
                        as_of=as_of,
                        currency=data.currency,
                        current=data.balance.current,
                        available=data.balance.available,
                        cash=data.balance.cash,
                        buying_power=data.balance.buying_power,
                    )
                )
            positions += await queries.replace_positions(
                session,
                account_id=account_id,
                holdings=data.positions,
                currency=data.currency,
                as_of=as_of,
            )
            if data.window is not None:
                counted += await ledger.reconcile(
                    session,
                    user_id=user_id,
                    account_id=account_id,
                    listed=data.transactions,
                    window=data.window,
                    match_days=ctx.settings.TRANSACTIONS_PENDING_MATCH_DAYS,
                    removed=data.removed,
                    changes_only=data.changes_only,
                )
        if reading.complete:
            await queries.close_unlisted_accounts(
                session, connection_id=connection_id, seen=seen, as_of=as_of
            )
        if reading.state is not None:
            # With the data it belongs to: a cursor is never ahead of what was written. A key
            # set meanwhile (``started``: the state the read began with), by an institution's
            # webhook say, is kept.
            meanwhile = {
                k: v for k, v in (connection.source_state or {}).items() if k not in (started or {})
            }
            connection.source_state = {**reading.state, **meanwhile}
        if ending is not None:
            await _given_back(ctx, session, connection_id, claim, **ending)
            await session.commit()
            return SyncResult("sync_failed", accounts=len(accounts), status=connection.status)
        noted = "; ".join(reading.notes)[:500] or None
        connection.synced_at = as_of
        connection.sync_error = noted
        connection.sync_lease_until = None
        await _end_run(
            session,
            claim.run_id,
            SyncStatus.SUCCEEDED,
            accounts=len(accounts),
            positions=positions,
            transactions_added=counted.added,
            transactions_modified=counted.modified,
            transactions_removed=counted.removed,
            **(
                {"error": reading.notes[0].split(":")[0][:100], "error_detail": noted}
                if noted
                else {}
            ),
        )
        await session.commit()
    return SyncResult(
        "synced",
        synced_at=as_of,
        accounts=len(accounts),
        positions=positions,
        status="active",
        transactions=counted,
    )
