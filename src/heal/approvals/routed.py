"""Sending routed events (outbox rows of kind ``event``): one row, one channel.

A channel named in ``notifications.channels`` is built from the current policy and its
secrets the first time it is used (again when its config changes); ``slack`` and
``telegram`` are the chats configured by settings, where the event is posted in the thread
of the incident's card. A per-channel rate limit postpones a row without counting an
attempt; when messages for one incident pile up for one channel (a storm), they go out as
one update and the others are recorded as collapsed into it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from heal.domain.notifications import CHAT_CHANNELS
from heal.domain.redaction import Redactor
from heal.notify.build import Unusable, channel_from
from heal.notify.channels import ChannelError, ChatChannel, Posted
from heal.notify.webhooks import EventChannel, Message
from heal.observability.logging import get_logger
from heal.policy import models
from heal.policy.models import Policy
from heal.store import notifications_repo
from heal.store.db import Database

log = get_logger("heal.notify")

# Slack allows about one message a second per channel; Telegram about the same per chat.
CHAT_INTERVAL = 1.0
_SHOWN_IN_STORM = 20

ChannelConfig = (
    models.WebhookChannel | models.DiscordChannel | models.TeamsChannel | models.EmailChannel
)


def build_channel(name: str, config: ChannelConfig, secrets: Mapping[str, str]) -> EventChannel:
    return channel_from(name, config.model_dump(), secrets)


class RoutedSender:
    def __init__(
        self,
        database: Database,
        chats: Sequence[ChatChannel],
        policy: Callable[[], Policy],
        secrets: Mapping[str, str],
        redact: Redactor,
        clock: Callable[[], datetime],
        *,
        lease: timedelta,
        max_attempts: int,
        build: Callable[[str, ChannelConfig, Mapping[str, str]], EventChannel] = build_channel,
    ) -> None:
        self.db = database
        self.chats = {c.provider: c for c in chats}
        self.policy = policy
        self.secrets = secrets
        self.redact = redact
        self.clock = clock
        self.lease = lease
        self.max_attempts = max_attempts
        self.build = build
        self._built: dict[str, tuple[ChannelConfig, EventChannel]] = {}

    def configured(self) -> bool:
        """Whether anything can queue a row for this sender: a route, or a notify step."""
        policy = self.policy()
        return bool(policy.notifications.routes) or any(
            action.type == "notify" for action in policy.actions.values()
        )

    async def aclose(self) -> None:
        for _, channel in self._built.values():
            await channel.aclose()
        self._built.clear()

    async def deliver(self, row: dict[str, Any]) -> None:
        name: str = row["channel"]
        now = self.clock()
        async with self.db.write() as connection:
            # Ours still (a second dispatcher whose lease ran out must not send it too).
            if not await notifications_repo.renew_lease(
                connection, row["id"], row["next_attempt_at"], now + self.lease
            ):
                return
            # The channel's rate limit, from the rows: it holds across every worker.
            free_at = await notifications_repo.take_channel_slot(
                connection, row["id"], name, now, self._interval(name)
            )
            if free_at is not None:
                await notifications_repo.postpone(connection, row["id"], free_at)
                return
            waiting = await notifications_repo.waiting_events(connection, row["incident_id"], name)
        others = [w for w in waiting if w["id"] != row["id"]]
        threshold = self.policy().notifications.collapse_after
        storm = others if len(others) + 1 >= threshold else []
        message = self._message(row, storm)
        try:
            await self._send(name, row, message)
        except Unusable as exc:
            await self._give_up(row, str(exc))
            return
        except ChannelError as exc:
            await self._failed(row, exc)
            return
        async with self.db.write() as connection:
            await notifications_repo.delivered(connection, row["id"], [name], done=True)
            if storm:
                await notifications_repo.collapse(connection, [w["id"] for w in storm], row["id"])

    def _interval(self, name: str) -> float:
        config = self.policy().notifications.channels.get(name)
        return config.min_interval if config is not None else CHAT_INTERVAL

    def _message(self, row: dict[str, Any], storm: list[dict[str, Any]]) -> Message:
        payload = dict(row["payload"] or {})
        title = str(payload.pop("title", f"Incident #{row['incident_id']}"))
        text = self.redact.text(row["text"])
        if storm:
            lines = [text] + [self.redact.text(w["text"]) for w in storm]
            shown = lines[:_SHOWN_IN_STORM]
            more = len(lines) - len(shown)
            text = f"{len(lines)} updates on incident #{row['incident_id']}:\n" + "\n".join(
                f"- {line}" for line in shown
            )
            if more:
                text += f"\n- … and {more} more"
            title = f"{len(lines)} updates: #{row['incident_id']}"
            payload["collapsed"] = [
                {"id": w["id"], "event": w["event"], "text": self.redact.text(w["text"])}
                for w in storm
            ]
        return Message(row["id"], row["event"] or "", title, text, payload)

    async def _send(self, name: str, row: dict[str, Any], message: Message) -> None:
        if name in CHAT_CHANNELS:
            await self._send_chat(name, row, message)
            return
        channel = self._channel(name)
        await channel.send(message, now=self.clock().timestamp())

    def _channel(self, name: str) -> EventChannel:
        config = self.policy().notifications.channels.get(name)
        if config is None:
            raise Unusable(f"channel {name} is no longer in the policy")
        built = self._built.get(name)
        if built is not None and built[0] == config:
            return built[1]
        channel = self.build(name, config, self.secrets)
        self._built[name] = (config, channel)
        return channel

    async def _send_chat(self, name: str, row: dict[str, Any], message: Message) -> None:
        chat = self.chats.get(name)
        if chat is None:
            raise Unusable(f"channel {name} is not configured (settings)")
        async with self.db.read() as connection:
            card = await notifications_repo.card_of(
                connection, provider=name, incident_id=row["incident_id"]
            )
        if card is not None:
            under = Posted(card["chat_id"], card["message_id"], card["thread_id"])
            try:
                await chat.post_text(message.text, under=under)
                return
            except ChannelError as exc:
                if not exc.permanent:
                    raise
                # The card's thread is gone: said on its own rather than lost.
        await chat.post_text(f"{message.title}\n{message.text}")

    async def _failed(self, row: dict[str, Any], exc: ChannelError) -> None:
        error = self.redact.text(str(exc))
        attempts = row["attempts"] + 1
        if exc.permanent or attempts >= self.max_attempts:
            await self._give_up(row, error, attempts)
            return
        wait = max(min(2.0**attempts, 300.0), exc.retry_after or 0.0)
        async with self.db.write() as connection:
            await notifications_repo.retry_later(
                connection, row["id"], self.clock() + timedelta(seconds=wait), error
            )

    async def _give_up(self, row: dict[str, Any], error: str, attempts: int = 1) -> None:
        async with self.db.write() as connection:
            await notifications_repo.finish(connection, row["id"], "failed", error)
        log.error(
            "notification failed",
            notification=row["id"],
            channel=row["channel"],
            notification_event=row["event"],
            incident_id=row["incident_id"],
            action_id=row["action_id"],
            attempts=attempts,
            reason=error,
        )
