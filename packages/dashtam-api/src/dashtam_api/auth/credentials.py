"""What the credentials a person gives apps share (API keys, SimpleFIN accesses): revoking one."""

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.audit import service as audit
from dashtam_api.errors import NotFound
from dashtam_models import ApiKey, SimplefinAccess, User


async def revoke(
    *,
    session: AsyncSession,
    user: User,
    credential: ApiKey | SimplefinAccess | None,
    missing: str,
    action: str,
    id_key: str,
    where: dict,
) -> None:
    """Stop the person's credential now, audited as ``action`` (naming it under ``id_key``);
    revoking it again changes nothing; 404 with ``missing`` if it is none of the person's."""
    if credential is None or credential.user_id != user.id:
        raise NotFound(missing)
    if credential.revoked_at is None:
        credential.revoked_at = datetime.now(UTC)
        await audit.security(
            session=session,
            action=action,
            user_id=user.id,
            details={id_key: str(credential.id)},
            **where,
        )
