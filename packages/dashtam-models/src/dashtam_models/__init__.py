"""Dashtam's database tables.

Importing this package registers every table on ``SQLModel.metadata`` (re-exported as
``metadata``), so "forgot to import a model before create_all" cannot happen.
"""

from sqlmodel import SQLModel

from dashtam_models.audit import ProviderAuditLog
from dashtam_models.auth import RefreshToken
from dashtam_models.provider import (
    ConnectionStatus,
    Provider,
    ProviderConnection,
    ProviderToken,
)
from dashtam_models.user import User

metadata = SQLModel.metadata

__all__ = [
    "ConnectionStatus",
    "Provider",
    "ProviderAuditLog",
    "ProviderConnection",
    "ProviderToken",
    "RefreshToken",
    "User",
    "metadata",
]
