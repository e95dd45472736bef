"""Dashtam's database tables.

Importing this package registers every table on ``SQLModel.metadata`` (re-exported as
``metadata``), so "forgot to import a model before create_all" cannot happen.
"""

from sqlmodel import SQLModel

from dashtam_models.accounts import Account, BalanceDay, BalanceSnapshot, Position
from dashtam_models.api_keys import ApiKey
from dashtam_models.audit import ProviderAuditLog, SecurityAuditLog
from dashtam_models.auth import (
    EmailVerification,
    Invitation,
    PasswordReset,
    RecoveryCode,
    RefreshToken,
    SessionEnd,
    UserSession,
)
from dashtam_models.imports import Import, ImportStatus
from dashtam_models.provider import (
    ConnectionStatus,
    Provider,
    ProviderConnection,
    ProviderToken,
)
from dashtam_models.simplefin import SimplefinAccess, SimplefinSetupToken
from dashtam_models.sync import SyncRun, SyncStatus, SyncTrigger
from dashtam_models.transactions import Transaction, TransactionKind, TransactionStatus
from dashtam_models.user import User
from dashtam_models.webhooks import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

metadata = SQLModel.metadata

# Tables a migration has dropped: old test databases may still hold them, and the test-database
# guard must still recognise them as Dashtam's. A revision that drops a table adds its name here.
RETIRED_TABLES: tuple[str, ...] = ()

__all__ = [
    "RETIRED_TABLES",
    "Account",
    "ApiKey",
    "BalanceDay",
    "BalanceSnapshot",
    "ConnectionStatus",
    "DeliveryStatus",
    "EmailVerification",
    "Import",
    "ImportStatus",
    "Invitation",
    "PasswordReset",
    "Position",
    "Provider",
    "ProviderAuditLog",
    "ProviderConnection",
    "ProviderToken",
    "RecoveryCode",
    "RefreshToken",
    "SecurityAuditLog",
    "SessionEnd",
    "SimplefinAccess",
    "SimplefinSetupToken",
    "SyncRun",
    "SyncStatus",
    "SyncTrigger",
    "Transaction",
    "TransactionKind",
    "TransactionStatus",
    "User",
    "UserSession",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "metadata",
]
