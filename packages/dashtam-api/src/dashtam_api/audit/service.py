"""Every token event becomes a provider_audit_logs row, every security event of an account a
security_audit_logs row, without secrets."""

import ipaddress
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.storable_text import strip_nul
from dashtam_core.database import Database
from dashtam_models import ProviderAuditLog, SecurityAuditLog

# Keys that must never reach the audit log, whatever a caller passes in details.
_SECRET_KEYS = {
    "access_token",
    "refresh_token",
    "id_token",
    "code",
    "code_verifier",
    "client_secret",
    "password",
    "current_password",
    "state",
    "secret",
    "totp_code",
    "recovery_code",
}


def _clean(details: dict[str, Any]) -> dict[str, Any]:
    # JSONB cannot hold NUL; institutions and browsers can send it.
    return {
        k: strip_nul(v) if isinstance(v, str) else v
        for k, v in details.items()
        if k not in _SECRET_KEYS
    }


def _ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


def _row(*, action: str, user_id, provider_id, connection_id, ip, user_agent, details):
    return ProviderAuditLog(
        action=action,
        user_id=user_id,
        provider_id=provider_id,
        connection_id=connection_id,
        ip_address=_ip(ip),
        user_agent=strip_nul(user_agent or "")[:500] or None,
        details=_clean(details or {}),
    )


async def record(
    *,
    session: AsyncSession,
    action: str,
    user_id: uuid.UUID | None,
    provider_id: uuid.UUID | None = None,
    connection_id: uuid.UUID | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    details: dict | None = None,
) -> None:
    """Add an audit row to the request's transaction (it commits with the change it records)."""
    session.add(
        _row(
            action=action,
            user_id=user_id,
            provider_id=provider_id,
            connection_id=connection_id,
            ip=ip,
            user_agent=user_agent,
            details=details,
        )
    )


async def record_detached(*, db: Database, **fields) -> None:
    """Write an audit row in its own transaction, so it survives the request's rollback."""
    async with db.sessionmaker() as session:
        session.add(_row(**fields))
        await session.commit()


def _security_row(*, action: str, user_id, ip, user_agent, details) -> SecurityAuditLog:
    return SecurityAuditLog(
        action=action,
        user_id=user_id,
        ip_address=_ip(ip),
        user_agent=strip_nul(user_agent or "")[:500] or None,
        details=_clean(details or {}),
    )


async def security(
    *,
    session: AsyncSession,
    action: str,
    user_id: uuid.UUID | None,
    ip: str | None = None,
    user_agent: str | None = None,
    details: dict | None = None,
) -> None:
    """A security event, in the request's transaction (it commits with what it records)."""
    session.add(
        _security_row(action=action, user_id=user_id, ip=ip, user_agent=user_agent, details=details)
    )


async def security_detached(*, db: Database, **fields) -> None:
    """A security event in its own transaction: kept when the request fails (a failed sign-in)."""
    async with db.sessionmaker() as session:
        session.add(_security_row(**fields))
        await session.commit()
