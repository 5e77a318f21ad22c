"""Loading a policy file: the happy path, and every problem reported at its line:column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from heal.domain.actions import Signal
from heal.domain.matchers import MatchOp
from heal.policy.expressions import ExpressionError, ValueFormat
from heal.policy.loader import (
    PolicyError,
    PolicyProblem,
    load_policy,
    load_policy_text,
    resolve_secrets,
)
from heal.policy.models import ConditionMethod, Policy
from heal.policy.schema import policy_json_schema

EXAMPLE = """\
settings: {itsm_url: "http://127.0.0.1:9"}
actions:
  open-ticket:
    type: http
    timeout: 600
    failed_retry: {is_enabled: true, max_retry_times: 2, retry_interval: 5}
    template_detail: {title: "{{ alert.labels.alertname }} on {{ alert.labels.service }}"}
    nodes:
      - function: create_task
        name: Create ticket
        request: {url: "{{ settings.itsm_url }}/create_ticket/", method: POST}
        inputs:
          - {key: fields, value: "execute_config.template_detail[].{key: key, value: value}", format: jmespath}
        outputs:
          - {key: sn, value: response.data.sn, format: jmespath}
          - {key: url, value: "{{ settings.itsm_url }}/ticket/{{ sn }}", format: jinja2}
        need_insert_log: true
        log_template: "Ticket {{ sn }} created"
        next_function: schedule
      - function: schedule
        name: Poll ticket
        request: {url: "{{ settings.itsm_url }}/get_ticket_status/", method: GET}
        inputs: [{key: sn, value: pre_node_outputs.sn, format: jmespath}]
        outputs:
          - {key: current_status, value: response.data.current_status, format: jmespath}
          - {key: approve_result, value: response.data.approve_result, format: jmespath}
        finished_rule: {key: current_status, method: in, value: [FINISHED, TERMINATED]}
        success_rule: {key: approve_result, method: equal, value: true}
        need_schedule: true
        schedule_timedelta: 2
rules:
  - name: checkout-down
    match: {alertname: CheckoutDown, severity: "=~critical|page"}
    group_by: [alertname, service]
    skip_delay: 0
    actions: [{action: open-ticket, signal: [firing]}]
