"""The Compose runtime's files, checked without a Docker engine: Compose's merge rules (our own
implementation of them), what each stack's files merge into, that every app gets every setting
it needs in every environment, the generated files, and the commands each task runs."""

import os
import shutil
from pathlib import Path

import pytest

from dashtam_core.config import Settings
from infra.envfiles import ensure_env_files, render
from infra.files import read_env
from infra.layout import Layout
from infra.runtime import compose, compose_plugin
from tests.fixtures.environment import ROOT

LAYOUT = Layout(root=ROOT)
APPS = ("app", "callback", "init-db")


# --- Compose's merge rules ----------------------------------------------------------------------


def test_mappings_merge_key_by_key_and_single_values_are_replaced():
    base = {"services": {"a": {"image": "x:1", "command": ["run", "--reload"], "restart": "no"}}}
    overlay = {"services": {"a": {"command": ["run"]}, "b": {"image": "y"}}}
    assert compose.merge(base, overlay) == {
        "services": {
            "a": {"image": "x:1", "command": ["run"], "restart": "no"},
            "b": {"image": "y"},
        }
    }


def test_sequences_follow_their_own_rules():
    base = {
        "services": {
            "a": {
                "ports": ["8000:8000"],
                "environment": ["A=1", "B=2"],
                "volumes": ["../src:/app/src", "data:/var/lib/data"],
                "env_file": ["dev.env"],
            }
        }
    }
    overlay = {
        "services": {
            "a": {
                "ports": ["9000:9000", "8000:8000"],
                "environment": {"B": "3", "C": None},
                "volumes": ["other:/var/lib/data"],
                "env_file": ["more.env"],
            }
        }
    }
    a = compose.merge(base, overlay)["services"]["a"]
    assert a["ports"] == ["8000:8000", "9000:9000"]  # appended, no repeat
    assert a["environment"] == {"A": "1", "B": "3", "C": ""}  # by key, list form read
    assert a["volumes"] == ["../src:/app/src", "other:/var/lib/data"]  # by target path
    assert a["env_file"] == ["dev.env", "more.env"]  # appended: hence !override below


def test_reset_removes_and_override_replaces(tmp_path):
    (tmp_path / "base.yml").write_text(
        "services:\n  a:\n    ports: ['1:1']\n    env_file: [dev.env]\n"
        "    volumes: ['../src:/src']\n    depends_on: {db: {condition: service_healthy}}\n"
    )
    (tmp_path / "over.yml").write_text(
        "services:\n  a:\n    ports: !reset []\n    env_file: !override [test.env]\n"
        "    volumes: !override ['..:/app']\n    depends_on: !reset {}\n"
    )
    merged = compose.merged([tmp_path / "base.yml", tmp_path / "over.yml"])
    assert merged == {"services": {"a": {"env_file": ["test.env"], "volumes": ["..:/app"]}}}


def test_yaml_anchors_and_merge_keys_are_read(tmp_path):
    (tmp_path / "a.yml").write_text(
        "x: &app {image: i, env_file: [e]}\nservices:\n  a:\n    <<: *app\n    command: [c]\n"
    )
    assert compose.merged([tmp_path / "a.yml"])["services"]["a"] == {
        "image": "i",
        "env_file": ["e"],
        "command": ["c"],
    }


# --- the project's stacks -----------------------------------------------------------------------


def _services(stack: compose.Stack) -> dict:
    return compose.merged(stack.files(LAYOUT))["services"]


def _mounts(service: dict) -> list[str]:
    return [
        v if isinstance(v, str) else f"{v['source']}:{v['target']}"
        for v in service.get("volumes", [])
    ]


def test_the_dev_stack_reloads_from_the_mounted_source_and_keeps_its_data():
    services = _services(compose.DEV)
    assert set(services) == {
        *("postgres", "valkey", "mailpit", "init-db", "schema-owner", "app", "callback")
    }
    app = services["app"]
    assert "--reload" in app["command"]
    assert app["build"]["target"] == "dev"
    assert "../packages:/app/packages" in _mounts(app)
    assert "../certs:/certs:ro" in _mounts(app)
    assert app["env_file"] == ["../.dashtam/compose/dev.env"]
    assert "postgres-data:/var/lib/postgresql" in _mounts(services["postgres"])
    assert app["depends_on"]["schema-owner"] == {"condition": "service_completed_successfully"}
    assert services["init-db"]["command"] == ["dashtam-init-db"]
    # The callback forwards to the API by its service name (a name the certificate carries).
    assert services["callback"]["environment"]["API_BASE_URL"] == "https://app:8000"
    from infra.certs import DNS_NAMES

    assert {"app", "callback"} <= set(DNS_NAMES)


