"""What the LLM tier sends: the prompt, the answer's JSON schema, and the placeholders that
keep configured label values (pods, instances) inside heal.

Everything from the incident, its alerts and the knowledge base passes through one
:class:`Anonymizer` before it is rendered, so a value hidden in a label is hidden in an
annotation's text and a runbook excerpt too; the answer's params and rationale are mapped
back with the same table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from heal.decide.tiers import DecisionInput, KnowledgeHit
from heal.policy.params import params_schema

MAX_ALERTS = 20
MAX_TEXT = 500
MAX_HIT_TEXT = 800
SCHEMA_NAME = "heal_proposal"
# Labels whose values say what is affected without naming a volatile instance of it.
_QUERY_LABELS = ("service", "namespace", "deployment", "workload", "job", "app")

SYSTEM_PROMPT = """\
You are the decision step of heal, an alert-driven self-healing engine. heal received \
the incident below and must choose ONE remediation from its catalogue; a person or \
heal's approval policy decides whether it runs.
Rules:
- Choose exactly one action from the catalogue, by its name. Never invent an action; \
never answer a shell command.
- Fill in its params as its JSON schema says: only the params it declares, each of the \
declared type and within its constraints.
- Values written as <label-N> (e.g. <pod-1>) are placeholders for values heal keeps \
private; where you mean such a value, write the placeholder itself.
- If nothing in the catalogue fits, choose the least risky action (e.g. a ticket) and \
say why.
- Answer with one JSON object and nothing else: {"action": "<name>", "params": {...}, \
"confidence": <a number from 0 to 1>, "rationale": "<one or two sentences>"}."""


class Anonymizer:
    """Stable placeholders (``<pod-1>``) for the values of the configured labels."""

    def __init__(self, labels: Iterable[str]) -> None:
        self.labels = list(labels)
        self.hidden: dict[str, str] = {}  # real value -> placeholder
        self._shown: dict[str, str] = {}  # placeholder -> real value
        self._counts: dict[str, int] = {}
        self._hide_re: re.Pattern[str] | None = None
        self._reveal_re: re.Pattern[str] | None = None

    def learn(self, labels: Mapping[str, Any]) -> None:
        for label in self.labels:
            value = labels.get(label)
            if not isinstance(value, str) or not value or value in self.hidden:
                continue
            self._counts[label] = self._counts.get(label, 0) + 1
            self.hidden[value] = f"<{label}-{self._counts[label]}>"
        self._compile()

    def _compile(self) -> None:
        if not self.hidden:
            return
        # Longest first, so a value that contains another is replaced whole; not inside a
        # longer word, so "web-1" leaves "web-12" alone.
        values = sorted(self.hidden, key=len, reverse=True)
        self._hide_re = re.compile(
            r"(?<![A-Za-z0-9])(?:" + "|".join(map(re.escape, values)) + r")(?![A-Za-z0-9])"
        )
        self._shown = {placeholder: value for value, placeholder in self.hidden.items()}
        self._reveal_re = re.compile("|".join(map(re.escape, self._shown)))

    def hide(self, value: Any) -> Any:
        return self._walk(value, self._hide_re, lambda m: self.hidden[m.group()])

    def reveal(self, value: Any) -> Any:
        return self._walk(value, self._reveal_re, lambda m: self._shown[m.group()])

    def _walk(self, value: Any, pattern: re.Pattern[str] | None, replace: Any) -> Any:
        if pattern is None:
            return value
        if isinstance(value, str):
            return pattern.sub(replace, value)
        if isinstance(value, Mapping):
            return {key: self._walk(item, pattern, replace) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(item, pattern, replace) for item in value]
        return value


def anonymizer_for(request: DecisionInput, labels: Sequence[str]) -> Anonymizer:
    anonymizer = Anonymizer(labels)
    for alert in request.alerts:
        anonymizer.learn(alert.get("labels") or {})
    for key in ("labels", "group_labels"):
        found = request.incident.get(key)
        if isinstance(found, Mapping):
            anonymizer.learn(found)
    return anonymizer


def knowledge_query(request: DecisionInput) -> str:
    """What the knowledge base is searched for: the symptoms, not the instances."""
    alert = request.first_alert
    labels = alert.get("labels") or {}
    annotations = alert.get("annotations") or {}
    names = dict.fromkeys(str(a.get("name") or "") for a in request.alerts)
    parts = [*names, *(str(labels[k]) for k in _QUERY_LABELS if labels.get(k))]
    parts.append(str(annotations.get("summary") or ""))
    return " ".join(part for part in parts if part)


def messages(
    request: DecisionInput, anonymizer: Anonymizer, hits: Sequence[KnowledgeHit]
) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(request, anonymizer, hits)},
    ]


def user_message(
    request: DecisionInput, anonymizer: Anonymizer, hits: Sequence[KnowledgeHit]
) -> str:
    incident = anonymizer.hide(_plain(request.incident))
    alerts = anonymizer.hide([_alert(a) for a in request.alerts[:MAX_ALERTS]])
    sections = [
        "## Incident\n" + _json(incident),
        f"## Alerts ({len(request.alerts)})\n" + _json(alerts),
        "## Catalogue (choose one)\n" + _json(catalogue_entries(request)),
    ]
    if hits:
        entries = [anonymizer.hide(_hit(hit)) for hit in hits]
        sections.append(f"## Knowledge base ({len(hits)} related entries)\n" + _json(entries))
    if anonymizer.hidden:
        sections.append(
            "Placeholders (their real values stay in heal): "
            + ", ".join(sorted(anonymizer.hidden.values()))
        )
    sections.append("Answer with the JSON object only.")
    return "\n\n".join(sections)


def catalogue_entries(request: DecisionInput) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "type": config.type,
            "description": config.description,
            "risk": config.risk,
            "params": params_schema(config.params, request.policy),
        }
        for name, config in request.catalogue.items()
    ]


def response_format(request: DecisionInput, *, placeholders: bool) -> dict[str, Any]:
    """``response_format`` asking for the proposal in OpenAI's strict structured outputs:
    the action one of the catalogue's names, the params one of the actions' schemas.

    Strict mode wants every property required (optional ones become nullable) and does not
    take ``maxLength``; with placeholders in play a ``pattern`` would forbid writing one, so
    it is left to the check after mapping back (which every answer gets anyway)."""
    variants: dict[str, dict[str, Any]] = {}
    for config in request.catalogue.values():
        fillable = params_schema(config.params, request.policy)
        schema = _strict(fillable, placeholders=placeholders)
        variants.setdefault(json.dumps(schema, sort_keys=True), schema)
    choices = list(variants.values())
    # An object or array param cannot be described in strict mode: ask for the shape only.
    strict = not any(
        "object" in _types(spec) or "array" in _types(spec)
        for choice in choices
        for spec in choice["properties"].values()
    )
    params: dict[str, Any] = choices[0] if len(choices) == 1 else {"anyOf": choices}
    schema = {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": list(request.catalogue)},
            "params": params,
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "rationale": {"type": "string"},
        },
        "required": ["action", "params", "confidence", "rationale"],
        "additionalProperties": False,
    }
    return {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "schema": schema, "strict": strict},
    }


def _strict(schema: dict[str, Any], *, placeholders: bool) -> dict[str, Any]:
    required = set(schema.get("required", []))
    properties: dict[str, Any] = {}
    for name, spec in schema.get("properties", {}).items():
        spec = {k: v for k, v in spec.items() if k != "maxLength"}
        if placeholders:
            spec.pop("pattern", None)
        if name not in required:
            spec["type"] = [spec["type"], "null"]
            if "enum" in spec:
                spec["enum"] = [*spec["enum"], None]
        properties[name] = spec
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _types(spec: Mapping[str, Any]) -> list[Any]:
    kind = spec.get("type")
    return kind if isinstance(kind, list) else [kind]


def _alert(alert: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": alert.get("name"),
        "status": alert.get("status"),
        "starts_at": str(alert.get("starts_at") or ""),
        "labels": dict(alert.get("labels") or {}),
        "annotations": {
            key: _short(str(value), MAX_TEXT)
            for key, value in (alert.get("annotations") or {}).items()
        },
    }


def _hit(hit: KnowledgeHit) -> dict[str, Any]:
    return {
        "kind": hit.kind,
        "title": hit.title,
        "ref": hit.ref,
        "score": round(hit.score, 2),
        "text": _short(hit.text, MAX_HIT_TEXT),
    }


def _plain(value: Any) -> Any:
    """JSON-able: what json.dumps cannot say natively is said as text."""
    return json.loads(json.dumps(value, default=str))


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(value: Any) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False, default=str)
