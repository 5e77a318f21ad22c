"""A routed channel built from its settings (a ``notifications.channels`` entry as plain
data) and the policy's secrets, for the outbox's sender."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from heal.notify.email import EmailChannel
from heal.notify.webhooks import DiscordChannel, EventChannel, TeamsChannel, WebhookChannel


class Unusable(Exception):
    """The channel cannot be used as configured (a secret is not set): no retry helps."""


def channel_from(
    name: str, settings: Mapping[str, Any], secrets: Mapping[str, str]
) -> EventChannel:
    def secret(key: str | None) -> str | None:
        if key is None:
            return None
        if key not in secrets:
            raise Unusable(f"channel {name}: secret {key!r} is not set")
        return secrets[key]

    kind = settings["type"]
    if kind == "email":
        return EmailChannel(
            name,
            host=settings["host"],
            port=settings["port"],
            sender=settings["sender"],
            to=list(settings["to"]),
            starttls=settings["starttls"],
            username=settings.get("username"),
            password=secret(settings.get("password_secret")),
            timeout=settings["timeout"],
        )
    url = settings.get("url") or secret(settings.get("url_secret"))
    if not url:
        raise Unusable(f"channel {name}: no url")
    if kind == "webhook":
        return WebhookChannel(name, url, secret(settings.get("secret")))
    if kind == "discord":
        return DiscordChannel(name, url)
    if kind == "teams":
        return TeamsChannel(name, url)
    raise Unusable(f"channel {name}: unknown type {kind!r}")
