"""Load a policy file and report every problem with its line and column."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from heal.policy.messages import plain_message
from heal.policy.models import HttpAction, Policy
from heal.policy.plugins import installed, policy_model
from heal.policy.references import reference_errors


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path else ""
        return f"{self.line}:{self.column}{where}: {self.message}"


class PolicyError(Exception):
    def __init__(self, source: str, problems: list[PolicyProblem]) -> None:
        self.source = source
        self.problems = problems
        listing = "\n".join(f"{source}:{p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in {source}:\n{listing}")


def _plain(node: Any) -> Any:
    """ruamel's commented containers, as plain dicts and lists for pydantic."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _position(root: Any, loc: tuple[Any, ...], *, at_value: bool = False) -> tuple[int, int]:
    """The line/column (1-based) of the deepest node of ``loc`` that exists in the file:
    of its key, or with ``at_value`` of the value itself when the whole ``loc`` exists."""
    line, column = 0, 0
    node = root
    for index, part in enumerate(loc):
        lc = getattr(node, "lc", None)
        last = index == len(loc) - 1
        try:
            if isinstance(node, dict) and part in node:
                if lc is not None:
                    line, column = lc.value(part) if last and at_value else lc.key(part)
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                if lc is not None:
                    line, column = lc.item(part)
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError):
            break
    return line + 1, column + 1


def _file_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """An error's location as keys of the file: without pydantic's union members
    (``function-after[...]``) and the action type it picked (``actions.x.kubernetes``)."""
    parts = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))
    if len(parts) > 2 and parts[0] == "actions" and parts[2] in installed():
        parts = parts[:2] + parts[3:]
    return parts


def _readable(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


_EMPTY = "the policy is empty: it needs at least the actions and rules it runs"


def load_policy_text(text: str, source: str = "<policy>") -> Policy:
    root = _parse(text, source)
    data = _plain(root)
    problems = [
        PolicyProblem(*_position(root, f.loc, at_value=f.at_value), _readable(f.loc), f.message)
        for f in reference_errors(data)
    ]
    policy = None
    try:
        policy = policy_model().model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = _file_loc(error["loc"])
            line, column = _position(root, loc)
            message = plain_message(error, loc, data)
            problems.append(PolicyProblem(line, column, _readable(loc), message))
    if problems or policy is None:
        # In the order of the file, as an editor would list them.
        problems.sort(key=lambda p: (p.line, p.column))
        raise PolicyError(source, problems)
    return policy


def _parse(text: str, source: str) -> Any:
    yaml = YAML(typ="rt")
    try:
        root = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise PolicyError(source, [PolicyProblem(line, column, "", str(exc.problem))]) from exc
    if root is None or root == {}:
        raise PolicyError(source, [PolicyProblem(1, 1, "", _EMPTY)])
    if not isinstance(root, dict):
        raise PolicyError(source, [PolicyProblem(1, 1, "", "a policy is a mapping at the top")])
    return root


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problem = PolicyProblem(1, 1, "", f"cannot read: {exc.strerror}")
        raise PolicyError(str(path), [problem]) from exc
    except UnicodeDecodeError as exc:
        problem = PolicyProblem(1, 1, "", f"not UTF-8 text (byte {exc.start}): {exc.reason}")
        raise PolicyError(str(path), [problem]) from exc
    return load_policy_text(text, str(path))


def resolve_secrets(policy: Policy, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Read every declared secret from the environment; a missing one is an error."""
    environ = dict(os.environ) if environ is None else environ
    values: dict[str, str] = {}
    missing = []
    for name, ref in policy.secrets.items():
        if ref.env in environ:
            values[name] = environ[ref.env]
        else:
            missing.append(f"secret {name!r}: environment variable {ref.env} is not set")
    if missing:
        raise PolicyError("environment", [PolicyProblem(0, 0, "secrets", m) for m in missing])
    return values


def basic_credentials(policy: Policy, secrets: dict[str, str]) -> set[tuple[str, str]]:
    """(username, secret value) of every node with basic auth: what heal base64-encodes
    into an ``Authorization`` header, so the redactor can mask that form too."""
    return {
        (auth.username, secrets[auth.secret])
        for action in policy.actions.values()
        if isinstance(action, HttpAction)
        for node in action.nodes
        if (auth := node.request.auth)
        and auth.type == "basic"
        and auth.username
        and auth.secret in secrets
    }
