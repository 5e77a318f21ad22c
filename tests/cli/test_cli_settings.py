"""A bad setting ends any command with one line naming it and exit 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import free_port, heal_cli, isolate, sqlite_url

from heal.demo.runner import listen
from heal.settings import Settings

SECRET = "123456789-not-a-bot-token-but-secret"

# One bad value per setting: a setting added without one fails the coverage test below.
BAD_VALUES = {
    "database_url": "garbage",
    "config": "/nonexistent/heal.yaml",
    "runtime": "fast",
    "api_tokens": "sha256:abc",
    "host": "not a host",
    "port": "99999",
    "workers": "0",
    "max_body_bytes": "10",
    "max_pending_writes": "0",
    "db_pool_size": "0",
    "stalled_after": "1",
    "sweep_interval": "7",
    "shutdown_grace": "-1",
    "telegram_bot_token": SECRET,
    "telegram_chat_id": "my group",
    "telegram_webhook_secret": "has spaces",
    "telegram_api_url": "api.telegram.org",
    "slack_bot_token": "xoxp-" + SECRET,
    "slack_signing_secret": "has spaces " + SECRET,
    "slack_channel": "#my channel",
    "slack_api_url": "ftp://slack.com/api",
    "chat_card_window": "-1",
    "log_level": "LOUD",
    "log_json": "maybe",
}


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(f"HEAL_{name.upper()}", raising=False)


def test_every_setting_has_a_bad_value_tested() -> None:
    assert set(BAD_VALUES) == set(Settings.model_fields)


@pytest.mark.parametrize(("name", "value"), sorted(BAD_VALUES.items()))
def test_a_bad_setting_is_one_line_naming_it(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable = f"HEAL_{name.upper()}"
    monkeypatch.setenv(variable, value)
    result = heal_cli("db", "current")
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert variable in line
    assert "Traceback" not in result.output
    assert SECRET not in result.output


def test_a_bad_option_names_the_option(tmp_path: Path) -> None:
    result = heal_cli("db", "current", "--database-url", "garbage")
    assert result.exit_code == 2
    assert result.output.startswith("invalid --database-url: not a database URL")


def heal_process(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command in its own process, so a traceback would show as it does for users."""
    return subprocess.run(
        [sys.executable, "-m", "heal", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (
            ("serve",),
            {"HEAL_DATABASE_URL": "garbage"},
            "invalid HEAL_DATABASE_URL: not a database URL",
        ),
        (
            ("serve", "--port", "99999"),
            {},
            "invalid --port: Input should be less than or equal to 65535",
        ),
        (("serve",), {"HEAL_LOG_LEVEL": "LOUD"}, "invalid HEAL_LOG_LEVEL: must be one of DEBUG"),
    ],
)
def test_serve_refuses_bad_settings_in_one_line(
    args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    finished = heal_process(*args, **env)
    assert finished.returncode == 2
    assert finished.stdout == ""
    [line] = finished.stderr.strip().splitlines()
    assert line.startswith(says)


@pytest.mark.parametrize(
    ("option", "purpose"), [("--port", "heal's API"), ("--itsm-port", "the fake ITSM")]
)
def test_demo_names_the_busy_port(option: str, purpose: str, tmp_path: Path) -> None:
    taken = listen("127.0.0.1", 0)
    taken.listen()
    try:
        busy = taken.getsockname()[1]
        ports = {"--port": str(free_port()), "--itsm-port": str(free_port()), option: str(busy)}
        result = heal_cli(
            "demo",
            *(item for pair in ports.items() for item in pair),
            "--database-url",
            sqlite_url(tmp_path),
        )
    finally:
        taken.close()
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"port {busy} is already in use ({purpose}, {option})")
    assert "database" not in line
