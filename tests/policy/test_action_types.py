"""Action types: the executors' keys as the policy file states them, checked at line:col,
and third-party types found through the ``heal.plugins`` entry points."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from heal.policy import load_policy_text
from heal.policy.executors import KubernetesAction, LocalAction, SshAction, StackStormAction
from heal.policy.loader import PolicyError
from heal.policy.plugins import broken, installed, parse_action, refresh
from heal.policy.schema import policy_json_schema

EXAMPLE = (Path(__file__).parent.parent / "policies" / "executors.yaml").read_text()


def _problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policy_text(text, "p.yaml")
    return [str(p) for p in caught.value.problems]


def test_the_binding_policy_shape_loads_with_each_type_and_its_steps() -> None:
    policy = load_policy_text(EXAMPLE)
    actions = policy.actions
    assert isinstance(actions["restart-workload"], KubernetesAction)
    assert [s.function for s in actions["restart-workload"].steps] == ["dry_run", "apply", "wait"]
    assert [s.function for s in actions["roll-back"].steps] == ["dry_run", "apply", "wait"]
    st2 = actions["st2-remediate"]
    assert isinstance(st2, StackStormAction)
    assert [s.function for s in st2.steps] == ["execute", "follow"]
    assert st2.fallback == "restart-agent"
    assert st2.secret_names == ["st2_key"]
    ssh, local = actions["restart-agent"], actions["clear-cache"]
    assert isinstance(ssh, SshAction)
    assert isinstance(local, LocalAction)
    assert ssh.steps[0].idempotent  # the policy says idempotent: true
    assert not local.steps[0].idempotent  # commands are not, unless the policy says so
    assert policy.kubernetes.allowed_namespaces == ["shop", "=~team-.*"]
    assert policy.ssh.known_hosts == "/etc/heal/known_hosts"


def test_a_stored_snapshot_parses_back_into_its_own_type() -> None:
    policy = load_policy_text(EXAMPLE)
    for action in policy.actions.values():
        again = parse_action(action.model_dump(mode="json", by_alias=True))
        assert type(again) is type(action)
        assert again == action


def test_a_command_timeout_gives_the_action_a_deadline_past_it() -> None:
    local = load_policy_text(EXAMPLE).actions["clear-cache"]
    assert local.timeout == 30  # the command's own limit, below an http action's minimum
    assert local.deadline_seconds > 30


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "operation: rollback",
            "operation: rollbak",
            "30:5 (actions.roll-back.operation): "
            "expected 'restart', 'scale' or 'rollback', got 'rollbak'",
        ),
        (
            "secret: st2_key",
            "secret: st2_kye",
            "35:35 (actions.st2-remediate.auth.secret): "
            "secret 'st2_kye' is not declared under secrets — did you mean 'st2_key'?",
        ),
        (
            "key: deploy_key",
            "key: deploy",
            "49:10 (actions.restart-agent.key): secret 'deploy' is not declared under secrets",
        ),
        (
            'command: [sudo, systemctl, restart, "{{ alert.labels.unit }}"]',
            'command: "sudo systemctl restart nginx"',
            "50:5 (actions.restart-agent.command): "
            "command must be a list of arguments (argv), never a shell string",
        ),
        (
            "bounds: {min: 1, max: 10}",
            "bounds: {min: 11, max: 10}",
            "27:5 (actions.scale-up.bounds): bounds are inverted: min 11 is above max 10",
        ),
        (
            "    bounds: {min: 1, max: 10}\n",
            "",
            "22:3 (actions.scale-up): operation scale needs bounds",
        ),
        (
            "type: local",
            "type: locl",
            "53:3 (actions.clear-cache): unknown action type 'locl' — did you mean 'local'?",
        ),
        (
            "fallback: restart-agent",
            "fallback: restart-agnt",
            "43:15 "
            "(actions.st2-remediate.fallback): fallback 'restart-agnt' is not a defined action "
            "— did you mean 'restart-agent'?",
        ),
        (
            "    target: {kind: Deployment, namespace: shop, name: checkout}\n",
            "",
            "28:3 (actions.roll-back.target): missing required key 'target'",
        ),
        (
            "operation: restart\n    target:",
            "operation: restart\n    targt:",
            "17:5 (actions.restart-workload.targt): unknown key 'targt' — did you mean 'target'?",
        ),
        (
            'parameters: {host: "{{ alert.labels.instance }}"}',
            'parameters: {host: "{{ alrt.labels.instance }}"}',
            "41:24 (actions.st2-remediate.parameters.host): unknown name 'alrt' in template "
            "— did you mean 'alert'?",
        ),
        (
            "    default: {kubeconfig: ~/.kube/config, context: prod}",
            "    prod: {kubeconfig: ~/.kube/config, context: prod}",
            "15:5 (actions.restart-workload.type): cluster 'default' is not defined under "
            "kubernetes.clusters",
        ),
        (
            "  known_hosts: /etc/heal/known_hosts",
            "  connect_timeout: 5",
            "45:11 (actions.restart-agent.type): ssh actions need ssh.known_hosts",
        ),
    ],
)
def test_bad_executor_configs_are_reported_at_their_line(old: str, new: str, expected: str) -> None:
    assert old in EXAMPLE
    problems = _problems(EXAMPLE.replace(old, new, 1))
    assert any(p.startswith(expected) for p in problems), problems


def test_the_schema_has_every_installed_type() -> None:
    schema = json.loads(policy_json_schema())
    defs = schema["$defs"]
    for name in ("HttpAction", "KubernetesAction", "StackStormAction", "SshAction", "LocalAction"):
        assert name in defs
    assert defs["KubernetesAction"]["properties"]["operation"]["enum"] == [
        "restart",
        "scale",
        "rollback",
    ]


# A third-party type, installed the way pip installs one: a distribution whose metadata
# declares a heal.plugins entry point.
PLUGIN_MODULE = '''
from typing import Literal
from heal.policy.models import ActionBase, ExecutorStep
from heal.policy.plugins import PluginSpec

class PageAction(ActionBase):
    type: Literal["page"]
    """page: page someone."""
    who: str
    """Whom to page."""

    @property
    def steps(self):
        return [ExecutorStep(function="page", name=f"page {self.who}")]

PLUGIN = PluginSpec("page", PageAction, "heal_page_plugin:make", "page someone")

def make(context):
    raise NotImplementedError
'''


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "heal_page_plugin.py").write_text(PLUGIN_MODULE)
    info = tmp_path / "heal_page_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: heal-page-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[heal.plugins]\npage = heal_page_plugin:PLUGIN\nbad = heal_page_plugin:nothing_here\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    refresh()
    yield tmp_path
    monkeypatch.delitem(sys.modules, "heal_page_plugin", raising=False)
    monkeypatch.undo()
    refresh()


@pytest.mark.usefixtures("third_party")
def test_a_third_party_type_is_found_through_its_entry_point() -> None:
    assert "page" in installed()
    assert [b.name for b in broken()] == ["bad"]
    policy = load_policy_text("actions:\n  wake-someone: {type: page, who: oncall}\nrules: []\n")
    assert policy.actions["wake-someone"].steps[0].name == "page oncall"
    assert "PageAction" in json.loads(policy_json_schema())["$defs"]
    problems = _problems("actions:\n  x: {type: page, whom: oncall}\nrules: []\n")
    assert any("unknown key 'whom' — did you mean 'who'?" in p for p in problems), problems
    problems = _problems("actions:\n  x: {type: bad}\nrules: []\n")
    assert any("action type 'bad' is installed but failed to load" in p for p in problems)


def test_without_the_plugin_its_type_is_unknown() -> None:
    assert "page" not in installed()
    problems = _problems("actions:\n  x: {type: page, who: oncall}\nrules: []\n")
    assert any("unknown action type 'page'" in p for p in problems), problems
