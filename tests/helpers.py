"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from heal.app import Heal
from heal.domain.actions import ActionStatus
from heal.domain.alerts import Alert, AlertStatus, fingerprint_of
from heal.settings import hash_token
from heal.store import actions_repo

POLICY_FILE = Path(__file__).parent / "policies" / "ticket.yaml"
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# What the test servers configure for TOKEN: its hash (plain tokens are refused), with
# every scope a service token may have.
SERVICE_TOKENS = f"{hash_token(TOKEN)}:admin"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def policy_text(itsm_url: str, **replacements: str) -> str:
    text_ = POLICY_FILE.read_text().replace("__ITSM_URL__", itsm_url)
    for old, new in replacements.items():
        text_ = text_.replace(old, new)
    return text_


def alert(
    name: str = "CheckoutDown",
    *,
    status: str = "firing",
    starts_at: datetime | None = None,
    **labels: str,
) -> Alert:
    all_labels = {"alertname": name, "severity": "critical", "service": "checkout", **labels}
    return Alert(
        fingerprint=fingerprint_of(all_labels),
        status=AlertStatus(status),
        labels=all_labels,
        annotations={"summary": f"{name} test"},
        starts_at=starts_at or datetime(2026, 1, 1, 11, 59, tzinfo=UTC),
        ends_at=datetime(2026, 1, 1, 12, 5, tzinfo=UTC) if status == "resolved" else None,
    )


async def drive(heal: Heal, clock: Clock, action_id: int, max_wakes: int = 100) -> dict[str, Any]:
    """Wake the action as the runtime would, jumping the clock to each wake time."""
    for _ in range(max_wakes):
        async with heal.db.read() as connection:
            row = await actions_repo.load(connection, action_id)
        assert row is not None
        if ActionStatus(row["status"]).is_terminal:
            return row
        if row["next_wake_at"] > clock.now:
            clock.now = row["next_wake_at"]
        await heal.engine.wake(action_id, row["version"])
    raise AssertionError(f"action {action_id} not terminal after {max_wakes} wakes")


def am_alert(
    status: str = "firing", *, starts: str = "2026-01-01T11:59:00Z", **labels: str
) -> dict[str, Any]:
    """One alert exactly as Alertmanager's webhook (v4) renders it."""
    all_labels = {
        "alertname": "CheckoutDown",
        "severity": "critical",
        "service": "checkout",
        "instance": "10.0.0.1:9100",
        **labels,
    }
    return {
        "status": status,
        "labels": all_labels,
        "annotations": {"summary": "checkout is down", "runbook_url": "https://runbooks/x"},
        "startsAt": starts,
        "endsAt": "2026-01-01T12:05:00.123456789Z"
        if status == "resolved"
        else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up%3D%3D0",
        "fingerprint": "",
    }


def am_payload(*alerts: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "receiver": "heal",
        "status": status or ("firing" if firing else "resolved"),
        "alerts": list(alerts),
        "groupLabels": {"alertname": "CheckoutDown"},
        "commonLabels": {"alertname": "CheckoutDown", "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}:{alertname="CheckoutDown"}',
        "truncatedAlerts": 0,
    }


class PluginStub:
    """What a test's stand-in plugin needs besides ``run_node``: nothing to cancel or close."""

    type = "http"

    async def cancel(self, call: Any) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


@contextlib.contextmanager
def heal_dies_before_commit(heal: Heal, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The wake inside runs its step, then heal dies before the outcome is stored: the
    commit's connection is lost and nothing tries it again (the wake raises)."""

    async def power_cut(*_args: Any, **_kwargs: Any) -> bool:
        raise ConnectionError("power cut")

    retry = heal.engine.commit_retry
    with monkeypatch.context() as patch:
        patch.setattr(actions_repo, "update_if_version", power_cut)
        heal.engine.commit_retry = 0
        with pytest.raises(ConnectionError):
            yield
    heal.engine.commit_retry = retry
