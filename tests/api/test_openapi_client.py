"""A client generated from the document by a well-known generator (openapi-python-client) reads
well: one module per tag, one per operation, named from the stable operation ids."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

EXPECTED = {
    "auth": {
        "auth_login",
        "auth_refresh",
        "auth_list_sessions",
        "auth_end_session",
        "auth_security_events",
        "auth_password_reset",
        "auth_verify_email",
    },
    "providers": {"providers_create", "providers_list", "providers_get", "providers_delete"},
    "connections": {"connections_start", "connections_status", "connections_revoke"},
    "accounts": {"accounts_list", "accounts_sync", "accounts_sync_runs", "accounts_net_worth"},
    "transactions": {"transactions_list", "transactions_of_account", "transactions_get"},
    "webhooks": {"webhooks_create", "webhooks_rotate_secret", "webhooks_test"},
}


async def test_a_generated_client_has_readable_names(client, tmp_path: Path):
    document = (await client.get("/openapi.json")).json()
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert all(not i.endswith(("_get", "_post")) and "_api_v1_" not in i for i in ids), ids

    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(document))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"project_name_override": "dashtam-client", "post_hooks": []}))
    generated = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(spec),
            "--config",
            str(config),
            "--output-path",
            str(tmp_path / "client"),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    api = tmp_path / "client" / "api"
    modules = {
        tag.name: {m.stem for m in tag.glob("*.py") if m.stem != "__init__"}
        for tag in api.iterdir()
        if tag.is_dir()
    }
    for tag, names in EXPECTED.items():
        assert names <= modules.get(tag, set()), (tag, modules.get(tag))
    # Every operation has its module under its tag, named after its id.
    assert sum(len(m) for m in modules.values()) == len(ids)
