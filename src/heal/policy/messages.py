"""Pydantic's validation errors, in the words of someone writing a YAML file."""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from heal.policy.models import Policy
from heal.policy.plugins import broken, installed


def plain_message(error: ErrorDetails, loc: tuple[Any, ...], data: Any = None) -> str:
    """``data``: the file's plain data, to find which action type's keys apply at ``loc``."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx", {})
    got = f"got {shown(value)}"
    if kind == "missing":
        return f"missing required key {loc[-1]!r}" if loc else "missing required key"
    if kind == "extra_forbidden":
        return _unknown_key(loc, data)
    if kind == "union_tag_invalid":
        return _unknown_type(str(ctx.get("tag")))
    if kind == "union_tag_not_found":
        return f"missing required key 'type' ({', '.join(installed())})"
    simple = {
        "int_parsing": f"expected a whole number, {got}",
        "int_type": f"expected a whole number, {got}",
        "int_from_float": f"expected a whole number, {got}",
        "float_parsing": f"expected a number, {got}",
        "float_type": f"expected a number, {got}",
        "bool_parsing": f"expected true or false, {got}",
        "bool_type": f"expected true or false, {got}",
        "string_type": f"expected text, {got}",
        "list_type": f"expected a list, {got}",
        "dict_type": f"expected a mapping, {got}",
        "model_type": f"expected a mapping, {got}",
        "model_attributes_type": f"expected a mapping, {got}",
        "literal_error": f"expected {ctx.get('expected')}, {got}",
        "enum": f"expected {ctx.get('expected')}, {got}",
        "greater_than": f"must be greater than {ctx.get('gt')}, {got}",
        "greater_than_equal": f"must be at least {ctx.get('ge')}, {got}",
        "less_than": f"must be less than {ctx.get('lt')}, {got}",
        "less_than_equal": f"must be at most {ctx.get('le')}, {got}",
        "too_short": f"needs at least {ctx.get('min_length')} item(s)",
        "too_long": f"takes at most {ctx.get('max_length')} item(s)",
    }
    if kind in simple:
        return simple[kind]
    return error["msg"].removeprefix("Value error, ")


def shown(value: Any) -> str:
    """A value as the YAML author wrote it, briefly."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return str(value)


def _unknown_type(tag: str) -> str:
    types_ = list(installed())
    close = difflib.get_close_matches(tag, types_, n=1)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    failed = [b for b in broken() if b.name == tag]
    if failed:
        return f"action type {tag!r} is installed but failed to load: {failed[0].reason}"
    return f"unknown action type {tag!r}{hint} (installed: {', '.join(types_)})"


def _unknown_key(loc: tuple[Any, ...], data: Any) -> str:
    key = str(loc[-1]) if loc else "?"
    model = _model_at(loc[:-1], data)
    if model is None:
        return f"unknown key {key!r}"
    known = [field.alias or name for name, field in model.model_fields.items()]
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown key {key!r} — did you mean {close[0]!r}?"
    return f"unknown key {key!r} (known keys: {', '.join(known)})"


def _model_at(loc: tuple[Any, ...], data: Any = None) -> type[BaseModel] | None:
    """The model class whose mapping sits at ``loc`` in a policy file."""
    annotation: Any = Policy
    for index, part in enumerate(loc):
        if index == 2 and loc[0] == "actions":
            annotation = _action_model(data, loc[1])
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = {f.alias or n: f for n, f in annotation.model_fields.items()}
            fields.update(annotation.model_fields)
            if part not in fields:
                return None
            annotation = fields[part].annotation
        elif get_origin(annotation) in (list, dict):
            annotation = get_args(annotation)[-1]
        else:
            return None
    if len(loc) == 2 and loc[0] == "actions":
        annotation = _action_model(data, loc[1])
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _action_model(data: Any, name: Any) -> Any:
    """The config model of the type the file gives action ``name``."""
    actions = data.get("actions") if isinstance(data, dict) else None
    action = actions.get(name) if isinstance(actions, dict) else None
    spec = installed().get(str(action.get("type"))) if isinstance(action, dict) else None
    return spec.config if spec else None


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` as ``X``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation
