"""webhooks

Endpoints, the outbox of deliveries and the log of attempts, and the events written into the
outbox by PostgreSQL itself: ``webhook_emit`` adds one delivery per subscribed endpoint and
wakes the dispatchers (NOTIFY, sent at commit); triggers call it when a connection's status
changes and when a sync run ends, in the transaction of that change, whoever writes it
(docs/webhooks.md).

Revision ID: 4393df87efd6
Revises: f2a8c5e1d047
Create Date: 2026-12-01 02:16:16.384030
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# One event: a delivery for every enabled endpoint of the user subscribed to its type (or for one
# endpoint, whatever it subscribes to: webhook.test), all with the same event id. The body is
# fixed here, so every attempt sends the same bytes.
_EMIT = """
CREATE FUNCTION webhook_emit(p_user uuid, p_type text, p_data jsonb, p_endpoint uuid DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    event uuid := gen_random_uuid();
    body jsonb := jsonb_build_object(
        'type', p_type,
        'timestamp', to_char(clock_timestamp() AT TIME ZONE 'UTC',
                             'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', p_data);
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, payload, next_attempt_at)
    SELECT e.id, event, p_type, body, now()
      FROM webhook_endpoints e
     WHERE e.user_id = p_user AND e.enabled
       AND CASE WHEN p_endpoint IS NULL THEN p_type = ANY (e.events) ELSE e.id = p_endpoint END;
    IF FOUND THEN
        PERFORM pg_notify('webhook_deliveries', '');
    END IF;
    RETURN event;
END
$$
"""

# connection.active / .expired / .error / .revoked: the status a connection enters.
_CONNECTION_STATUS = """
CREATE FUNCTION webhook_connection_status() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    previous text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        previous := OLD.status;
    END IF;
    IF NEW.status IN ('active', 'expired', 'error', 'revoked') THEN
        PERFORM webhook_emit(p.user_id, 'connection.' || NEW.status, jsonb_build_object(
                    'connection_id', NEW.id,
                    'provider_id', NEW.provider_id,
                    'status', NEW.status,
                    'previous_status', previous,
                    'detail', NEW.error_message))
           FROM providers p
          WHERE p.id = NEW.provider_id;
    END IF;
    RETURN NULL;
END
$$
"""

# sync.succeeded (with what it wrote) / sync.failed (with why): a run that ends.
_SYNC_ENDED = """
CREATE FUNCTION webhook_sync_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhook_emit(p.user_id, 'sync.' || NEW.status, jsonb_build_object(
                'run_id', NEW.id,
                'connection_id', NEW.connection_id,
                'provider_id', c.provider_id,
                'trigger', NEW.trigger,
                'status', NEW.status,
                'started_at', NEW.started_at,
                'finished_at', NEW.finished_at,
                'counts', CASE WHEN NEW.status = 'succeeded' THEN jsonb_build_object(
                    'accounts', NEW.accounts,
                    'positions', NEW.positions,
                    'transactions', CASE WHEN NEW.transactions_added IS NOT NULL THEN
                        jsonb_build_object('added', NEW.transactions_added,
                                           'modified', NEW.transactions_modified,
                                           'removed', NEW.transactions_removed) END) END,
                'error', CASE WHEN NEW.error IS NOT NULL THEN
                    jsonb_build_object('code', NEW.error, 'detail', NEW.error_detail) END))
       FROM provider_connections c
       JOIN providers p ON p.id = c.provider_id
      WHERE c.id = NEW.connection_id;
    RETURN NULL;
END
$$
"""

_TRIGGERS = (
    """CREATE TRIGGER webhook_connection_status AFTER UPDATE OF status ON provider_connections
       FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
       EXECUTE FUNCTION webhook_connection_status()""",
    """CREATE TRIGGER webhook_connection_created AFTER INSERT ON provider_connections
       FOR EACH ROW WHEN (NEW.status <> 'pending')
       EXECUTE FUNCTION webhook_connection_status()""",
    """CREATE TRIGGER webhook_sync_ended AFTER UPDATE OF status ON sync_runs
       FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status <> 'running')
       EXECUTE FUNCTION webhook_sync_ended()""",
)
revision: str = "4393df87efd6"
down_revision: str | None = "f2a8c5e1d047"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("secret_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("webhook_endpoints_user_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("webhook_endpoints_pkey")),
    )
    op.create_index(
        op.f("ix_webhook_endpoints_user_id"), "webhook_endpoints", ["user_id"], unique=False
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')",
            name=op.f("ck_webhook_deliveries_status"),
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("webhook_deliveries_endpoint_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("webhook_deliveries_pkey")),
        sa.UniqueConstraint(
            "endpoint_id", "event_id", name=op.f("webhook_deliveries_endpoint_id_event_id_key")
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_created_at", "webhook_deliveries", ["created_at"], unique=False
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("webhook_attempts_delivery_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("webhook_attempts_endpoint_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("webhook_attempts_pkey")),
    )
    op.create_index(
        op.f("ix_webhook_attempts_delivery_id"), "webhook_attempts", ["delivery_id"], unique=False
    )
    op.create_index(
        "ix_webhook_attempts_endpoint_id_attempted_at_id",
        "webhook_attempts",
        ["endpoint_id", "attempted_at", "id"],
        unique=False,
    )
    op.add_column(
        "provider_connections",
        sa.Column("reauth_notice_for", sa.DateTime(timezone=True), nullable=True),
    )
    for statement in (_EMIT, _CONNECTION_STATUS, _SYNC_ENDED, *_TRIGGERS):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER webhook_sync_ended ON sync_runs")
    op.execute("DROP TRIGGER webhook_connection_created ON provider_connections")
    op.execute("DROP TRIGGER webhook_connection_status ON provider_connections")
    op.execute("DROP FUNCTION webhook_sync_ended()")
    op.execute("DROP FUNCTION webhook_connection_status()")
    op.execute("DROP FUNCTION webhook_emit(uuid, text, jsonb, uuid)")
    op.drop_column("provider_connections", "reauth_notice_for")
    op.drop_index("ix_webhook_attempts_endpoint_id_attempted_at_id", table_name="webhook_attempts")
    op.drop_index(op.f("ix_webhook_attempts_delivery_id"), table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index(
        "ix_webhook_deliveries_due",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("ix_webhook_deliveries_created_at", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index(op.f("ix_webhook_endpoints_user_id"), table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
