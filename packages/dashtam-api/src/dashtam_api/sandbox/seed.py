"""Connected sandbox providers in bulk, without a browser (benchmarks and tests).

Each connection gets real sandbox tokens, issued into the same Valkey the sandbox server reads,
for an account holder whose subject is the connection's id (so the sandbox's per-subject
counters, GET /sandbox/_control/subjects/{id}, can be read per connection). ``expires_in`` makes
the access tokens due for a refresh at once.
"""

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam_api.connections.service import store_tokens
from dashtam_api.context import AppContext
from dashtam_api.sandbox import store
from dashtam_models import Provider, ProviderConnection, User


@dataclass(frozen=True)
class Seeded:
    user_id: uuid.UUID
    provider_id: uuid.UUID
    connection_id: uuid.UUID


async def connected_sandbox(
    ctx: AppContext,
    session: AsyncSession,
    *,
    count: int,
    user: User | None = None,
    expires_in: int = store.ACCESS_TOKEN_SECONDS,
) -> list[Seeded]:
    """``count`` active sandbox connections (for ``user``, or a new one); the caller commits."""
    spec = ctx.registry["sandbox"]
    if user is None:
        user = User(email=f"seed-{uuid.uuid4().hex[:12]}@example.com", name="Seeded")
        session.add(user)
        await session.flush()
    providers = [
        Provider(user_id=user.id, provider_key="sandbox", alias=f"Seeded sandbox {i + 1}")
        for i in range(count)
    ]
    session.add_all(providers)
    await session.flush()
    connections = [ProviderConnection(provider_id=p.id) for p in providers]
    session.add_all(connections)
    await session.flush()
    for connection in connections:
        token = await store.issue_tokens(
            ctx.redis,
            client_id=spec.client_id,
            scope=" ".join(spec.scopes),
            subject=str(connection.id),
            access_seconds=max(expires_in, 1),
        )
        token["expires_in"] = expires_in  # may be 0 or negative: due (or overdue) at once
        await store_tokens(
            session=session, vault=ctx.vault, spec=spec, connection=connection, token=token
        )
    return [Seeded(user.id, c.provider_id, c.id) for c in connections]