"""  # noqa: E501


def at(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """1-based (line, column) of the ``occurrence``-th ``needle`` in ``text``."""
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    column = index - text.rfind("\n", 0, index)
    return line, column


def variant(old: str, new: str, text: str = EXAMPLE) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def problems_of(text: str) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, "policy.yaml")
    assert info.value.problems, "a PolicyError always lists its problems"
    return info.value.problems


def only_problem(text: str) -> PolicyProblem:
    problems = problems_of(text)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_helper_at_is_one_based() -> None:
    assert at(EXAMPLE, "settings") == (1, 1)
    assert at(EXAMPLE, "actions:") == (2, 1)
    assert at(EXAMPLE, "type: http") == (4, 5)


# --- the example loads ---------------------------------------------------------------------


class TestExamplePolicy:
    @pytest.fixture
    def policy(self) -> Policy:
        return load_policy_text(EXAMPLE)

    def test_top_level(self, policy: Policy) -> None:
        assert policy.settings == {"itsm_url": "http://127.0.0.1:9"}
        assert policy.secrets == {}
        assert list(policy.actions) == ["open-ticket"]
        assert [rule.name for rule in policy.rules] == ["checkout-down"]

    def test_action(self, policy: Policy) -> None:
        action = policy.actions["open-ticket"]
        assert action.type == "http"
        assert action.timeout == 600
        assert action.failed_retry.budget == 2
        assert action.failed_retry.retry_interval == 5
        assert [node.function for node in action.nodes] == ["create_task", "schedule"]

    def test_first_node(self, policy: Policy) -> None:
        node = policy.actions["open-ticket"].node("create_task")
        assert node.request.method == "POST"
        assert node.request.url == "{{ settings.itsm_url }}/create_ticket/"
        assert node.inputs[0].format is ValueFormat.JMESPATH
        assert node.outputs[1].format is ValueFormat.JINJA2
        assert node.need_insert_log
        assert node.log_template == "Ticket {{ sn }} created"
        assert node.next_function == "schedule"
        assert not node.need_schedule

    def test_polling_node(self, policy: Policy) -> None:
        node = policy.actions["open-ticket"].node("schedule")
        assert node.request.method == "GET"
        assert node.need_schedule
        assert node.schedule_timedelta == 2
        assert node.finished_rule is not None
        assert node.finished_rule.method is ConditionMethod.IN
        assert node.finished_rule.value == ["FINISHED", "TERMINATED"]
        assert node.success_rule is not None
        assert node.success_rule.method is ConditionMethod.EQUAL
        assert node.success_rule.value is True

    def test_unknown_node_is_a_key_error(self, policy: Policy) -> None:
        with pytest.raises(KeyError):
            policy.actions["open-ticket"].node("nope")

    def test_rule(self, policy: Policy) -> None:
        rule = policy.rules[0]
        assert rule.group_by == ["alertname", "service"]
        assert rule.skip_delay == 0
        assert rule.continue_matching is False
        assert [(ref.action, ref.signal) for ref in rule.actions] == [
            ("open-ticket", [Signal.FIRING])
        ]
        ops = {m.name: m.op for m in rule.matchers()}
        assert ops == {"alertname": MatchOp.EQ, "severity": MatchOp.RE}
        labels = {"alertname": "CheckoutDown", "severity": "page"}
        assert all(m.matches(labels) for m in rule.matchers())

    def test_continue_alias(self) -> None:
        policy = load_policy_text(variant("    skip_delay: 0\n", "    continue: true\n"))
        assert policy.rules[0].continue_matching is True

    def test_load_from_file(self, tmp_path: Path) -> None:
        path = tmp_path / "policy.yaml"
        path.write_text(EXAMPLE, encoding="utf-8")
        assert load_policy(path) == load_policy_text(EXAMPLE)
        assert load_policy(str(path)).rules[0].name == "checkout-down"


# --- broken policies -----------------------------------------------------------------------

SECRET_AUTH = "method: GET, auth: {type: bearer, secret: itsm-token}}"

# (id, policy text, where the problem is: (needle, occurrence), message fragment)
BROKEN = [
    pytest.param(
        variant("    type: http\n", "    type: http: x\n"),
        (": x", 1),
        0,  # the second ':' is where YAML notices
        "mapping values are not allowed here",
        id="yaml-syntax",
    ),
    pytest.param(
        variant("timeout: 600", "timeout: 30"),
        ("timeout: 30", 1),
        0,
        "must be at least 60, got 30",
        id="timeout-below-60",
    ),
    pytest.param(
        variant("method: in,", "method: within,"),
        ("method: within", 1),
        0,
        "'equal', 'not equal', 'in', 'not in' or 'exists'",
        id="unknown-condition-method",
    ),
    pytest.param(
        variant("value: [FINISHED, TERMINATED]", "value: FINISHED"),
        ("finished_rule", 1),
        0,
        "method 'in' needs a list as value",
        id="in-with-non-list",
    ),
    pytest.param(
        variant("next_function: schedule", "next_function: scheduel"),
        ("scheduel", 1),  # the value, on its own line
        0,
        "next_function 'scheduel' names no node in nodes — did you mean 'schedule'? "
        "(known: create_task, schedule)",
        id="next-function-names-no-node",
    ),
    pytest.param(
        variant(
            "next_function: schedule",
            "next_function: create_task",
            variant("- function: schedule\n", "- function: create_task\n"),
        ),
        ("- function: create_task", 2),  # the second use
        2,
        "node function 'create_task' is used twice: functions must be unique within an action",
        id="duplicate-node-functions",
    ),
    pytest.param(
        variant("{action: open-ticket,", "{action: open-tikcet,"),
        ("open-tikcet", 1),
        0,
        "action 'open-tikcet' is not defined — did you mean 'open-ticket'? (defined: open-ticket)",
        id="undefined-action",
    ),
    pytest.param(
        EXAMPLE + EXAMPLE[EXAMPLE.index("  - name: checkout-down") :],
        ("name: checkout-down", 2),
        0,
        "rule name 'checkout-down' is repeated",
        id="duplicate-rule-names",
    ),
    pytest.param(
        variant('"=~critical|page"', '"=~(critical"'),
        ("severity:", 1),  # the label, not the rule's match
        0,
        "invalid regular expression '(critical'",
        id="bad-regex-in-match",
    ),
    pytest.param(
        variant(
            "        finished_rule: {key: current_status, method: in, "
            "value: [FINISHED, TERMINATED]}\n",
            "",
        ),
        ("- function: schedule", 1),
        2,  # the list item's content, after "- "
        "need_schedule polls until finished_rule holds",
        id="need-schedule-without-finished-rule",
    ),
    pytest.param(
        variant('        log_template: "Ticket {{ sn }} created"\n', ""),
        ("- function: create_task", 1),
        2,  # the list item's content, after "- "
        "need_insert_log is true but log_template is empty",
        id="need-insert-log-without-log-template",
    ),
    pytest.param(
        variant("method: GET}", SECRET_AUTH),
        ("itsm-token", 1),
        0,
        "secret 'itsm-token' is not declared under secrets",
        id="auth-secret-not-declared",
    ),
    pytest.param(
        variant("    timeout: 600\n", "    timeout: 600\n    timeout: 700\n"),
        ("timeout: 700", 1),
        0,
        'duplicate key "timeout"',
        id="yaml-duplicate-key",
    ),
    pytest.param(
        variant("        name: Poll ticket\n", ""),
        ("- function: schedule", 1),
        2,  # the list item's content, after "- "
        "missing required key 'name'",
        id="missing-required-field",
    ),
    pytest.param(
        variant("finished_rule: {key: current_status, method: in,", "finished_rule: {method: in,"),
        ("finished_rule", 1),
        0,
        "missing required key 'key'",
        id="condition-without-key",
    ),
]


@pytest.mark.parametrize(("text", "where", "shift", "fragment"), BROKEN)
def test_broken_policy_reports_line_and_column(
    text: str, where: tuple[str, int], shift: int, fragment: str
) -> None:
    problem = only_problem(text)
    line, column = at(text, *where)
    assert (problem.line, problem.column) == (line, column + shift), str(problem)
    assert fragment in problem.message


def test_problem_path_names_the_field() -> None:
    problem = only_problem(variant("timeout: 600", "timeout: 30"))
    assert problem.path == "actions.open-ticket.timeout"
    line, column = at(EXAMPLE, "timeout: 600")
    assert str(problem) == (
        f"{line}:{column} (actions.open-ticket.timeout): must be at least 60, got 30"
    )


def test_unknown_key_typo() -> None:
    text = variant("    nodes:\n", "    nodez:\n")
    problems = {p.path: p for p in problems_of(text)}
    assert set(problems) == {"actions.open-ticket.nodez", "actions.open-ticket.nodes"}
    extra = problems["actions.open-ticket.nodez"]
    assert (extra.line, extra.column) == at(text, "nodez:")
    assert extra.message == "unknown key 'nodez' — did you mean 'nodes'?"
    # The missing "nodes" is reported at the deepest node that exists: the action.
    missing = problems["actions.open-ticket.nodes"]
    assert (missing.line, missing.column) == at(text, "open-ticket:")
    assert missing.message == "missing required key 'nodes'"


def test_unknown_top_level_key() -> None:
    text = "setings: {}\n"
    problem = only_problem(text)
    assert (problem.line, problem.column) == (1, 1)
    assert problem.path == "setings"


def test_error_message_lists_source_and_positions() -> None:
    text = variant("timeout: 600", "timeout: 30")
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, "my-policy.yaml")
    line, column = at(text, "timeout: 30")
    assert info.value.source == "my-policy.yaml"
    assert "1 problem(s) in my-policy.yaml" in str(info.value)
    assert f"my-policy.yaml:{line}:{column} (actions.open-ticket.timeout)" in str(info.value)


# Template / JMESPath compile errors inside the policy must be PolicyErrors too.
EXPRESSION_BROKEN = [
    pytest.param(
        variant('log_template: "Ticket {{ sn }} created"', 'log_template: "Ticket {{ sn "'),
        "log_template:",
        "template 'Ticket {{ sn '",
        id="bad-jinja-in-log-template",
    ),
    pytest.param(
        variant("value: response.data.sn,", 'value: "response.data.[",'),
        '{key: sn, value: "response.data.["',
        "JMESPath 'response.data.['",
        id="bad-jmespath-in-outputs",
    ),
    pytest.param(
        variant('/create_ticket/"', '/create_ticket/{{"'),
        'url: "{{ settings.itsm_url }}/create_ticket/{{"',
        "template",
        id="bad-jinja-in-url",
    ),
    pytest.param(
        variant("finished_rule: {key: current_status,", 'finished_rule: {key: "current_status[",'),
        'key: "current_status["',
        "JMESPath 'current_status['",
        id="bad-jmespath-in-finished-rule-key",
    ),
]


@pytest.mark.parametrize(("text", "needle", "fragment"), EXPRESSION_BROKEN)
def test_bad_expression_is_a_policy_problem(text: str, needle: str, fragment: str) -> None:
    problem = only_problem(text)
    assert (problem.line, problem.column) == at(text, needle), str(problem)
    assert fragment in problem.message


@pytest.mark.parametrize(("text", "needle", "fragment"), EXPRESSION_BROKEN)
def test_bad_expression_is_rejected(text: str, needle: str, fragment: str) -> None:
    # Whatever the exception type, a broken expression never loads silently.
    with pytest.raises((PolicyError, ExpressionError), match=r"template|JMESPath"):
        load_policy_text(text)


def test_several_errors_are_all_reported() -> None:
    text = variant(
        '"=~critical|page"',
        '"=~(critical"',
        variant("method: in,", "method: within,", variant("timeout: 600", "timeout: 30")),
    )
    problems = problems_of(text)
    found = {(p.line, p.column, p.path) for p in problems}
    assert found == {
        (*at(text, "timeout: 30"), "actions.open-ticket.timeout"),
        (*at(text, "method: within"), "actions.open-ticket.nodes.1.finished_rule.method"),
        (*at(text, "severity:"), "rules.0.match.severity"),
    }


def test_several_reference_errors_are_all_reported() -> None:
    text = variant("{action: open-ticket,", "{action: nope,", variant("method: GET}", SECRET_AUTH))
    text += "  - name: checkout-down\n"
    problems = problems_of(text)
    # In the order of the file.
    assert [p.path for p in problems] == [
        "actions.open-ticket.nodes.1.request.auth.secret",
        "rules.0.actions.0.action",
        "rules.1.name",
    ]
    assert [(p.line, p.column) for p in problems] == [
        at(text, "itsm-token"),
        at(text, "nope"),
        at(text, "name: checkout-down", 2),
    ]


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n", "{}\n"])
def test_empty_file_is_an_error(text: str) -> None:
    # An empty file is most likely the wrong file (or one truncated): it would start a
    # server that does nothing.
    problem = only_problem(text)
    assert (problem.line, problem.column) == (1, 1)
    assert problem.message == "the policy is empty: it needs at least the actions and rules it runs"


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    problem = only_problem(text)
    assert (problem.line, problem.column) == (1, 1)
    assert "mapping at the top" in problem.message


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert info.value.source == str(path)
    assert "cannot read" in info.value.problems[0].message
    assert not isinstance(info.value, OSError)


def test_directory_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path)


def test_non_utf8_file_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("settings: {a: 'caf\u00e9'}\n".encode("latin-1"))
    with pytest.raises(PolicyError):
        load_policy(path)


def test_load_policy_reports_file_name_for_problems(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(variant("timeout: 600", "timeout: 30"), encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert info.value.source == str(path)
    assert f"{path}:5:5" in str(info.value)


# --- secrets -------------------------------------------------------------------------------

WITH_SECRETS = variant(
    "actions:\n",
    "secrets:\n  itsm-token: {env: ITSM_TOKEN}\n  other: {env: OTHER_TOKEN}\nactions:\n",
    variant("method: GET}", SECRET_AUTH),
)


class TestSecrets:
    def test_declared_secret_loads(self) -> None:
        policy = load_policy_text(WITH_SECRETS)
        assert policy.secrets["itsm-token"].env == "ITSM_TOKEN"
        auth = policy.actions["open-ticket"].node("schedule").request.auth
        assert auth is not None
        assert auth.secret == "itsm-token"

    def test_resolve_from_given_environ(self) -> None:
        policy = load_policy_text(WITH_SECRETS)
        environ = {"ITSM_TOKEN": "t0k", "OTHER_TOKEN": "o", "UNRELATED": "x"}
        assert resolve_secrets(policy, environ) == {"itsm-token": "t0k", "other": "o"}

    def test_empty_value_is_still_set(self) -> None:
        policy = load_policy_text(WITH_SECRETS)
        assert resolve_secrets(policy, {"ITSM_TOKEN": "", "OTHER_TOKEN": ""}) == {
            "itsm-token": "",
            "other": "",
        }

    def test_missing_env_vars_are_all_reported(self) -> None:
        policy = load_policy_text(WITH_SECRETS)
        with pytest.raises(PolicyError) as info:
            resolve_secrets(policy, {})
        messages = [p.message for p in info.value.problems]
        assert messages == [
            "secret 'itsm-token': environment variable ITSM_TOKEN is not set",
            "secret 'other': environment variable OTHER_TOKEN is not set",
        ]
        assert info.value.source == "environment"
        assert all(p.path == "secrets" for p in info.value.problems)

    def test_one_missing(self) -> None:
        policy = load_policy_text(WITH_SECRETS)
        with pytest.raises(PolicyError, match="OTHER_TOKEN") as info:
            resolve_secrets(policy, {"ITSM_TOKEN": "t"})
        assert len(info.value.problems) == 1

    def test_secret_value_not_in_error(self) -> None:
        policy = load_policy_text(WITH_SECRETS)
        with pytest.raises(PolicyError) as info:
            resolve_secrets(policy, {"ITSM_TOKEN": "super-secret-value"})
        assert "super-secret-value" not in str(info.value)

    def test_defaults_to_process_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        policy = load_policy_text(WITH_SECRETS)
        monkeypatch.setenv("ITSM_TOKEN", "from-env")
        monkeypatch.setenv("OTHER_TOKEN", "o")
        assert resolve_secrets(policy)["itsm-token"] == "from-env"

    def test_no_secrets_resolves_to_empty(self) -> None:
        assert resolve_secrets(load_policy_text(EXAMPLE), {}) == {}

    def test_basic_auth_needs_username(self) -> None:
        text = variant("type: bearer", "type: basic", WITH_SECRETS)
        problem = only_problem(text)
        assert "basic auth needs a username" in problem.message
        assert (problem.line, problem.column) == at(text, "auth:")


# --- JSON schema ---------------------------------------------------------------------------


def test_json_schema() -> None:
    text = policy_json_schema()
    schema = json.loads(text)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "heal policy"
    assert "finished_rule" in text
    assert "continue" in text
    assert "continue_matching" not in text  # users write the alias
    assert set(schema["properties"]) == {
        "settings",
        "secrets",
        "defaults",
        "actions",
        "rules",
        "approval",
        "kubernetes",
        "notifications",
        "ssh",
        "governors",
        "decide",
    }
    action_types = schema["properties"]["actions"]["additionalProperties"]["oneOf"]
    assert len(action_types) == 6  # http, kubernetes, stackstorm, ssh, local, notify


def test_unquoted_scalar_matcher_values_are_label_strings() -> None:
    policy = load_policy_text(
        variant("alertname: CheckoutDown,", "alertname: CheckoutDown, code: 500,")
    )
    assert policy.rules[0].match["code"] == "500"


def _properties(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every property of every object in the schema, with a readable name."""
    found = [(f"policy.{name}", spec) for name, spec in schema["properties"].items()]
    for model, definition in schema.get("$defs", {}).items():
        for name, spec in definition.get("properties", {}).items():
            found.append((f"{model}.{name}", spec))
    return found