def test_the_mail_catcher_is_mailpit_under_the_projects_certificate_and_tags():
    """What the local catcher does, asked of Mailpit: STARTTLS required and HTTPS, both under
    the project's certificate (which names the service), messages tagged by environment; the
    apps mail it inside the network, `inv mail` and the tests read it on the published port."""
    from infra.certs import DNS_NAMES

    mailpit = _services(compose.DEV)["mailpit"]
    env = mailpit["environment"]
    assert env["MP_SMTP_REQUIRE_STARTTLS"] == "true"
    assert env["MP_SMTP_TLS_CERT"] == env["MP_UI_TLS_CERT"] == "/certs/server.pem"
    assert "../certs:/certs:ro" in _mounts(mailpit)
    for environment in ("development", "testing"):
        assert f'{environment}="X-Dashtam-Environment: {environment}"' in env["MP_TAG"]
    assert "mailpit" in DNS_NAMES
    assert mailpit["ports"] == ["127.0.0.1:51025:1025", "127.0.0.1:58025:8025"]
    # The same ports as the local runtime's catcher: the env files' values hold for both.
    assert (compose.MAIL_CATCHER[0], *compose.MAIL_CATCHER[1:]) == ("mailpit", 1025, 8025)
    from infra.layout import DEFAULT_MAIL_HTTP_PORT, DEFAULT_MAIL_SMTP_PORT

    assert (DEFAULT_MAIL_SMTP_PORT, DEFAULT_MAIL_HTTP_PORT) == (51025, 58025)
    prod = compose.merged(compose.PROD.files(LAYOUT))["services"]["mailpit"]
    assert prod["profiles"] == ["mail-catcher"]  # production mails through its own server


def test_the_test_stack_replaces_the_command_and_the_env_file_and_keeps_no_data():
    services = _services(compose.TEST)
    app = services["app"]
    assert app["command"] == ["sleep", "infinity"]
    assert app["env_file"] == ["../.dashtam/compose/test.env"]
    assert app["build"] == {
        "context": "..",
        "dockerfile": "infra/docker/Dockerfile",
        "target": "test",
    }
    assert "ports" not in app
    assert "healthcheck" not in app
    assert "depends_on" not in app
    # The checkout, with the generated env file where the tests' commands look; no volume of
    # the test app's own.
    assert _mounts(app) == [
        "..:/app",
        "../.dashtam/compose/test.env:/app/env/.env.test:ro",
        "../certs:/certs:ro",
    ]
    assert services["init-db"]["command"] == ["dashtam-init-test-db"]
    assert services["init-db"]["env_file"] == ["../.dashtam/compose/test.env"]
    assert services["schema-owner"]["env_file"] == ["../.dashtam/compose/schema-owner-test.env"]
    assert compose.TEST.project != compose.DEV.project


def test_the_ci_stack_publishes_nothing_and_drops_durability():
    services = _services(compose.CI)
    for name, service in services.items():
        assert "ports" not in service, name
    assert "fsync=off" in services["postgres"]["command"]


def test_the_prod_stack_has_no_reload_no_sandbox_no_source_and_scales():
    merged = compose.merged(compose.PROD.files(LAYOUT))
    services = merged["services"]
    for name in APPS:
        service = services[name]
        assert service["build"]["target"] == "prod", name
        assert service["env_file"] == ["../.dashtam/compose/prod.env"], name
        assert not any("packages" in m or m.startswith("..:") for m in _mounts(service)), name
        assert "--reload" not in service.get("command", []), name
    app = services["app"]
    assert app["environment"]["ENVIRONMENT"] == "production"  # no sandbox, no /docs
    assert "ports" not in app  # replicas: --scale app=N, no fixed host port
    assert "container_name" not in app
    assert services["proxy"]["ports"] == ["443:443"]
    assert {services[s]["profiles"][0] for s in ("prometheus", "grafana")} == {"monitoring"}
    assert "ports" not in services["postgres"]
    # The replicas' network is the one /metrics is allowed from, and the one the proxy and
    # Prometheus share with them.
    subnet = merged["networks"]["private"]["ipam"]["config"][0]["subnet"]
    assert subnet in app["environment"]["METRICS_ALLOW_FROM"]
    assert "private" in app["networks"]
    assert "private" in services["prometheus"]["networks"]


def test_the_bootstrap_sql_is_the_local_runtimes_own_file():
    postgres = _services(compose.DEV)["postgres"]
    mounted = {m.split(":")[1]: m.split(":")[0] for m in _mounts(postgres)}
    assert (ROOT / "compose" / mounted["/dashtam/sql"]).resolve() == LAYOUT.bootstrap_sql.parent
    hook = (ROOT / "compose" / mounted["/docker-entrypoint-initdb.d/10-dashtam.sh"]).read_text()
    assert "-f /dashtam/sql/bootstrap.sql" in hook
    assert os.access(ROOT / "compose" / "postgres" / "init-dashtam.sh", os.X_OK)
    # `inv up` runs it again on every start: the same file, idempotent (the local runtime's
    # tests run it repeatedly against a real server, tests/integration/test_local_runtime.py).
    up = compose.task_commands(LAYOUT, "up")
    assert any("/dashtam/sql/bootstrap.sql" in step for step in up)


@pytest.fixture
def project(tmp_path) -> Layout:
    """A checkout of our own: the committed env examples rendered with fresh secrets."""
    layout = Layout(root=tmp_path)
    shutil.copytree(
        ROOT / "env",
        tmp_path / "env",
        ignore=shutil.ignore_patterns(".env.dev", ".env.test", ".env.prod"),
    )
    shutil.copytree(ROOT / "compose", tmp_path / "compose")
    (tmp_path / ".dashtam").mkdir()
    (tmp_path / ".dashtam" / "project-id").write_text("0123456789abcdef\n")
    ensure_env_files(layout)
    example = (tmp_path / "env" / ".env.prod.example").read_text()
    (tmp_path / "env" / ".env.prod").write_text(render(example, pg_port=55432, redis_port=56379))
    compose.write_files(layout, superuser_password="s" * 32, valkey_password="v" * 32)
    return layout


def _environment(layout: Layout, service: dict) -> dict[str, str]:
    """What the container's process sees: its env files in order, then `environment`."""
    values: dict[str, str] = {}
    for env_file in service.get("env_file", []):
        values.update(read_env(layout.root / "compose" / env_file))
    values.update({k: str(v) for k, v in service.get("environment", {}).items()})
    return values


@pytest.mark.parametrize("stack", [compose.DEV, compose.TEST, compose.CI, compose.PROD])
def test_every_app_gets_every_setting_it_needs_in_every_environment(project, stack, monkeypatch):
    services = compose.merged(stack.files(project))["services"]
    for name in APPS:
        values = _environment(project, services[name])
        # As the container's process reads them: its environment, no env file of ours.
        for field in Settings.model_fields:
            monkeypatch.delenv(field, raising=False)
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        settings = Settings(_env_file=None)  # refuses placeholders in production
        assert settings.TOKEN_ENCRYPTION_KEYS, name
        assert settings.database_url.host == "postgres", name
        assert settings.REDIS_URL.split("@")[1].startswith("valkey:6379/"), name
        for key in compose.CERT_KEYS:
            assert values[key].startswith("/certs/"), (name, key)
        if settings.ENVIRONMENT in ("development", "testing") and settings.SMTP_URL:
            assert settings.SMTP_URL == "smtp://mailpit:1025", name
        if "MAIL_CATCHER_HOST" in values:
            assert values["MAIL_CATCHER_HOST"] == "mailpit", name
        expected = {"DEV": "development", "TEST": "testing", "CI": "testing", "PROD": "production"}
        stack_name = next(k for k, v in vars(compose).items() if v is stack)
        assert expected[stack_name] == settings.ENVIRONMENT, name
    owner = services["schema-owner"]
    owner_env = _environment(project, owner)
    assert {"PGHOST", "PGPASSWORD", "PGDATABASE", "DASHTAM_APP_USER", "DASHTAM_LOCK_SCHEMA"} <= set(
        owner_env
    )


