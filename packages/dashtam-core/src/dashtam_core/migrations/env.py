"""Alembic's environment for Dashtam.

Migrations run only on a connection that ``dashtam_core.migrate`` hands over (init-db,
init-test-db, ``dashtam-migrate`` and the ``inv migrate*`` tasks): it has taken the schema lock
and opened the transaction the whole run shares. There is no alembic.ini on purpose.
"""

from alembic import context

from dashtam_core.migrate import CONTEXT_OPTIONS

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "Dashtam's migrations run through `inv migrate` / dashtam-migrate, not the alembic command"
    )

context.configure(connection=connection, **CONTEXT_OPTIONS)
with context.begin_transaction():
    context.run_migrations()
