"""Process settings from ``HEAL_*`` environment variables (and ``.env``)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from heal.domain.access import Scope

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./heal.db"
_TELEGRAM_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_TELEGRAM_BOT_TOKEN = re.compile(r"[0-9]+:[A-Za-z0-9_-]+")
_TELEGRAM_CHAT = re.compile(r"-?[0-9]+|@[A-Za-z][A-Za-z0-9_]{4,}")
_SLACK_CHANNEL = re.compile(r"#?[A-Za-z0-9_.-]{1,80}")
_HOST = re.compile(r"[A-Za-z0-9.:_-]+")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The async drivers heal is built and tested with, per backend.
DATABASE_DRIVERS = {"sqlite": ("aiosqlite",), "postgresql": ("psycopg", "psycopg_async", "asyncpg")}
DATABASE_URL_FORMS = "sqlite+aiosqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DATABASE"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error must not print the tokens it was given.
    model_config = SettingsConfigDict(
        env_prefix="HEAL_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = DEFAULT_DATABASE_URL
    config: str | None = Field(default=None, description="path of the policy YAML")
    # "embedded": wakes claimed in-process (any database). "procrastinate": wakes are
    # procrastinate jobs and `heal worker` processes run them (PostgreSQL only).
    runtime: Literal["embedded", "procrastinate"] = "embedded"
    # Service tokens for the API and webhooks (Alertmanager, automation), comma-separated.
    # Each is the hash made by `heal token new`, "sha256:<hex>", optionally followed by
    # its scopes, "sha256:<hex>:read+operate"; without them a token may only ingest.
    # Plain tokens are refused: the configuration must not hold a usable secret.
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    workers: Annotated[int, Field(ge=1, le=1024)] = 64
    max_body_bytes: Annotated[int, Field(ge=1024)] = 5 * 1024 * 1024
    max_pending_writes: Annotated[int, Field(ge=1)] = 64
    db_pool_size: Annotated[int, Field(ge=1)] = 10
    # Distributed runtime: a worker silent this long is dead and its wakes are retried;
    # the sweeper and the stalled-job retry run this often (a divisor of 60: a cron's
    # seconds field restarts each minute).
    stalled_after: Annotated[int, Field(ge=2, le=3600)] = 30
    sweep_interval: Annotated[int, Field(ge=1, le=60)] = 30
    shutdown_grace: Annotated[float, Field(ge=0)] = 10.0
    # Chat approvals. Telegram: a bot token from @BotFather, the chat (group) the cards go
    # to, and the secret_token given to setWebhook. Slack: a bot token (xoxb-), the app's
    # signing secret and the channel id.
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_channel: str | None = None
    slack_api_url: str = "https://slack.com/api"
    # One card per incident within this many seconds; later ones go in its thread.
    chat_card_window: Annotated[int, Field(ge=0)] = 600
    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_tokens")
    @classmethod
    def _hashes_only(cls, value: list[SecretStr]) -> list[SecretStr]:
        for position, token in enumerate(value, 1):
            parse_service_token(token.get_secret_value(), position)
        return value

    @field_validator("config")
    @classmethod
    def _config_exists(cls, value: str | None) -> str | None:
        if value and not Path(value).is_file():
            raise ValueError(f"no policy file at {value}")
        return value or None

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        # Imported here: parsing settings must not load SQLAlchemy for commands that need
        # no database.
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(value)
        except ArgumentError:
            raise ValueError(f"not a database URL: use {DATABASE_URL_FORMS}") from None
        drivers = DATABASE_DRIVERS.get(parsed.get_backend_name())
        if drivers is None or parsed.get_driver_name() not in drivers:
            raise ValueError(
                f"heal runs on {DATABASE_URL_FORMS} (an async driver), not on "
                f"{parsed.drivername}://"
            )
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not _HOST.fullmatch(value):
            raise ValueError("must be a host name or an IP address, e.g. 127.0.0.1 or 0.0.0.0")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("telegram_api_url", "slack_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("telegram_bot_token")
    @classmethod
    def _telegram_bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not _TELEGRAM_BOT_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("must be a bot token from @BotFather (digits, ':', then letters)")
        return value

    @field_validator("slack_bot_token")
    @classmethod
    def _slack_bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a Slack bot token (it starts with xoxb-)")
        return value

    @field_validator("slack_signing_secret")
    @classmethod
    def _slack_signing_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not value.get_secret_value().isprintable() or " " in value.get_secret_value():
            raise ValueError("must be the app's signing secret, without spaces")
        return value

    @field_validator("telegram_chat_id")
    @classmethod
    def _telegram_chat_id(cls, value: str | None) -> str | None:
        if value and not _TELEGRAM_CHAT.fullmatch(value):
            raise ValueError("must be a chat id (e.g. -1001234567890) or @channelusername")
        return value or None

    @field_validator("slack_channel")
    @classmethod
    def _slack_channel(cls, value: str | None) -> str | None:
        if value and not _SLACK_CHANNEL.fullmatch(value):
            raise ValueError("must be a channel id such as C0123456789")
        return value or None

    @field_validator("sweep_interval")
    @classmethod
    def _divides_a_minute(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)")
        return value

    @model_validator(mode="after")
    def _chat_complete(self) -> Settings:
        if self.telegram_bot_token and not self.telegram_chat_id:
            raise ValueError(
                "HEAL_TELEGRAM_BOT_TOKEN needs HEAL_TELEGRAM_CHAT_ID (the chat for cards)"
            )
        secret = self.telegram_webhook_secret
        if secret is not None and not _TELEGRAM_SECRET.fullmatch(secret.get_secret_value()):
            raise ValueError(
                "HEAL_TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ "
                "and - (Telegram refuses any other secret_token)"
            )
        if self.slack_bot_token and not self.slack_channel:
            raise ValueError(
                "HEAL_SLACK_BOT_TOKEN needs HEAL_SLACK_CHANNEL (the channel id for cards)"
            )
        return self

    def chat_secrets(self) -> list[str]:
        """The chat credentials, to be masked wherever heal writes text."""
        found = (
            self.telegram_bot_token,
            self.telegram_webhook_secret,
            self.slack_bot_token,
            self.slack_signing_secret,
        )
        return [secret.get_secret_value() for secret in found if secret is not None]

    def token_hashes(self) -> dict[str, frozenset[Scope]]:
        """Each service token's hash and the scopes it was given."""
        parsed = (parse_service_token(token.get_secret_value()) for token in self.api_tokens)
        return dict(parsed)


def parse_service_token(entry: str, position: int = 0) -> tuple[str, frozenset[Scope]]:
    """``sha256:<hex>[:scope+scope…]`` as (hash, scopes); a plain token is an error."""
    where = f"HEAL_API_TOKENS entry {position}" if position else "a HEAL_API_TOKENS entry"
    digest, _, scopes = entry.partition(":")[2].partition(":")
    if not entry.startswith("sha256:") or not _SHA256_HEX.fullmatch(digest):
        # The entry itself is not repeated: it may be a real token.
        raise ValueError(
            f"{where} is not a token hash: configure 'sha256:<hex>' as printed by "
            "`heal token new` (plain tokens are refused)"
        )
    try:
        granted = Scope.parse_list(scopes) if scopes else frozenset({Scope.INGEST})
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if Scope.APPROVE in granted:
        raise ValueError(
            f"{where}: a service token cannot have the approve scope (only people sign "
            "approvals, with their own `heal users token new NAME`)"
        )
    return "sha256:" + digest, granted
