"""More than one :class:`~heal.engine.interfaces.TransitionHook` behind the engine's one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.engine.interfaces import TransitionHook
from heal.engine.machine import ActionState


class Hooks:
    """Tells each hook in turn, inside the same transaction: what any of them writes
    commits, or rolls back, with the transition itself."""

    def __init__(self, *hooks: TransitionHook) -> None:
        self.hooks = hooks

    async def on_transition(
        self,
        connection: AsyncConnection,
        before: dict[str, Any],
        after: ActionState,
        now: datetime,
    ) -> None:
        for hook in self.hooks:
            await hook.on_transition(connection, before, after, now)
