"""A Dashtam project of its own in a directory: its own env files and secrets, free ports for
PostgreSQL, Valkey, the mail catcher, the API and the callback server; its servers and their data go with it.

For what must never touch the shared servers: the runtime's own tests, and the fault drill,
which restarts PostgreSQL and Valkey under load (infra/faults.py). Its ports are its own pick
(infra/ports.py): a server that finds its port taken when it starts moves to another.
"""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra import enablebanking_key, ports, workflows
from infra.certs import ensure_certs
from infra.envfiles import ensure_env_files
from infra.layout import ROOT, Layout
from infra.runtime.local import LocalRuntime


def make(root: Path) -> LocalRuntime:
    """A new project under ``root`` (an empty directory) on free ports; nothing started."""
    (root / "env").mkdir(parents=True, exist_ok=True)
    for name in (".env.dev.example", ".env.test.example"):
        shutil.copy(ROOT / "env" / name, root / "env" / name)
    shutil.copytree(ROOT / "infra" / "postgres", root / "infra" / "postgres")
    layout = Layout(root=root)
    ensure_certs(layout.certs_dir)  # the mail catcher and the apps serve HTTPS under its own CA
    enablebanking_key.ensure_key(layout.certs_dir)  # the Enable Banking look-alike's app key
    picked = ports.free_ports(6)
    pg_port, redis_port, smtp_port, mail_http_port, api_port, callback_port = picked
    ensure_env_files(
        layout, pg_port=pg_port, redis_port=redis_port, mail_ports=(smtp_port, mail_http_port)
    )
    text = layout.dev_env_file.read_text()
    for old, new in (("8000", str(api_port)), ("8182", str(callback_port))):
        text = text.replace(f"_PORT={old}", f"_PORT={new}").replace(f":{old}\n", f":{new}\n")
    layout.dev_env_file.write_text(text)
    ports.record(layout, picked)
    return LocalRuntime(layout)


@contextmanager
def project(root: Path) -> Iterator[LocalRuntime]:
    """``make``, and afterwards everything of the project stopped and its data deleted."""
    runtime = make(root)
    try:
        yield runtime
    finally:
        workflows.down(runtime.layout)
        runtime.delete_data()
