"""An action's ``params``: what a decision may fill in, and how each value is checked.

A parameter is declared with a type and constraints (``enum``, ``enum_from``, ``pattern``,
bounds); a plain value is a constant (the old free-form ``params``, still read as
``execute_config.params``). Whatever proposes values (a playbook, the LLM, an expert rule,
a rule's own ``params``) gets them checked here, the same way, before an action is built:
an unknown key, a wrong type or a value outside its constraints is refused with the
reason in plain words, so a hallucinated or injected value (a shell command in a name)
never reaches a step.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from heal.domain.matchers import LabelMatcher
from heal.policy.expressions import ExpressionError, render

# object and array are for constants only: a decision fills in scalars.
ParamType = Literal["string", "integer", "number", "boolean", "object", "array"]
# Long enough for any Kubernetes name or label value, short enough to stay out of trouble.
DEFAULT_MAX_LENGTH = 253
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
}


def _pattern_compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"pattern does not compile: {exc}") from None
    return pattern


class ParamsRejected(ValueError):
    """Proposed parameters that do not validate; ``reason`` says the first problem."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ParamSpec(BaseModel):
    """One parameter of an action: what a decision may fill in."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    type: ParamType = "string"
    """The value's JSON type: string, integer, number or boolean (object and array: for
    constants)."""
    description: str = ""
    """What the parameter means, shown to the LLM and to people approving the action."""
    enum: list[Any] | None = None
    """The only values allowed."""
    enum_from: str | None = None
    """A list of the policy whose items allow values, by its dotted path (e.g.
    kubernetes.allowed_namespaces); items are label matchers (a plain value, or =~regex)."""
    pattern: Annotated[str, AfterValidator(_pattern_compiles)] | None = None
    """A regular expression a string value must match as a whole."""
    max_length: Annotated[int, Field(ge=1, le=10_000)] = DEFAULT_MAX_LENGTH
    """The longest string value allowed."""
    minimum: float | None = None
    """The smallest number allowed."""
    maximum: float | None = None
    """The largest number allowed."""
    default: Any = None
    """The value when nothing fills the parameter in; a parameter without a default must be
    filled in."""
    required: bool = True
    """Whether an action cannot be built without a value (a default counts as one)."""

    @model_validator(mode="after")
    def _default_fits(self) -> ParamSpec:
        if self.default is not None and not isinstance(self.default, _JSON_TYPES[self.type]):
            raise ValueError(f"default {self.default!r} is not of type {self.type}")
        return self

    @property
    def is_constant(self) -> bool:
        """A plain value in the policy: nothing may fill it in but its own value."""
        return self.enum is not None and len(self.enum) == 1 and self.default == self.enum[0]

    def json_schema(self, policy: Any = None) -> dict[str, Any]:
        """The parameter as JSON schema (for the LLM's structured answer)."""
        schema: dict[str, Any] = {"type": self.type}
        if self.description:
            schema["description"] = self.description
        allowed = self.allowed_values(policy)
        if allowed is not None:
            schema["enum"] = allowed
        if self.type == "string":
            schema["maxLength"] = self.max_length
            if self.pattern is not None:
                schema["pattern"] = self.pattern
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema

    def allowed_values(self, policy: Any = None) -> list[Any] | None:
        """The values an ``enum`` allows, or those of ``enum_from`` when all are plain
        values; None when they cannot be listed (not an enumeration, or a regex)."""
        if self.enum is not None:
            return list(self.enum)
        if self.enum_from is None or policy is None:
            return None
        specs = _resolve(policy, self.enum_from)
        if not specs or any(spec.startswith(("=~", "!")) for spec in specs):
            return None  # a regex allows more than any list could say
        return [spec.removeprefix("=") for spec in specs]

    def check(self, name: str, value: Any, policy: Any = None) -> Any:
        """``value`` if it is allowed, else :class:`ParamsRejected`."""
        if not isinstance(value, _JSON_TYPES[self.type]) or (
            self.type != "boolean" and isinstance(value, bool)
        ):
            raise ParamsRejected(f"param {name!r}: {_shown(value)} is not of type {self.type}")
        if self.enum is not None and value not in self.enum:
            raise ParamsRejected(f"param {name!r}: {_shown(value)} is not one of {self.enum}")
        if isinstance(value, str):
            self._check_string(name, value, policy)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                raise ParamsRejected(f"param {name!r}: {value} is below {self.minimum}")
            if self.maximum is not None and value > self.maximum:
                raise ParamsRejected(f"param {name!r}: {value} is above {self.maximum}")
        return value

    def _check_string(self, name: str, value: str, policy: Any) -> None:
        if len(value) > self.max_length:
            raise ParamsRejected(f"param {name!r}: longer than {self.max_length} characters")
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            raise ParamsRejected(
                f"param {name!r}: {_shown(value)} does not match pattern {self.pattern!r}"
            )
        if self.enum_from is not None:
            specs = _resolve(policy, self.enum_from) if policy is not None else []
            labels = {name: value}
            if not any(LabelMatcher.parse(name, spec).matches(labels) for spec in specs):
                raise ParamsRejected(
                    f"param {name!r}: {_shown(value)} is not allowed by {self.enum_from}"
                )


def as_declared(declared: Any) -> Any:
    """What a parameter's policy value declares: a mapping with a ``type`` key is a spec
    (validated as one), any other value a constant (allowed only as itself)."""
    if isinstance(declared, ParamSpec) or (isinstance(declared, Mapping) and "type" in declared):
        return declared
    return {
        "type": _type_of(declared),
        "enum": [declared],
        "default": declared,
        "max_length": 10_000,
    }


def validate_params(
    specs: Mapping[str, ParamSpec], values: Mapping[str, Any], policy: Any = None
) -> dict[str, Any]:
    """The parameters an action gets: ``values`` checked against ``specs``, defaults and
    constants filled in. :class:`ParamsRejected` names the first problem: an undeclared
    key, a missing required value, a value of the wrong type or outside its constraints."""
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ParamsRejected(f"unknown params: {', '.join(map(repr, unknown))}")
    resolved: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in values and values[name] is not None:
            resolved[name] = spec.check(name, values[name], policy)
        elif spec.default is not None:
            resolved[name] = spec.default
        elif spec.required:
            raise ParamsRejected(f"param {name!r} is required")
    return resolved


def params_schema(specs: Mapping[str, ParamSpec], policy: Any = None) -> dict[str, Any]:
    """The JSON schema of an action's fillable parameters (constants left out)."""
    fillable = {name: spec for name, spec in specs.items() if not spec.is_constant}
    return {
        "type": "object",
        "properties": {name: spec.json_schema(policy) for name, spec in fillable.items()},
        "required": [n for n, s in fillable.items() if s.required and s.default is None],
        "additionalProperties": False,
    }


def _resolve(policy: Any, path: str) -> list[str]:
    value: Any = policy
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
    if not isinstance(value, list | tuple):
        return []
    return [str(item) for item in value]


def _type_of(value: Any) -> ParamType:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def render_params(
    templates: Mapping[str, str], specs: Mapping[str, ParamSpec], context: Mapping[str, Any]
) -> dict[str, Any]:
    """Values from templates (an expert rule's or a rule's ``params``), each rendered and
    read as its declared type ("3" for an integer param is 3). A template that does not
    render, or a value that is not of its type, is :class:`ParamsRejected`."""
    values: dict[str, Any] = {}
    for name, template in templates.items():
        try:
            text = render(template, context)
        except ExpressionError as exc:
            raise ParamsRejected(f"param {name!r} failed to render: {exc}") from None
        spec = specs.get(name)
        values[name] = _read_as(name, text, spec.type) if spec is not None else text
    return values


def _read_as(name: str, text: str, kind: ParamType) -> Any:
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
    except ValueError:
        raise ParamsRejected(f"param {name!r}: {_shown(text)} is not of type {kind}") from None
    if kind == "boolean":
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise ParamsRejected(f"param {name!r}: {_shown(text)} is not of type boolean")
    return text
