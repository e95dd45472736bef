"""Settings precedence (process env > env file > defaults) and start-up refusals."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashtam_core.config import ConfigError, Settings, TestSettings, env_file_path, load_settings

GOOD_SECRET = "s" * 40


def write_env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ENVIRONMENT",
        "DATABASE_URL",
        "REDIS_URL",
        "SECRET_KEY",
        "DB_POOL_SIZE",
        "API_PORT",
        "DASHTAM_ENV_FILE",
        "DEV_DATABASE_NAME",
    ):
        monkeypatch.delenv(name, raising=False)


def test_default_applies_when_neither_env_nor_file_sets_it(tmp_path):
    settings = load_settings(Settings, write_env(tmp_path, "ENVIRONMENT=development\n"))
    assert settings.DB_POOL_SIZE == 10
    assert settings.API_PORT == 8000


def test_env_file_beats_default(tmp_path):
    settings = load_settings(Settings, write_env(tmp_path, "DB_POOL_SIZE=7\nAPI_PORT=9000\n"))
    assert settings.DB_POOL_SIZE == 7
    assert settings.API_PORT == 9000


def test_process_environment_beats_env_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DB_POOL_SIZE", "3")
    settings = load_settings(Settings, write_env(tmp_path, "DB_POOL_SIZE=7\n"))
    assert settings.DB_POOL_SIZE == 3


def test_env_file_is_chosen_by_dashtam_env_file(tmp_path, monkeypatch):
    path = write_env(tmp_path, "API_PORT=9100\n")
    monkeypatch.setenv("DASHTAM_ENV_FILE", str(path))
    assert env_file_path() == path
    assert load_settings(Settings).API_PORT == 9100


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ("testing", "env/.env.test"),
        ("development", "env/.env.dev"),
        ("", "env/.env.dev"),
    ],
)
def test_default_env_file_follows_environment(monkeypatch, environment, expected):
    monkeypatch.setenv("ENVIRONMENT", environment)
    assert env_file_path() == Path(expected)


def test_missing_env_file_is_one_clear_line(tmp_path):
    with pytest.raises(ConfigError, match=r"not found; run `inv setup`"):
        load_settings(Settings, tmp_path / "nope.env")


def test_testing_environment_selects_test_settings(tmp_path):
    path = write_env(
        tmp_path,
        "ENVIRONMENT=testing\nDATABASE_URL=postgresql+asyncpg://u:p@localhost:1/dashtam_test\n",
    )
    assert isinstance(load_settings(env_file=path), TestSettings)


@pytest.mark.parametrize("field", ["SECRET_KEY", "DATABASE_URL", "REDIS_URL"])
def test_placeholders_refused_in_production_naming_the_setting(tmp_path, field):
    values = {
        "SECRET_KEY": GOOD_SECRET,
        "DATABASE_URL": "postgresql+asyncpg://u:realpw@db:5432/dashtam",
        "REDIS_URL": "redis://u:realpw@cache:6379/0",
    }
    values[field] = (
        values[field].replace("realpw", "change-me") if field != "SECRET_KEY" else "change-me"
    )
    text = "ENVIRONMENT=production\n" + "".join(f"{k}={v}\n" for k, v in values.items())
    with pytest.raises(ConfigError) as caught:
        load_settings(Settings, write_env(tmp_path, text))
    message = str(caught.value)
    assert field in message
    assert "\n" not in message


def test_placeholders_allowed_in_development(tmp_path):
    settings = load_settings(
        Settings, write_env(tmp_path, "ENVIRONMENT=development\nSECRET_KEY=change-me\n")
    )
    assert settings.SECRET_KEY == "change-me"


def test_production_accepts_real_secrets(tmp_path):
    text = (
        f"ENVIRONMENT=production\nSECRET_KEY={GOOD_SECRET}\n"
        "DATABASE_URL=postgresql+asyncpg://u:realpw@db:5432/dashtam\n"
        "REDIS_URL=redis://u:realpw@cache:6379/0\n"
        f"CALLBACK_SHARED_SECRET={GOOD_SECRET}\nTOKEN_ENCRYPTION_KEYS=k1:{'A' * 43}\n"
    )
    assert load_settings(Settings, write_env(tmp_path, text)).ENVIRONMENT == "production"


@pytest.mark.parametrize(
    ("line", "setting"),
    [
        ("DATABASE_URL=mysql://u:p@h/db", "DATABASE_URL"),
        ("DATABASE_URL=postgresql+asyncpg://u:p@h:1", "DATABASE_URL"),
        ("REDIS_URL=http://h:1/0", "REDIS_URL"),
        ("API_PORT=99999", "API_PORT"),
        ("ENVIRONMENT=prod", "ENVIRONMENT"),
        ("DB_POOL_SIZE=lots", "DB_POOL_SIZE"),
    ],
)
def test_invalid_values_name_the_setting(tmp_path, line, setting):
    with pytest.raises(ConfigError, match=rf"^invalid setting {setting}:"):
        load_settings(Settings, write_env(tmp_path, line + "\n"))


def test_test_settings_refuse_the_development_database(tmp_path):
    path = write_env(
        tmp_path, "ENVIRONMENT=testing\nDATABASE_URL=postgresql+asyncpg://u:p@localhost:1/dashtam\n"
    )
    with pytest.raises(ConfigError, match="not a test database"):
        load_settings(TestSettings, path)


@pytest.mark.parametrize("factory", ["dashtam_api.main", "dashtam_callback.main"])
def test_servers_refuse_bad_configuration_in_one_line(tmp_path, factory):
    env_file = write_env(tmp_path, "ENVIRONMENT=production\nSECRET_KEY=change-me\n")
    result = subprocess.run(
        [sys.executable, "-c", f"import {factory} as m; m.create_app()"],
        env={**os.environ, "DASHTAM_ENV_FILE": str(env_file)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "invalid setting" in result.stderr
    assert "SECRET_KEY" in result.stderr or "DATABASE_URL" in result.stderr
