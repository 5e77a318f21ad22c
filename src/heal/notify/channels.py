"""The one interface every chat channel offers the dispatcher and the webhooks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from heal.notify.cards import Card, RatingPrompt


@dataclass(frozen=True, slots=True)
class Posted:
    """Where a message landed: enough to reply under it or edit it later."""

    chat_id: str
    message_id: str
    # The thread's first message when this one was posted inside a thread.
    thread_id: str | None = None

    @property
    def root(self) -> str:
        return self.thread_id or self.message_id


class ChannelError(Exception):
    """A chat API refused or could not be reached. The message never holds a secret."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, permanent: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


class ChatChannel(Protocol):
    provider: str

    async def post_card(self, card: Card, *, under: Posted | None = None) -> Posted:
        """Post ``card`` with its buttons; inside ``under``'s thread when given."""
        ...

    async def post_text(self, text: str, *, under: Posted | None = None) -> Posted: ...

    async def close_card(self, posted: Posted, card: Card, outcome: str) -> None:
        """Remove the card's buttons (the approval is decided); idempotent."""
        ...

    async def post_rating(self, prompt: RatingPrompt, *, under: Posted | None = None) -> Posted:
        """Post the rating prompt with its five buttons; inside ``under``'s thread."""
        ...

    async def update_rating(self, posted: Posted, prompt: RatingPrompt) -> None:
        """Show who rated what on the prompt, its buttons kept; idempotent."""
        ...

    async def aclose(self) -> None: ...