def test_every_schema_property_has_a_description() -> None:
    # Editors show a property's description as help while a policy is written.
    properties = _properties(json.loads(policy_json_schema()))
    assert len(properties) > 50
    missing = [name for name, spec in properties if not spec.get("description")]
    assert missing == []


# --- templates and expressions see only the names their context has ------------------------


URL = '{url: "{{ settings.itsm_url }}/create_ticket/", method: POST}'


def test_misspelt_name_in_a_template_is_an_error_at_the_value() -> None:
    text = variant(URL, '{url: "{{ setings.itsm_url }}/create_ticket/", method: POST}')
    problem = only_problem(text)
    assert problem.path == "actions.open-ticket.nodes.0.request.url"
    assert (problem.line, problem.column) == at(text, '"{{ setings')
    assert problem.message == "unknown name 'setings' in template — did you mean 'settings'?"


NAME_PROBLEMS = [
    pytest.param(
        '{title: "{{ alert.labels.alertname }} on {{ alert.labels.service }}"}',
        '{title: "{{ execute_config.params.x }}"}',
        '"{{ execute_config',
        "unknown name 'execute_config' in template ('execute_config' is only available in nodes)",
        id="template-detail-renders-before-any-node",
    ),
    pytest.param(
        '"{{ settings.itsm_url }}/ticket/{{ sn }}"',
        '"{{ secrets.itsm_token }}/ticket/{{ sn }}"',
        '"{{ secrets',
        "unknown name 'secrets' in template ('secrets' is only available in a request's url, "
        "headers and inputs)",
        id="no-secrets-in-outputs",
    ),
    pytest.param(
        '"Ticket {{ sn }} created"',
        '"Ticket {{ response.data.sn }} created"',
        '"Ticket {{ response',
        "unknown name 'response' in template ('response' is only available in outputs)",
        id="no-response-in-log",
    ),
    pytest.param(
        "value: pre_node_outputs.sn,",
        "value: pre_node_output.sn,",
        "pre_node_output.sn",
        "unknown name 'pre_node_output' in expression — did you mean 'pre_node_outputs'?",
        id="jmespath-input",
    ),
    pytest.param(
        "{key: current_status, method: in,",
        "{key: current_stauts, method: in,",
        "current_stauts",
        "'current_stauts' is not an output of this node — did you mean 'current_status'? "
        "(the rule reads this node's outputs: approve_result, current_status)",
        id="condition-reads-own-outputs",
    ),
    pytest.param(
        '"Ticket {{ sn }} created"',
        '"Ticket {{ nope }} created"',
        '"Ticket {{ nope',
        "unknown name 'nope' in template (available here: action, alert, approve_result, "
        "current_status, execute_config, incident, outputs, params, pre_node_outputs, settings, "
        "sn, url)",
        id="no-close-name-lists-what-is-there",
    ),
]


