"""What benchmarks set up and take down: a scratch clone of the test template, an API server of
their own on it."""

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL

from dashtam_core.config import TestSettings, load_settings
from dashtam_core.test_databases import clone_database, clone_name, drop_database
from infra import apps, workflows
from infra.layout import Layout


@contextmanager
def scratch_database(layout: Layout, label: str) -> Iterator[tuple[TestSettings, URL]]:
    """With the shared servers up (started if they were not, stopped again): the test settings
    and the URL of a fresh marked clone of the template, named after ``label``."""
    with workflows.test_servers(layout):
        template = load_settings(TestSettings, layout.test_env_file)
        name = clone_name(template.database_name, f"{label}{uuid.uuid4().hex[:6]}")
        url = asyncio.run(
            clone_database(
                template_url=template.database_url,
                name=name,
                environment=template.ENVIRONMENT,
                dev_database_name=template.DEV_DATABASE_NAME,
                project_id=template.PROJECT_ID,
            )
        )
        try:
            yield template, url
        finally:
            # Autovacuum may be busy with what the bench wrote: wait it out.
            asyncio.run(drop_database(url=template.database_url, name=name, patience=300))


@contextmanager
def serve_api(
    layout: Layout,
    *,
    pid_name: str,
    port: int,
    overrides: dict[str, str],
    env_file: Path | None = None,
    workers: int = 1,
) -> Iterator[None]:
    """The API with ``env_file`` (the test env file unless given) and ``overrides`` (a scratch
    database, say) on ``port``, no reload, healthy before the block runs, stopped after it."""
    server = apps.APPS[0]
    env_file = env_file or layout.test_env_file
    apps.start_app(
        server,
        layout=layout,
        env_file=env_file,
        reload=False,
        pid_name=pid_name,
        port=port,
        workers=workers,
        env_overrides=overrides,
    )
    try:
        apps.wait_healthy(
            server,
            layout=layout,
            env_file=env_file,
            timeout=60,
            pid_name=pid_name,
            port=port,
        )
        yield
    finally:
        apps.stop_app(server, layout=layout, pid_name=pid_name)
