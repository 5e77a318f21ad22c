"""The node language: JMESPath lookups and Jinja2 templates, always sandboxed.

Every template renders in ``SandboxedEnvironment`` (DESIGN.md, "What is not allowed"), so
a template that reaches for ``__class__`` or a callable attribute fails instead of
escaping. Compiled templates and expressions are cached: the same few strings are
evaluated on every wake.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from functools import lru_cache
from typing import Any

import jmespath
import jmespath.exceptions
from jinja2 import ChainableUndefined, TemplateError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment


class ExpressionError(ValueError):
    """A template or JMESPath expression failed to compile or evaluate.

    A ``ValueError`` so that pydantic reports it, with its location, while validating a
    policy.
    """


class ValueFormat(StrEnum):
    JMESPATH = "jmespath"
    JINJA2 = "jinja2"
    RAW = "raw"


class _Sandbox(SandboxedEnvironment):
    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        # The stock sandbox hands back an undefined value, which our lenient undefined
        # would render as "": a policy author would never learn the template is wrong.
        raise SecurityError(
            f"access to attribute {attribute!r} of a {type(obj).__name__!r} object is not allowed"
        )


def _finalize(value: Any) -> Any:
    return "" if value is None else value


# Missing labels or outputs render as empty rather than failing a remediation: an
# operator would rather get a ticket titled "CheckoutDown on " than no ticket.
_ENV = _Sandbox(undefined=ChainableUndefined, autoescape=False, finalize=_finalize)


@lru_cache(maxsize=4096)
def _template(source: str) -> Any:
    try:
        return _ENV.from_string(source)
    except TemplateError as exc:
        raise ExpressionError(f"template {source!r}: {exc}") from exc


@lru_cache(maxsize=4096)
def _expression(source: str) -> Any:
    try:
        return jmespath.compile(source)
    except jmespath.exceptions.JMESPathError as exc:
        raise ExpressionError(f"JMESPath {source!r}: {exc}") from exc


def check_template(source: str) -> None:
    _template(source)


def check_expression(source: str) -> None:
    _expression(source)


def template_names(source: str) -> frozenset[str]:
    """The top-level names a template reads from its context (not its own ``set``/``for``
    variables, not Jinja's globals such as ``range``). Raises ``ExpressionError``."""
    return frozenset(meta.find_undeclared_variables(_parse(source)) - set(_ENV.globals))


def template_lookups(source: str) -> frozenset[tuple[str, str]]:
    """``(name, key)`` for every ``name.key`` or ``name["key"]`` a template reads, with
    ``name`` taken from its context. Raises ``ExpressionError``."""
    ast = _parse(source)
    context = meta.find_undeclared_variables(ast)
    lookups: set[tuple[str, str]] = set()
    for attribute in ast.find_all(nodes.Getattr):
        if isinstance(attribute.node, nodes.Name) and attribute.node.name in context:
            lookups.add((attribute.node.name, attribute.attr))
    for item in ast.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name in context
            and isinstance(item.arg, nodes.Const)
            and isinstance(item.arg.value, str)
        ):
            lookups.add((item.node.name, item.arg.value))
    return frozenset(lookups)


def _parse(source: str) -> nodes.Template:
    try:
        return _ENV.parse(source)
    except TemplateError as exc:
        raise ExpressionError(f"template {source!r}: {exc}") from exc


# Node types whose later children are evaluated against the result of the first one
# (``a.b``, ``a[0]``, ``a[*].b``, ``a | b``), not against the data the expression is given.
_CHAINED = frozenset(
    {
        "subexpression",
        "index_expression",
        "projection",
        "filter_projection",
        "value_projection",
        "pipe",
    }
)


def expression_names(source: str) -> frozenset[str]:
    """The top-level fields a JMESPath expression reads from the data it is given.
    Raises ``ExpressionError``."""
    names: set[str] = set()

    def visit(node: dict[str, Any]) -> None:
        kind = node.get("type")
        children = node.get("children", [])
        if kind == "field":
            names.add(str(node["value"]))
        elif kind in _CHAINED:
            visit(children[0])
        elif kind != "expref":  # &expr is evaluated against each element later
            for child in children:
                visit(child)

    visit(_expression(source).parsed)
    return frozenset(names)


def expression_lookups(source: str) -> frozenset[tuple[str, str]]:
    """``(name, key)`` for every ``name.key`` a JMESPath expression reads from its data.
    Raises ``ExpressionError``."""
    lookups: set[tuple[str, str]] = set()

    def visit(node: dict[str, Any]) -> None:
        kind = node.get("type")
        children = node.get("children", [])
        if kind == "subexpression" and children[0].get("type") == "field":
            key = children[1]
            if key.get("type") in _CHAINED and key.get("children"):
                key = key["children"][0]
            if key.get("type") == "field":
                lookups.add((str(children[0]["value"]), str(key["value"])))
        if kind in _CHAINED:
            visit(children[0])
        elif kind != "expref":
            for child in children:
                visit(child)

    visit(_expression(source).parsed)
    return frozenset(lookups)


def render(source: str, context: Mapping[str, Any]) -> str:
    if "{" not in source:  # fast path: most strings are literals
        return source
    try:
        return str(_template(source).render(context))
    except ExpressionError:
        raise
    except Exception as exc:  # SecurityError, TypeError from a filter, ...
        raise ExpressionError(f"template {source!r}: {exc}") from exc


def search(expression: str, data: Mapping[str, Any]) -> Any:
    try:
        return _expression(expression).search(data)
    except ExpressionError:
        raise
    except jmespath.exceptions.JMESPathError as exc:
        raise ExpressionError(f"JMESPath {expression!r}: {exc}") from exc


def render_structure(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside a nested structure of dicts and lists."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, list):
        return [render_structure(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render_structure(v, context) for k, v in value.items()}
    return value


def evaluate(value: Any, fmt: ValueFormat, context: Mapping[str, Any]) -> Any:
    if fmt is ValueFormat.JMESPATH:
        return search(str(value), context)
    if fmt is ValueFormat.JINJA2:
        return render_structure(value, context)
    return value


_COERCE: dict[str, Any] = {
    "int": int,
    "float": float,
    "string": str,
    "bool": bool,
    "list": list,
    "dict": dict,
}


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def coerce(value: Any, type_name: str | None) -> Any:
    if type_name is None or value is None:
        return value
    target = _COERCE[type_name]
    if isinstance(value, target) and not (target is int and isinstance(value, bool)):
        return value
    try:
        if target is bool and isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE or word in _FALSE:
                return word in _TRUE
            raise ExpressionError(f"cannot convert {value!r} to bool")
        return target(value)
    except (TypeError, ValueError) as exc:
        raise ExpressionError(f"cannot convert {value!r} to {type_name}") from exc