@pytest.mark.parametrize(("old", "new", "needle", "message"), NAME_PROBLEMS)
def test_template_names_depend_on_the_place(old: str, new: str, needle: str, message: str) -> None:
    text = variant(old, new)
    problem = only_problem(text)
    assert (problem.line, problem.column) == at(text, needle)
    assert problem.message == message


@pytest.mark.parametrize(
    ("new", "needle", "message"),
    [
        (
            '{url: "{{ settings.itsm_ulr }}/create_ticket/", method: POST}',
            '"{{ settings.itsm_ulr',
            "settings.itsm_ulr in template: 'itsm_ulr' is not declared under settings — did "
            "you mean 'itsm_url'?",
        ),
        (
            '{url: "{{ settings.itsm_url }}/x", headers: {X-Key: "{{ secrets[\'token\'] }}"}}',
            '"{{ secrets[',
            "secrets.token in template: 'token' is not declared under secrets",
        ),
    ],
)
def test_keys_of_settings_and_secrets_must_be_declared(new: str, needle: str, message: str) -> None:
    # Both are known from the file itself: a misspelt key would render as "".
    text = variant(URL, new)
    problem = only_problem(text)
    assert (problem.line, problem.column) == at(text, needle)
    assert problem.message == message


def test_names_a_template_may_use() -> None:
    # Earlier outputs by name, the response in outputs, Jinja's own globals and variables.
    text = variant(
        '"Ticket {{ sn }} created"',
        '"{% set n = sn %}{% for i in range(2) %}{{ n }}{{ loop.index }}{% endfor %}'
        '{{ current_status }}"',
        variant('value: "{{ settings.itsm_url }}', 'value: "{{ response.data.sn }}'),
    )
    load_policy_text(text)


