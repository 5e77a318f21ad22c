"""Checks that span the policy: names that must refer to something defined elsewhere.

They run on the file's plain data, not on the validated model, so that they are reported
together with the field errors of the same file, and each at the line of the value that
is wrong. Every template and JMESPath expression is checked against the names its
context really has at run time (see ``Engine._context``, ``HttpPlugin.run_node`` and
``create.new_action_row``): a typo such as ``setings.itsm_url`` would otherwise render
as an empty string, silently.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from heal.policy.expressions import (
    ExpressionError,
    expression_lookups,
    expression_names,
    template_lookups,
    template_names,
)
from heal.policy.plugins import installed

Loc = tuple[str | int, ...]
# The top-level names a place has, each with the keys it is known to have (None: any).
Scope = Mapping[str, frozenset[str] | None]
T = TypeVar("T")

# What Engine._context gives every node's templates and expressions, besides the outputs
# of the action's nodes by name.
_NODE_NAMES = frozenset(
    {
        "alert",
        "incident",
        "execute_config",
        "params",
        "settings",
        "action",
        "outputs",
        "pre_node_outputs",
    }
)
# template_detail renders when the action is created, before any node ran, once its
# params are known.
_DETAIL_NAMES = frozenset({"alert", "incident", "settings", "params"})
_ONLY_IN = {
    "secrets": "'secrets' is only available in a request's url, headers and inputs",
    "response": "'response' is only available in outputs",
    "execute_config": "'execute_config' is only available in nodes",
    "action": "'action' is only available in nodes",
    "outputs": "'outputs' is only available in nodes",
    "pre_node_outputs": "'pre_node_outputs' is only available in nodes",
}


@dataclass(frozen=True, slots=True)
class Finding:
    loc: Loc
    message: str
    # The problem is the value itself (a template), not the key it sits under.
    at_value: bool = False


def reference_errors(data: Any) -> list[Finding]:
    if not isinstance(data, dict):
        return []
    actions = _mapping(data.get("actions"))
    declared: Scope = {
        "secrets": frozenset(map(str, _mapping(data.get("secrets")))),
        # settings of the wrong type are a field error; their keys are then unknown.
        "settings": frozenset(map(str, data.get("settings") or {}))
        if isinstance(data.get("settings") or {}, dict)
        else None,
    }
    rules = _sequence(data.get("rules"))
    findings = list(_rule_findings(rules, actions))
    findings += _decide_findings(_mapping(data.get("decide")), rules, actions)
    findings += _llm_key_findings(_mapping(_mapping(data.get("decide")).get("llm")), declared)
    for name, action in actions.items():
        if isinstance(action, dict):
            where = ("actions", name)
            # Templates of an action see its own declared params, and no others.
            own: Scope = {**declared, "params": frozenset(map(str, _mapping(action.get("params"))))}
            findings.extend(_action_findings(where, action, own))
            findings.extend(_fallback_findings(where, action, actions))
            findings.extend(_rollback_findings(where, action, actions))
            findings.extend(_target_findings(where, action, own))
            if action.get("type") != "http":
                findings.extend(_executor_findings(where, action, own, data))
    return findings


# Keys of an executor action that are not templates of its steps (checked elsewhere, or
# plain values).
_NOT_STEP_TEMPLATES = frozenset(
    {
        "type",
        "description",
        "approval",
        "approval_ticket",
        "template_detail",
        "params",
        "verify",
        "rollback",
        "target_key",
        "concurrency",
        "limits",
        "breaker",
    }
)


def _executor_findings(
    where: Loc, action: dict[str, Any], declared: Scope, data: dict[str, Any]
) -> list[Finding]:
    """An executor type's templates see what a node sees; its secrets must be declared;
    kubernetes and ssh actions need their section of the policy."""
    scope: Scope = {name: declared.get(name) for name in _NODE_NAMES}
    findings: list[Finding] = []
    for key, value in action.items():
        if key not in _NOT_STEP_TEMPLATES:
            findings += _template_findings((*where, key), value, scope)
    spec = installed().get(str(action.get("type")))
    secrets = declared.get("secrets") or frozenset()
    for path in spec.config.secret_paths if spec else ():
        named: Any = action
        for part in path:
            named = _mapping(named).get(part)
        if isinstance(named, str) and named not in secrets:
            findings.append(
                Finding(
                    (*where, *path),
                    f"secret {named!r} is not declared under secrets{_suggestion(named, secrets)}",
                    at_value=True,
                )
            )
    if action.get("type") == "kubernetes":
        clusters = _mapping(_mapping(data.get("kubernetes")).get("clusters"))
        cluster = action.get("cluster", "default")
        if isinstance(cluster, str) and cluster not in clusters:
            known = ", ".join(map(str, clusters)) or "none"
            loc = (*where, "cluster") if "cluster" in action else (*where, "type")
            findings.append(
                Finding(
                    loc,
                    f"cluster {cluster!r} is not defined under kubernetes.clusters"
                    f"{_suggestion(cluster, map(str, clusters))} (defined: {known})",
                    at_value="cluster" in action,
                )
            )
    if action.get("type") == "ssh" and not _mapping(data.get("ssh")).get("known_hosts"):
        findings.append(
            Finding(
                (*where, "type"),
                "ssh actions need ssh.known_hosts: host keys that are not in it are refused",
                at_value=True,
            )
        )
    return findings


def _target_findings(where: Loc, action: dict[str, Any], declared: Scope) -> list[Finding]:
    """``target_key`` renders when the action is created, as template_detail does."""
    if "target_key" not in action:
        return []
    detail_scope = {name: declared.get(name) for name in _DETAIL_NAMES}
    return _template_findings((*where, "target_key"), action["target_key"], detail_scope)


def _fallback_findings(
    where: Loc, action: dict[str, Any], actions: dict[Any, Any]
) -> list[Finding]:
    fallback = action.get("fallback")
    if not isinstance(fallback, str):
        return []
    if fallback == where[-1]:
        return [Finding((*where, "fallback"), "an action cannot be its own fallback", True)]
    if fallback not in actions:
        return [
            Finding(
                (*where, "fallback"),
                f"fallback {fallback!r} is not a defined action"
                f"{_suggestion(fallback, map(str, actions))}",
                at_value=True,
            )
        ]
    return []


def _rollback_findings(
    where: Loc, action: dict[str, Any], actions: dict[Any, Any]
) -> list[Finding]:
    rollback = action.get("rollback")
    if not isinstance(rollback, str):
        return []
    if rollback == where[-1]:
        return [Finding((*where, "rollback"), "an action cannot be its own rollback", True)]
    if rollback not in actions:
        return [
            Finding(
                (*where, "rollback"),
                f"rollback {rollback!r} is not a defined action"
                f"{_suggestion(rollback, map(str, actions))}",
                at_value=True,
            )
        ]
    return []


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _sequence(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _suggestion(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" — did you mean {close[0]!r}?" if close else ""


def _rule_findings(rules: list[Any], actions: dict[Any, Any]) -> Iterator[Finding]:
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        name = rule.get("name")
        if isinstance(name, str):
            if name in seen:
                yield Finding(("rules", index, "name"), f"rule name {name!r} is repeated")
            seen.add(name)
        for ref_index, ref in enumerate(_sequence(rule.get("actions"))):
            action = ref.get("action") if isinstance(ref, dict) else None
            yield from _undefined_action(
                ("rules", index, "actions", ref_index, "action"), action, actions
            )
        catalogue = _mapping(rule.get("decide")).get("catalogue")
        for ref_index, action in enumerate(_sequence(catalogue)):
            yield from _undefined_action(
                ("rules", index, "decide", "catalogue", ref_index), action, actions
            )


def _decide_findings(
    decide: dict[str, Any], rules: list[Any], actions: dict[Any, Any]
) -> Iterator[Finding]:
    """Expert rules name defined actions; when a rule decides, the last expert rule is a
    default (no match) whose action every deciding rule's catalogue allows, so a decision
    always ends with a proposal."""
    experts = [e for e in _sequence(decide.get("expert_rules")) if isinstance(e, dict)]
    for index, expert in enumerate(experts):
        yield from _undefined_action(
            ("decide", "expert_rules", index, "action"), expert.get("action"), actions
        )
    deciding = [
        (index, _sequence(_mapping(rule.get("decide")).get("catalogue")))
        for index, rule in enumerate(rules)
        if isinstance(rule, dict) and rule.get("decide")
    ]
    if not deciding:
        return
    default = experts[-1] if experts and not experts[-1].get("match") else None
    if default is None:
        yield Finding(
            ("decide", "expert_rules"),
            "rules decide, so the last expert rule must be a default (no match): "
            "a decision must always end with a proposal",
        )
        return
    for index, catalogue in deciding:
        if default.get("action") not in catalogue:
            yield Finding(
                ("rules", index, "decide", "catalogue"),
                f"the catalogue must allow {default.get('action')!r}, the action of the default "
                f"expert rule {default.get('name')!r}",
            )


def _llm_key_findings(llm: dict[str, Any], declared: Scope) -> Iterator[Finding]:
    key = llm.get("api_key")
    secrets = declared.get("secrets") or frozenset()
    if isinstance(key, str) and key not in secrets:
        yield Finding(
            ("decide", "llm", "api_key"),
            f"secret {key!r} is not declared under secrets{_suggestion(key, secrets)}",
            at_value=True,
        )


def _undefined_action(loc: Loc, action: Any, actions: dict[Any, Any]) -> Iterator[Finding]:
    if isinstance(action, str) and action not in actions:
        yield Finding(
            loc,
            f"action {action!r} is not defined{_suggestion(action, map(str, actions))} "
            f"(defined: {', '.join(map(str, actions)) or 'none'})",
            at_value=True,
        )


def _nodes(action: dict[str, Any]) -> list[tuple[Loc, dict[str, Any], str]]:
    """Every node of the action with its location and the list (phase) it belongs to."""
    found: list[tuple[Loc, dict[str, Any], str]] = []
    for index, node in enumerate(_sequence(action.get("nodes"))):
        if isinstance(node, dict):
            found.append((("nodes", index), node, "nodes"))
    ticket = _mapping(action.get("approval_ticket"))
    for index, node in enumerate(_sequence(ticket.get("nodes"))):
        if isinstance(node, dict):
            found.append((("approval_ticket", "nodes", index), node, "approval_ticket.nodes"))
    on_expire = ticket.get("on_expire")
    if isinstance(on_expire, dict):
        found.append((("approval_ticket", "on_expire"), on_expire, "on_expire"))
    return found


def _keys(mappings: Any) -> list[str]:
    return [
        m["key"]
        for m in _sequence(mappings)
        if isinstance(m, dict) and isinstance(m.get("key"), str)
    ]


def _action_findings(where: Loc, action: dict[str, Any], declared: Scope) -> list[Finding]:
    nodes = _nodes(action)
    findings = _graph_findings(where, nodes)
    outputs = {key: None for _, node, _ in nodes for key in _keys(node.get("outputs"))}
    detail_scope = {name: declared.get(name) for name in _DETAIL_NAMES}
    for key, value in _mapping(action.get("template_detail")).items():
        findings += _template_findings((*where, "template_detail", key), value, detail_scope)
    # Engine._context puts the fixed names over the outputs: an output named "alert" is
    # hidden.
    everywhere: Scope = {**outputs, **{name: declared.get(name) for name in _NODE_NAMES}}
    for loc, node, _ in nodes:
        findings += _node_findings((*where, *loc), node, everywhere, declared)
    return findings


def _graph_findings(where: Loc, nodes: list[tuple[Loc, dict[str, Any], str]]) -> list[Finding]:
    findings: list[Finding] = []
    seen: set[str] = set()
    phases: dict[str, list[str]] = {}
    for loc, node, phase in nodes:
        function = node.get("function")
        if not isinstance(function, str):
            continue
        if function in seen:
            findings.append(
                Finding(
                    (*where, *loc, "function"),
                    f"node function {function!r} is used twice: functions must be unique "
                    "within an action",
                )
            )
        seen.add(function)
        phases.setdefault(phase, []).append(function)
    for loc, node, phase in nodes:
        target = node.get("next_function")
        known = phases.get(phase, [])
        if phase != "on_expire" and isinstance(target, str) and target not in known:
            findings.append(
                Finding(
                    (*where, *loc, "next_function"),
                    f"next_function {target!r} names no node in {phase}"
                    f"{_suggestion(target, known)} (known: {', '.join(known)})",
                    at_value=True,
                )
            )
    return findings


def _node_findings(
    where: Loc, node: dict[str, Any], everywhere: Scope, declared: Scope
) -> list[Finding]:
    findings: list[Finding] = []
    requesting: Scope = {**everywhere, "secrets": declared.get("secrets")}
    request = _mapping(node.get("request"))
    findings += _template_findings((*where, "request", "url"), request.get("url"), requesting)
    for name, value in _mapping(request.get("headers")).items():
        findings += _template_findings((*where, "request", "headers", name), value, requesting)
    secrets = declared.get("secrets") or frozenset()
    secret = _mapping(request.get("auth")).get("secret")
    if isinstance(secret, str) and secret not in secrets:
        findings.append(
            Finding(
                (*where, "request", "auth", "secret"),
                f"secret {secret!r} is not declared under secrets{_suggestion(secret, secrets)}",
                at_value=True,
            )
        )
    findings += _mapping_findings((*where, "inputs"), node.get("inputs"), requesting)
    answered: Scope = {**everywhere, "response": None}
    findings += _mapping_findings((*where, "outputs"), node.get("outputs"), answered)
    findings += _template_findings((*where, "log_template"), node.get("log_template"), everywhere)
    own_outputs = frozenset(_keys(node.get("outputs")))
    for rule in ("finished_rule", "success_rule"):
        key = _mapping(node.get(rule)).get("key")
        findings += _condition_findings((*where, rule, "key"), key, own_outputs)
    return findings


def _mapping_findings(where: Loc, mappings: Any, scope: Scope) -> list[Finding]:
    """Inputs or outputs: evaluated in order, each sees the keys of the ones before it."""
    findings: list[Finding] = []
    seen = dict(scope)
    for index, mapping in enumerate(_sequence(mappings)):
        if not isinstance(mapping, dict):
            continue
        loc = (*where, index, "value")
        value, fmt = mapping.get("value"), mapping.get("format", "jmespath")
        if fmt == "jinja2":
            findings += _template_findings(loc, value, seen)
        elif fmt == "jmespath" and isinstance(value, str):
            findings += _source_findings(loc, value, seen, "expression")
        if isinstance(mapping.get("key"), str):
            seen[mapping["key"]] = None
    return findings


def _condition_findings(loc: Loc, key: Any, outputs: frozenset[str]) -> list[Finding]:
    if not isinstance(key, str):
        return []
    findings = []
    for name in sorted(_parsed(expression_names, key) - outputs):
        known = ", ".join(sorted(outputs)) or "none"
        findings.append(
            Finding(
                loc,
                f"{name!r} is not an output of this node{_suggestion(name, outputs)} "
                f"(the rule reads this node's outputs: {known})",
                at_value=True,
            )
        )
    return findings


def _template_findings(loc: Loc, value: Any, scope: Scope) -> list[Finding]:
    """Every string inside ``value`` (jinja2 values may be lists and dicts of templates)."""
    if isinstance(value, str):
        return _source_findings(loc, value, scope, "template")
    findings: list[Finding] = []
    if isinstance(value, list):
        for index, item in enumerate(value):
            findings += _template_findings((*loc, index), item, scope)
    elif isinstance(value, dict):
        for key, item in value.items():
            findings += _template_findings((*loc, key), item, scope)
    return findings


def _parsed(parse: Callable[[str], frozenset[T]], source: str) -> frozenset[T]:
    try:
        return parse(source)
    except ExpressionError:
        return frozenset()  # a syntax error: reported by the field's own validation


def _source_findings(loc: Loc, source: str, scope: Scope, kind: str) -> list[Finding]:
    """Unknown top-level names, and keys of settings or secrets that are not declared."""
    template = kind == "template"
    names = _parsed(template_names if template else expression_names, source)
    lookups = _parsed(template_lookups if template else expression_lookups, source)
    findings = []
    for name in sorted(names - set(scope)):
        hint = _suggestion(name, scope)
        if not hint:
            hint = (
                f" ({_ONLY_IN[name]})"
                if name in _ONLY_IN
                else f" (available here: {', '.join(sorted(scope))})"
            )
        findings.append(Finding(loc, f"unknown name {name!r} in {kind}{hint}", at_value=True))
    for name, key in sorted(lookups):
        keys = scope.get(name)
        if keys is not None and key not in keys:
            findings.append(
                Finding(
                    loc,
                    f"{name}.{key} in {kind}: {key!r} is not declared under {name}"
                    f"{_suggestion(key, keys)}",
                    at_value=True,
                )
            )
    return findings
