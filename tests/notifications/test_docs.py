"""docs/closed-loop.md's Notifications section says what heal does: its policy loads, and
its verification snippet accepts heal's signatures and refuses tampering and replays."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from heal.notify.webhooks import Message, WebhookChannel, signature
from heal.policy.loader import PolicyError, load_policy_text

DOC = Path(__file__).parents[2] / "docs" / "closed-loop.md"


def _section() -> str:
    """From its heading to the next section's (``## ``, not ``### ``)."""
    text = DOC.read_text()
    start = text.index("## Notifications")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _section(), flags=re.DOTALL)


def test_the_example_policy_loads_with_every_channel_type() -> None:
    example, notify = _blocks("yaml")
    policy = load_policy_text(example + notify)  # the notify action names a channel of it
    assert policy.actions["page-oncall"].type == "notify"
    kinds = {c.type for c in policy.notifications.channels.values()}
    assert kinds == {"webhook", "discord", "teams", "email"}
    labels = {"service": "checkout", "severity": "critical"}
    assert policy.notifications.targets("approval_requested", labels) == [  # type: ignore[arg-type]
        "oncall-mail",
        "team-teams",
        "telegram",
    ]


def test_the_verification_snippet_accepts_heal_and_refuses_the_rest() -> None:
    (snippet,) = _blocks("python")
    scope: dict[str, Any] = {}
    exec(snippet, scope)  # noqa: S102 - the documentation's own code, run as a reader would
    verify = scope["verify"]

    channel = WebhookChannel("hook", "http://unused.invalid", "k3y")
    body = channel.body(Message(7, "incident_opened", "Incident opened: #1", "it broke"))
    now = int(time.time())
    headers = {
        "x-heal-timestamp": str(now),
        "x-heal-signature": signature("k3y", str(now), body),
    }
    assert verify("k3y", headers, body)
    assert not verify("other", headers, body)
    assert not verify("k3y", headers, body.replace(b"it broke", b"all fine"))
    old = str(now - 3600)
    replay = {"x-heal-timestamp": old, "x-heal-signature": signature("k3y", old, body)}
    assert not verify("k3y", replay, body)


def test_a_channel_naming_an_undeclared_secret_is_refused() -> None:
    text = "notifications:\n  channels:\n    hook: {type: webhook, url: 'http://x', secret: nope}\n"
    with pytest.raises(PolicyError, match="undeclared secrets: nope"):
        load_policy_text(text)


def test_a_notify_action_must_name_a_channel_of_the_policy() -> None:
    text = "actions:\n  page: {type: notify, channel: pager, message: hi}\n"
    with pytest.raises(PolicyError, match=r"neither under notifications\.channels nor slack"):
        load_policy_text(text)


def test_a_notify_action_may_name_the_settings_chats() -> None:
    for chat in ("slack", "telegram"):
        policy = load_policy_text(
            f"actions:\n  page: {{type: notify, channel: {chat}, message: hi}}\n"
        )
        assert policy.actions["page"].type == "notify"
