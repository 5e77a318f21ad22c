"""Chat settings: incomplete or invalid ones are refused without repeating a secret."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from heal.settings import Settings

TOKEN = "123456:telegram-bot-token-that-must-stay-secret"


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"telegram_bot_token": TOKEN}, "HEAL_TELEGRAM_CHAT_ID"),
        ({"slack_bot_token": "xoxb-" + TOKEN}, "HEAL_SLACK_CHANNEL"),
        ({"telegram_webhook_secret": "has spaces " + TOKEN}, "A-Z, a-z, 0-9, _ and -"),
        ({"telegram_bot_token": "no-digits-" + TOKEN, "telegram_chat_id": "-100"}, "@BotFather"),
        ({"slack_bot_token": "xoxp-" + TOKEN, "slack_channel": "C0HEAL"}, "xoxb-"),
        ({"slack_signing_secret": "has spaces " + TOKEN}, "without spaces"),
        ({"telegram_chat_id": "my group"}, "@channelusername"),
        ({"slack_api_url": "slack.com/api"}, "http:// or https://"),
    ],
)
def test_bad_chat_settings_are_refused_without_the_secret(given: dict[str, str], says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**given)  # type: ignore[arg-type]
    assert says in str(refused.value)
    assert TOKEN not in str(refused.value)


def test_chat_secrets_are_masked_and_never_shown() -> None:
    settings = Settings(
        telegram_bot_token=TOKEN,  # type: ignore[arg-type]
        telegram_chat_id="-100",
        telegram_webhook_secret="hook_secret-1",  # type: ignore[arg-type]
    )
    assert settings.chat_secrets() == [TOKEN, "hook_secret-1"]
    assert TOKEN not in repr(settings)
    assert "hook_secret-1" not in settings.model_dump_json()
