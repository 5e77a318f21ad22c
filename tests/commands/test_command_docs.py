"""docs/executors.md agrees with the code: its ssh and local examples load, and every
key of the two types is explained."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from heal.plugins.commands.local import DEFAULT_PATH
from heal.policy import load_policy_text
from heal.policy.executors import LocalAction, SshAction
from heal.policy.models import ActionBase, SshSettings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "executors.md").read_text()
RULE = "rules:\n  - name: r\n    match: {alertname: X}\n    actions: [{action: ACTION}]\n"


def _section(title: str) -> str:
    start = DOC.index(f"\n## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end != -1 else None]


@pytest.mark.parametrize(
    ("title", "action"), [("SSH", "restart-agent"), ("Local commands", "clear-cache")]
)
def test_the_example_loads(title: str, action: str) -> None:
    example = re.search(r"```yaml\n(.*?)```", _section(title), re.DOTALL)
    assert example is not None
    policy = load_policy_text(example.group(1) + RULE.replace("ACTION", action))
    assert policy.actions[action].type == ("ssh" if title == "SSH" else "local")


@pytest.mark.parametrize(("title", "model"), [("SSH", SshAction), ("Local commands", LocalAction)])
def test_every_key_is_explained(title: str, model: type[ActionBase]) -> None:
    own = set(model.model_fields) - set(ActionBase.model_fields) - {"type"}
    section = _section(title) + _section("SSH")  # local refers to ssh's shared keys
    assert [key for key in sorted(own) if f"`{key}`" not in section] == []
    if title == "SSH":
        for key in SshSettings.model_fields:
            assert f"`ssh.{key}`" in section


def test_the_default_path_is_the_one_documented() -> None:
    assert f"PATH={DEFAULT_PATH}" in _section("Local commands")
