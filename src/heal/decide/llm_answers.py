"""How an LLM's answer is read and checked before it may become a proposal.

The answer must be one JSON object (code fences around it are tolerated, as models add
them without a structured response format): an action of the rule's catalogue, params
that validate against that action's declared ``params`` once placeholders are mapped back,
and a confidence from 0 to 1. A kubectl command line instead of an action is read by
``heal.policy.kubectl`` (never a shell) and stands for the catalogue's kubernetes action
doing that operation. Anything else is refused with the reason in plain words.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from heal.decide.llm_prompt import Anonymizer
from heal.decide.tiers import DecisionInput
from heal.policy import kubectl
from heal.policy.executors import KubernetesAction
from heal.policy.params import ParamsRejected, validate_params

MAX_RATIONALE = 2000
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


class AnswerRejected(ValueError):
    """The answer cannot be a proposal; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Checked:
    """An answer that passed every check, its params as the action will get them."""

    action: str
    params: dict[str, Any]
    confidence: float
    rationale: str
    kubectl: str | None = None

    @property
    def vote(self) -> str:
        """What two answers must share to agree: the action and the exact params."""
        return json.dumps([self.action, self.params], sort_keys=True)


def parse(content: str | None) -> Any:
    """The JSON value of the model's text; code fences and text around one object are
    tolerated."""
    if content is None or not content.strip():
        raise AnswerRejected("the LLM's answer is empty")
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except ValueError as first:
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(text[start : end + 1])
            except ValueError:
                pass
        raise AnswerRejected(f"the LLM's answer is not JSON ({first}): {_excerpt(text)}") from None


def check(answer: Any, request: DecisionInput, anonymizer: Anonymizer) -> Checked:
    if not isinstance(answer, dict):
        raise AnswerRejected(f"the LLM's answer is {_kind(answer)}, not a JSON object")
    answer = anonymizer.reveal(answer)
    action, line = answer.get("action"), answer.get("kubectl")
    if isinstance(action, str) and action.strip().startswith("kubectl"):
        line, action = action.strip(), None
    if isinstance(line, str) and action is None:
        name, params = from_kubectl(line, request)
    else:
        line = None
        name, params = _chosen(action, answer.get("params"), request)
    confidence = _confidence(answer.get("confidence"))
    rationale = answer.get("rationale")
    rationale = rationale[:MAX_RATIONALE] if isinstance(rationale, str) else ""
    return Checked(name, params, confidence, rationale, kubectl=line)


def _chosen(action: Any, raw: Any, request: DecisionInput) -> tuple[str, dict[str, Any]]:
    if not isinstance(action, str) or not action:
        raise AnswerRejected(f"the LLM's answer names no action (action is {_shown(action)})")
    if action not in request.catalogue:
        raise AnswerRejected(
            f"the LLM proposed {action[:80]!r}, which is not in the catalogue "
            f"({', '.join(request.catalogue)})"
        )
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise AnswerRejected(f"the LLM's params are {_kind(raw)}, not a JSON object")
    return action, _validated(action, raw, request)


def from_kubectl(line: str, request: DecisionInput) -> tuple[str, dict[str, Any]]:
    """The catalogue action a kubectl line stands for, and its params."""
    try:
        operation = kubectl.parse(line)
    except kubectl.KubectlRejected as exc:
        raise AnswerRejected(f"the LLM's kubectl line is refused: {exc}") from None
    candidates = [
        (name, config)
        for name, config in request.catalogue.items()
        if isinstance(config, KubernetesAction)
        and config.operation == operation.operation
        and config.target.kind == operation.kind
    ]
    shown = f"{operation.operation} of {operation.kind} {operation.namespace}/{operation.name}"
    if not candidates:
        raise AnswerRejected(
            f"the LLM's kubectl line ({shown}) matches no catalogue action: none of "
            f"({', '.join(request.catalogue)}) is a kubernetes {operation.operation} of a "
            f"{operation.kind}"
        )
    last = ""
    for name, config in candidates:
        try:
            params = _kubectl_params(operation, config)
            return name, _validated(name, params, request)
        except AnswerRejected as exc:
            last = f"{name}: {exc.reason}"
    raise AnswerRejected(f"the LLM's kubectl line ({shown}) fits no catalogue action ({last})")


def _kubectl_params(
    operation: kubectl.KubectlOperation, config: KubernetesAction
) -> dict[str, Any]:
    """The params a kubectl line fills in; what the action does not let a decision fill in
    must be what the line says already."""
    wanted: dict[str, Any] = {
        "namespace": operation.namespace,
        "name": operation.name,
        "replicas": operation.replicas,
        "to_revision": operation.to_revision,
    }
    fixed: dict[str, Any] = {
        "namespace": config.target.namespace,
        "name": config.target.name,
        "replicas": config.replicas,
        "to_revision": config.to_revision,
    }
    params: dict[str, Any] = {}
    for key, value in wanted.items():
        if key in config.params:
            if value is not None:
                params[key] = value
        elif value != fixed[key]:
            raise AnswerRejected(
                f"the line's {key} {_shown(value)} is not the action's {_shown(fixed[key])}"
            )
    return params


def _validated(action: str, params: dict[str, Any], request: DecisionInput) -> dict[str, Any]:
    try:
        return validate_params(request.catalogue[action].params, params, request.policy)
    except ParamsRejected as exc:
        raise AnswerRejected(f"params rejected: {exc.reason}") from None


def _confidence(value: Any) -> float:
    if value is None:
        raise AnswerRejected("the LLM's answer has no confidence")
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= 1
    ):
        raise AnswerRejected(f"confidence must be a number from 0 to 1, not {_shown(value)}")
    return float(value)


def _kind(value: Any) -> str:
    names = {list: "a list", str: "a string", int: "a number", float: "a number"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _excerpt(text: str) -> str:
    one_line = " ".join(text.split())
    return repr(one_line if len(one_line) <= 80 else one_line[:77] + "...")
