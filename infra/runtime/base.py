"""The one interface every runtime implements, and all that infra/workflows.py knows of them.

A runtime runs the shared servers (PostgreSQL, Valkey, the mail catcher) and the development
apps somewhere: as processes on this machine (local.py) or as Docker Compose projects
(compose.py). The workflows set the checkout up (certificates, env files), call these methods,
and print the same summaries whichever runtime answers; a third runtime (a Kubernetes
namespace, a remote host) is one more class with these methods, chosen in ``runtime_for``
(infra/runtime/__init__.py).
"""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncpg

    from infra.envfiles import Credentials


def say(message: str) -> None:
    print(message, flush=True)


class Runtime(Protocol):
    name: str
    """``local`` or ``compose``: what ``DASHTAM_RUNTIME`` and ``inv runtime`` call it."""

    described: str
    """One line for ``inv status``: what runs the services, and how to switch."""

    measures_coverage: bool
    """Whether ``inv test --cov`` can run here (coverage needs the tests on this machine)."""

    def up(self, *, reload: bool, workers: int, timeout: float) -> list[str]:
        """Start what is down of the development environment (the shared servers, the schema at
        head, the apps) and wait until every app answers healthy; the names of what started
        (empty: all of it was already up)."""
        ...

    def down(self) -> list[str]:
        """Stop the apps, then the servers, keeping every byte of data; what was stopped."""
        ...

    def status(self) -> int:
        """Print the services' table; 0 when every running service is healthy."""
        ...

    def logs(self, *, service: str | None, follow: bool, lines: int) -> None:
        """The last ``lines`` of each service's log (or one service's), then, with ``follow``,
        what they write next."""
        ...

    def clean(self) -> None:
        """Stop everything and delete the servers' data; env files and certificates stay."""
        ...

    def servers_running(self) -> bool:
        """Whether this runtime's PostgreSQL is up (the tasks that run SQL need it)."""
        ...

    async def superuser_connect(
        self, port: int, database: str = "postgres"
    ) -> "asyncpg.Connection":
        """PostgreSQL's superuser, on 127.0.0.1:``port`` (for dropping the test databases)."""
        ...

    def after_schema(self, creds: "Credentials", *, janitor: bool = False) -> None:
        """The superuser's steps once a schema exists (infra/postgres/after_schema.sql)."""
        ...

    def prepare_tests(self) -> list[str]:
        """The shared servers up (never the development apps) and the test template rebuilt
        from nothing, the previous run's test mail deleted; the servers this call started."""
        ...

    def release_tests(self, started: Sequence[str]) -> None:
        """After a run: stop the servers ``prepare_tests`` started, unless a developer's apps
        now use them."""
        ...

    def run_tests(self, args: Sequence[str], *, env: Mapping[str, str], cov: bool) -> int:
        """pytest with ``args`` (and ``env`` on top of the test environment's), against the
        servers ``prepare_tests`` readied; pytest's exit code."""
        ...
