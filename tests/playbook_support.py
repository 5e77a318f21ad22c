"""What the playbook tests share: a migrated database, playbooks made as heal makes them,
and a decision's input for an alert."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from helpers import policy_text

from heal.decide.tiers import DecisionInput
from heal.domain.playbooks import annotation_text, params_key, signature_of
from heal.policy import load_policy_text
from heal.policy.models import Policy
from heal.store import playbooks_repo
from heal.store.db import Database

WHEN = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def policy(top: str = "") -> Policy:
    """The ticket policy with a second action; ``top``: more top-level YAML."""
    text = policy_text("http://itsm.invalid")
    # A second action to choose from, so a catalogue can leave one out.
    text = text.replace(
        "rules:\n",
        "  restart:\n    type: http\n    nodes:\n      - function: create_task\n"
        "        name: Restart\n        request: {url: http://x.invalid/, method: POST}\n"
        "rules:\n",
    )
    return load_policy_text(top + text)


def playbook_row(
    labels: dict[str, str],
    *,
    action: str = "open-ticket",
    params: dict[str, Any] | None = None,
    status: str = "approved",
    runs: int = 1,
    successes: int = 1,
    summary: str = "checkout is down",
    severity: str = "critical",
    name: str = "",
) -> dict[str, Any]:
    signature = signature_of(labels, severity)
    return {
        "name": name or f"{signature.alertname}: {action}",
        "signature_key": signature.key,
        "signature": signature.as_record(),
        "alertname": signature.alertname,
        "annotation_text": annotation_text({"summary": summary}),
        "action_name": action,
        "params": params or {},
        "params_key": params_key(params or {}),
        "status": status,
        "runs": runs,
        "verified_successes": successes,
        "created_at": WHEN,
        "updated_at": WHEN,
    }


async def add(database: Database, row: dict[str, Any]) -> int:
    async with database.write() as connection:
        return await playbooks_repo.insert_playbook(connection, row)


def decision_input(
    the_policy: Policy,
    labels: dict[str, str],
    *,
    catalogue: tuple[str, ...] = ("open-ticket", "restart"),
    summary: str = "checkout is down",
    severity: str = "critical",
) -> DecisionInput:
    return DecisionInput(
        decision_id=1,
        incident={"id": 1, "severity": severity},
        alerts=[
            {
                "name": labels.get("alertname", ""),
                "labels": labels,
                "annotations": {"summary": summary},
                "status": "firing",
                "starts_at": WHEN.isoformat(),
            }
        ],
        rule=the_policy.rules[0],
        catalogue={name: the_policy.actions[name] for name in catalogue},
        policy=the_policy,
    )