# --- plain words, all at once --------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("timeout: 600", "timeout: abc", "expected a whole number, got 'abc'"),
        ("schedule_timedelta: 2", "schedule_timedelta: soon", "expected a number, got 'soon'"),
        ("need_schedule: true", "need_schedule: maybe", "expected true or false, got 'maybe'"),
        (
            "method: GET}",
            "method: FETCH}",
            "expected 'GET', 'POST', 'PUT', 'PATCH' or 'DELETE', got 'FETCH'",
        ),
        (
            "group_by: [alertname, service]",
            "group_by: alertname",
            "expected a list, got 'alertname'",
        ),
    ],
)
def test_field_errors_in_plain_words(old: str, new: str, message: str) -> None:
    assert only_problem(variant(old, new)).message == message


def test_unknown_key_without_a_close_name_lists_the_known_ones() -> None:
    problem = only_problem(variant("    skip_delay: 0\n", "    colour: red\n"))
    assert problem.message == (
        "unknown key 'colour' (known keys: name, match, group_by, skip_delay, actions, continue, "
        "verify, decide)"
    )


def test_reference_errors_come_with_field_errors() -> None:
    text = variant(
        "{action: open-ticket,", "{action: nope,", variant("timeout: 600", "timeout: 30")
    )
    text = variant('"{{ settings.itsm_url }}/get', '"{{ setings.itsm_url }}/get', text)
    problems = problems_of(text)
    assert [p.path for p in problems] == [
        "actions.open-ticket.timeout",
        "actions.open-ticket.nodes.1.request.url",
        "rules.0.actions.0.action",
    ]
