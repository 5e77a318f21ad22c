"""Sends the chat outbox: approval cards, and every later word in the card's thread.

Notifications are written in the transaction that decided them; this loop leases due
ones, posts them to every configured channel and records what landed where (the
card's message id is stored with its approval, not kept in memory). A notification
that fails is retried with backoff; the channels it already reached are not posted to
again. Cards follow three rules: one card per incident within ``card_window`` (a second
approval on the same incident is posted under the first card), no card for an incident
that is no longer open, and no card for an approval that is no longer pending.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.approvals import rating_prompt
from heal.approvals.routed import RoutedSender
from heal.domain.approvals import ApprovalStatus
from heal.domain.incidents import IncidentStatus
from heal.domain.redaction import Redactor
from heal.engine.engine import utcnow
from heal.notify.cards import Card, RatingPrompt
from heal.notify.channels import ChannelError, ChatChannel, Posted
from heal.observability.logging import get_logger
from heal.policy.models import Policy
from heal.store import actions_repo, approvals_repo, incidents_repo, notifications_repo
from heal.store.db import Database

log = get_logger("heal.chat")


@dataclass(frozen=True, slots=True)
class _Context:
    incident: dict[str, Any]
    approval: dict[str, Any] | None
    action: dict[str, Any] | None
    card: Card | None


class _Skip(Exception):
    """This notification should not be sent at all (the reason is kept)."""


class _Later(Exception):
    """Not yet: the approval's card is still on its way to this chat."""

    def __init__(self, at: datetime) -> None:
        super().__init__(at)
        self.at = at


def card_for(incident: dict[str, Any], approval: dict[str, Any], action: dict[str, Any]) -> Card:
    snapshot = action["config"]["action"]
    return Card(
        approval_id=approval["id"],
        incident_id=incident["id"],
        incident_title=incident["title"],
        resource=dict(incident["group_labels"]),
        action=action["action_name"],
        description=snapshot.get("description") or "",
        risk=approval["risk"],
        required_signatures=approval["required_signatures"],
        expires_at=approval["expires_at"],
    )


