"""A decision follows its action: ``executing`` once the action runs, ``completed`` once it
ended (its status and outcome say how), in the commit of the action's transition. People
rejecting a playbook's proposal is negative evidence for that playbook."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.decide.learning import record_rejection
from heal.domain.actions import ActionStatus
from heal.domain.decisions import DecisionState
from heal.engine.machine import ActionState
from heal.store import decisions_repo


class DecisionHook:
    async def on_transition(
        self,
        connection: AsyncConnection,
        before: dict[str, Any],
        after: ActionState,
        now: datetime,
    ) -> None:
        decision = (before.get("context") or {}).get("decision")
        if not decision:
            return  # not a decision's action: nothing to read, nothing to write
        state = _state_for(after.status)
        if state is not None and before["status"] != after.status.value:
            await decisions_repo.set_state(connection, int(decision["id"]), state, now)
        if after.approval_outcome == "rejected":  # by an ITSM approval ticket
            await _rejected(connection, decision, now)

    async def on_rejected(
        self, connection: AsyncConnection, action: dict[str, Any], now: datetime
    ) -> None:
        """People rejected the action's approval (``ApprovalService``, in that commit): the
        action is skipped without a transition of the engine."""
        decision = (action.get("context") or {}).get("decision")
        if decision:
            await decisions_repo.set_state(
                connection, int(decision["id"]), DecisionState.COMPLETED, now
            )
            await _rejected(connection, decision, now)


async def _rejected(connection: AsyncConnection, decision: dict[str, Any], now: datetime) -> None:
    playbook_id = decision.get("playbook_id")
    if playbook_id is not None:
        await record_rejection(connection, int(playbook_id), now)


def _state_for(status: ActionStatus) -> DecisionState | None:
    if status.is_terminal:
        return DecisionState.COMPLETED
    if status is ActionStatus.RUNNING:
        return DecisionState.EXECUTING
    return None