def test_the_generated_files_keep_the_secrets_and_are_private(project):
    folder = compose.compose_dir(project)
    dev, generated = read_env(project.dev_env_file), read_env(folder / "dev.env")
    assert generated["SECRET_KEY"] == dev["SECRET_KEY"]
    assert (
        generated["DATABASE_URL"].replace("@postgres:5432/", "@127.0.0.1:55432/")
        == dev["DATABASE_URL"]
    )
    postgres = read_env(folder / "postgres.env")
    assert postgres["DASHTAM_TEST_DB_MARKER"].endswith("project=0123456789abcdef template")
    valkey = (folder / "valkey.conf").read_text()
    assert valkey.count("\nuser ") == 2
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_production_needs_its_own_env_file(tmp_path):
    layout = Layout(root=tmp_path)
    with pytest.raises(compose.InfraError, match=r"env/.env.prod is missing"):
        compose.write_files(layout, superuser_password="s", valkey_password="v", production=True)


# --- commands -----------------------------------------------------------------------------------


def test_without_docker_compose_the_configuration_is_our_own_merge(project, monkeypatch):
    monkeypatch.setattr(compose, "compose_plugin", lambda: False)
    assert compose.config(project, compose.TEST) == compose.merged(compose.TEST.files(project))


def test_one_helper_builds_every_compose_command():
    files = [
        str(ROOT / "compose" / "docker-compose.yml"),
        str(ROOT / "compose" / "docker-compose.test.yml"),
    ]
    assert compose.command(LAYOUT, compose.TEST, "ps") == [
        "docker", "compose", "-p", "dashtam-test", "-f", files[0], "-f", files[1], "ps"
    ]  # fmt: skip
    plans = {task: compose.task_commands(LAYOUT, task) for task in
             ("up", "down", "status", "logs", "test-setup", "test", "clean")}  # fmt: skip
    for steps in plans.values():
        for step in steps:
            assert step[:3] == ["docker", "compose", "-p"]
    assert plans["up"][0][-4:] == ["up", "-d", "--build", "--wait"]
    assert plans["down"][0][-1] == "stop"  # data stays
    # Tests start the dev project's servers only, never its apps, and never stop anything of it.
    assert plans["test-setup"][0][3] == "dashtam"
    assert plans["test-setup"][0][-3:] == ["postgres", "valkey", "mailpit"]
    assert all(step[3] == "dashtam-test" for step in plans["test-setup"][2:])
    assert all(step[3] == "dashtam-test" for step in plans["test"])
    assert plans["test"][0][-6:] == ["exec", "-T", "app", "python", "-m", "pytest"]
    with pytest.raises(compose.InfraError):
        compose.task_commands(LAYOUT, "deploy")


@pytest.mark.skipif(not compose_plugin(), reason="no Docker CLI with the compose plugin here")
@pytest.mark.parametrize("stack", [compose.DEV, compose.TEST, compose.CI, compose.PROD])
def test_our_merge_agrees_with_docker_compose_config(project, stack):
    """Where Docker's own compose is installed (GitHub's runners), both readings agree on what
    the tests above rely on."""
    ours, theirs = compose.merged(stack.files(project)), compose.config(project, stack)
    for name, service in ours["services"].items():
        other = theirs["services"][name]
        assert other.get("command") == service.get("command"), name
        assert bool(other.get("ports")) == bool(service.get("ports")), name
        assert len(other.get("volumes", [])) == len(service.get("volumes", [])), name
        # Ours keeps the files' short form (paths relative to compose/); Compose v2 writes the
        # long form, {path, required}, with absolute paths: both must name the same files.
        assert env_file_paths(other, project.root / "compose") == env_file_paths(
            service, project.root / "compose"
        ), name


def env_file_paths(service: dict, base: Path) -> list[Path]:
    """A service's env files as absolute paths, from either of Compose's spellings of them."""
    entries = service.get("env_file") or []
    if isinstance(entries, str | dict):
        entries = [entries]
    return [
        (base / (entry["path"] if isinstance(entry, dict) else entry)).resolve()
        for entry in entries
    ]


def test_env_files_are_read_in_both_of_composes_spellings(tmp_path):
    short = {"env_file": ["../.dashtam/compose/dev.env"]}
    long = {"env_file": [{"path": str(tmp_path / ".dashtam/compose/dev.env"), "required": True}]}
    assert env_file_paths(short, tmp_path / "compose") == env_file_paths(long, tmp_path)
    assert env_file_paths({"env_file": "a.env"}, tmp_path) == [tmp_path / "a.env"]
    assert env_file_paths({}, tmp_path) == []