class ChatDispatcher:
    def __init__(
        self,
        database: Database,
        channels: Sequence[ChatChannel],
        redact: Redactor | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        interval: float = 1.0,
        batch: int = 50,
        lease: timedelta = timedelta(seconds=60),
        card_window: timedelta = timedelta(minutes=10),
        max_attempts: int = 8,
        policy: Callable[[], Policy] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        self.db = database
        self.channels = list(channels)
        self.redact = redact or Redactor()
        self.clock = clock
        self.interval = interval
        self.batch = batch
        self.lease = lease
        self.card_window = card_window
        self.max_attempts = max_attempts
        self._task: asyncio.Task[None] | None = None
        # Routed events (``notifications:``), one channel per row.
        self.routed = (
            RoutedSender(
                database,
                self.channels,
                policy,
                secrets or {},
                self.redact,
                clock,
                lease=lease,
                max_attempts=max_attempts,
            )
            if policy is not None
            else None
        )

    def start(self) -> None:
        routed = self.routed is not None and self.routed.configured()
        if self._task is None and (self.channels or routed):
            self._task = asyncio.create_task(self._loop(), name="heal-chat-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for channel in self.channels:
            await channel.aclose()
        if self.routed is not None:
            await self.routed.aclose()

    async def _loop(self) -> None:
        while True:
            try:
                sent = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try again next round
                log.warning("chat dispatch failed", error=type(exc).__name__)
                sent = 0
            if sent < self.batch:
                await asyncio.sleep(self.interval)

    async def run_once(self) -> int:
        """Lease and send one batch of due notifications; how many were handled."""
        now = self.clock()
        # A read first: the writer (SQLite has one) is taken only when there is work.
        async with self.db.read() as connection:
            if not await notifications_repo.any_due(connection, now):
                return 0
        rows = await self.claim(now)
        for row in rows:
            await self.deliver(row)
        return len(rows)

    async def claim(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Lease a batch of due notifications to this dispatcher."""
        async with self.db.write() as connection:
            return await notifications_repo.claim_due(
                connection, now or self.clock(), self.batch, self.lease
            )

    async def deliver(self, row: dict[str, Any]) -> None:
        """Send one claimed notification to every chat it has not reached yet."""
        if row["kind"] == "event":
            if self.routed is None:
                async with self.db.write() as connection:
                    await notifications_repo.finish(
                        connection, row["id"], "skipped", "no routed channels here"
                    )
            else:
                await self.routed.deliver(row)
            return
        if row["kind"] == rating_prompt.KIND:
            await self._deliver_rating(row)
            return
        sent_to = [p for p in (row["sent_to"] or "").split(",") if p]
        errors: list[ChannelError] = []
        later: list[datetime] = []
        held: datetime = row["next_attempt_at"]  # our lease, as claim_due stored it
        try:
            context = await self._context(row)
        except _Skip as reason:
            async with self.db.write() as connection:
                await notifications_repo.finish(connection, row["id"], "skipped", str(reason))
            return
        for channel in self.channels:
            if channel.provider in sent_to:
                continue
            # Renewed before every send, so a slow batch never outlives its lease and a
            # second dispatcher, finding the lease run out, cannot send this row as well.
            until = self.clock() + self.lease
            async with self.db.write() as connection:
                still_ours = await notifications_repo.renew_lease(
                    connection, row["id"], held, until
                )
            if not still_ours:
                log.info("chat notification leased elsewhere", notification=row["id"])
                return
            held = until
            try:
                await self._send(channel, row, context)
            except _Later as wait:
                later.append(wait.at)
                continue
            except ChannelError as exc:
                errors.append(exc)
                continue
            sent_to.append(channel.provider)
            async with self.db.write() as connection:
                await notifications_repo.delivered(
                    connection, row["id"], sent_to, done=len(sent_to) == len(self.channels)
                )
        if errors:
            await self._failed(row, context, errors)
        elif later:
            async with self.db.write() as connection:
                await notifications_repo.postpone(connection, row["id"], min(later))

    async def _deliver_rating(self, row: dict[str, Any]) -> None:
        """The rating prompt, under the incident's card on each chat that has one (and
        only there: a chat that never showed the incident is not asked about it)."""
        sent_to = [p for p in (row["sent_to"] or "").split(",") if p]
        held: datetime = row["next_attempt_at"]
        async with self.db.read() as connection:
            incident = await incidents_repo.get(connection, row["incident_id"])
            assert incident is not None  # a foreign key
            cards = {
                channel.provider: await notifications_repo.card_of(
                    connection, provider=channel.provider, incident_id=incident["id"]
                )
                for channel in self.channels
            }
            prompt = await rating_prompt.prompt_of(connection, incident)
        targets = [c for c in self.channels if cards[c.provider] is not None]
        if not targets:
            async with self.db.write() as connection:
                await notifications_repo.finish(
                    connection, row["id"], "skipped", "the incident has no card in a chat"
                )
            return
        errors: list[ChannelError] = []
        for channel in targets:
            if channel.provider in sent_to:
                continue
            until = self.clock() + self.lease
            async with self.db.write() as connection:
                if not await notifications_repo.renew_lease(connection, row["id"], held, until):
                    log.info("chat notification leased elsewhere", notification=row["id"])
                    return
            held = until
            card = cards[channel.provider]
            assert card is not None
            try:
                await self._post_rating(channel, prompt, card)
            except ChannelError as exc:
                errors.append(exc)
                continue
            sent_to.append(channel.provider)
            async with self.db.write() as connection:
                await notifications_repo.delivered(
                    connection, row["id"], sent_to, done=len(sent_to) == len(targets)
                )
        if errors:
            await self._failed(row, _Context(incident, None, None, None), errors)

    async def _post_rating(
        self, channel: ChatChannel, prompt: RatingPrompt, card: dict[str, Any]
    ) -> None:
        try:
            await channel.post_rating(prompt, under=_posted(card))
        except ChannelError as exc:
            if not exc.permanent:
                raise
            # The card's thread is gone: the prompt names its incident, so it stands alone.
            await channel.post_rating(prompt)

    async def _context(self, row: dict[str, Any]) -> _Context:
        async with self.db.read() as connection:
            incident = await incidents_repo.get(connection, row["incident_id"])
            approval = (
                await approvals_repo.get(connection, row["approval_id"])
                if row["approval_id"] is not None
                else None
            )
            action = (
                await actions_repo.load(connection, approval["action_id"])
                if approval is not None
                else None
            )
            if row["kind"] == "update" and await self._moot_news(connection, row, approval):
                raise _Skip("the approval became obsolete before its card was sent: no news")
        assert incident is not None  # a foreign key
        if row["kind"] == "card":
            if incident["status"] != IncidentStatus.OPEN.value:
                raise _Skip(f"incident {incident['id']} is {incident['status']}: no card")
            if approval is None or approval["status"] != ApprovalStatus.PENDING.value:
                raise _Skip("the approval is no longer pending: no card")
        card = card_for(incident, approval, action) if approval and action else None
        return _Context(incident, approval, action, card)

    async def _moot_news(
        self, connection: AsyncConnection, row: dict[str, Any], approval: dict[str, Any] | None
    ) -> bool:
        """The end of an obsolete approval that no chat ever showed: nobody was asked."""
        if approval is None or approval["status"] != ApprovalStatus.OBSOLETE.value:
            return False
        for channel in self.channels:
            provider = channel.provider
            if await notifications_repo.card_of(
                connection, provider=provider, approval_id=approval["id"]
            ):
                return False
            if await notifications_repo.unsent_card(
                connection, approval["id"], provider, row["id"]
            ):
                return False
        return True

    async def _send(self, channel: ChatChannel, row: dict[str, Any], context: _Context) -> None:
        provider = channel.provider
        now = self.clock()
        async with self.db.read() as connection:
            own = (
                await notifications_repo.card_of(
                    connection, provider=provider, approval_id=row["approval_id"]
                )
                if row["approval_id"] is not None
                else None
            )
            recent = (
                await notifications_repo.recent_card(
                    connection, row["incident_id"], provider, now, self.card_window
                )
                if row["kind"] == "card"
                else None
            )
        if row["kind"] == "card":
            assert context.card is not None
            if own is not None:  # recorded, but a crash came before `sent_to` was
                return
            under = _posted(recent) if recent else None
            posted = await channel.post_card(context.card, under=under)
            async with self.db.write() as connection:
                await notifications_repo.record_card(
                    connection,
                    incident_id=row["incident_id"],
                    approval_id=row["approval_id"],
                    provider=provider,
                    chat_id=posted.chat_id,
                    message_id=posted.message_id,
                    thread_id=posted.thread_id,
                    now=now,
                )
            return
        text = self.redact.text(row["text"])
        if own is None and row["approval_id"] is not None:
            async with self.db.read() as connection:
                unsent = await notifications_repo.unsent_card(
                    connection, row["approval_id"], provider, row["id"]
                )
            if unsent is not None:  # wait for it, then answer in its thread
                raise _Later(max(unsent["next_attempt_at"], now))
        if own is None and row["approval_id"] is None:
            async with self.db.read() as connection:
                own = await notifications_repo.card_of(
                    connection, provider=provider, incident_id=row["incident_id"]
                )
            if own is not None:  # news of the incident: in the thread of its newest card
                await self._post_under(channel, row, text, own)
                return
        if own is None:  # the card is unknown: say it on its own
            await channel.post_text(f"Incident #{row['incident_id']}: {text}")
            return
        decided = (
            context.approval is not None
            and context.approval["status"] != ApprovalStatus.PENDING.value
        )
        if decided and own["closed_at"] is None and context.card is not None:
            try:
                await channel.close_card(_posted(own), context.card, text)
            except ChannelError as exc:
                if not exc.permanent:
                    raise
                # Deleted, or too old to edit: its buttons are moot (a press is refused).
                log.warning("chat card not closed", card=own["id"], error=str(exc))
            async with self.db.write() as connection:
                await notifications_repo.close_card(connection, own["id"], now)
        await self._post_under(channel, row, text, own)

    async def _post_under(
        self, channel: ChatChannel, row: dict[str, Any], text: str, card: dict[str, Any]
    ) -> None:
        try:
            await channel.post_text(text, under=_posted(card))
        except ChannelError as exc:
            if not exc.permanent:
                raise
            # The card's thread is gone: the news stands on its own rather than be lost.
            await channel.post_text(f"Incident #{row['incident_id']}: {text}")

    async def _failed(
        self, row: dict[str, Any], context: _Context, errors: list[ChannelError]
    ) -> None:
        error = self.redact.text("; ".join(str(e) for e in errors))
        attempts = row["attempts"] + 1
        if attempts >= self.max_attempts or all(e.permanent for e in errors):
            async with self.db.write() as connection:
                await notifications_repo.finish(connection, row["id"], "failed", error)
            _log_given_up(row, context, attempts, error)
            return
        wait = max([min(2.0**attempts, 300.0)] + [e.retry_after or 0.0 for e in errors])
        async with self.db.write() as connection:
            await notifications_repo.retry_later(
                connection, row["id"], self.clock() + timedelta(seconds=wait), error
            )


def _log_given_up(row: dict[str, Any], context: _Context, attempts: int, error: str) -> None:
    action = context.action or {}
    log.error(
        "chat notification failed",
        notification=row["id"],
        kind=row["kind"],
        incident_id=row["incident_id"],
        approval_id=row["approval_id"],
        action_id=action.get("id"),
        rule=action.get("rule"),
        action=action.get("action_name"),
        attempts=attempts,
        reason=error,
    )


def _posted(card: dict[str, Any]) -> Posted:
    return Posted(card["chat_id"], card["message_id"], card["thread_id"])
