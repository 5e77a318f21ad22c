"""A button pressed in a chat: who pressed it, and what that means for the approval.

Telegram and Slack differ only in how the press arrives; the decision goes through
the same ``ApprovalService.sign`` as the API and the CLI, so quorum, separation of
duties and expiry apply alike, and the answer lands in the same timeline.
"""

from __future__ import annotations

from heal.approvals.dispatcher import card_for
from heal.approvals.service import ApprovalClosed, ApprovalNotFound, ApprovalService
from heal.domain.approvals import SignRefused, person
from heal.notify.cards import Verb
from heal.store import actions_repo, approvals_repo, incidents_repo, users_repo
from heal.store.db import Database


async def answer_button(
    database: Database,
    approvals: ApprovalService,
    *,
    provider: str,
    external_user: str,
    approval_id: int,
    verb: Verb,
) -> str:
    """What to tell the person who pressed the button (the outcome, or why not)."""
    async with database.read() as connection:
        user = await users_repo.chat_owner(connection, provider, external_user)
    if user is None:
        return (
            f"You are not linked to a heal user, so you cannot approve. An admin can link "
            f"you with: heal users link NAME --{provider} {external_user}"
        )
    if user["disabled"]:
        return f"Refused: heal user {user['name']} is disabled."
    if verb is Verb.DETAILS:
        return await details(database, approval_id)
    signer = person(user)
    try:
        result = await approvals.sign(
            approval_id,
            signer,
            approve=verb is Verb.APPROVE,
            comment=f"{verb.value} button",
            channel=provider,
        )
    except ApprovalNotFound:
        return f"Approval {approval_id} does not exist."
    except ApprovalClosed as exc:
        return f"Approval {approval_id}: {exc}."
    except SignRefused as exc:
        return f"Refused: {exc.reason}"
    return (
        f"Approval {approval_id} {result.approval_status.value} "
        f"({result.signatures} of {result.required} signatures); "
        f"action {result.action_status.value}."
    )


async def details(database: Database, approval_id: int) -> str:
    async with database.read() as connection:
        approval = await approvals_repo.get(connection, approval_id)
        if approval is None:
            return f"Approval {approval_id} does not exist."
        action = await actions_repo.load(connection, approval["action_id"])
        incident = await incidents_repo.get(connection, approval["incident_id"])
        signatures = await approvals_repo.signatures(connection, approval_id)
    assert action is not None  # foreign keys
    assert incident is not None
    card = card_for(incident, approval, action)
    signed = ", ".join(f"{s['signer']} ({s['decision']})" for s in signatures) or "none yet"
    # The state first: Telegram shows only the first 200 characters of an answer.
    return (
        f"Approval {approval_id} {approval['status']}, action {action['status']}, "
        f"signed: {signed}\n{card.text()}"
    )
