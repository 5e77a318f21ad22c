"""The installed action types, found through the ``heal.plugins`` entry points.

An entry point names a :class:`PluginSpec`: the type's name, its config model (a subclass
of :class:`~heal.policy.models.ActionBase`, the type's YAML keys) and where its runner
lives. Only the spec is imported to read a policy; the runner (which may bring a client
library) is imported when heal starts. The built-in types are always installed, also when
heal runs from a source tree without its package metadata.
"""

from __future__ import annotations

import functools
import importlib
import types
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import Field, TypeAdapter, create_model

from heal.policy.executors import KubernetesAction, LocalAction, SshAction, StackStormAction
from heal.policy.models import ActionBase, HttpAction, Policy
from heal.policy.notify import NotifyAction

ENTRY_POINT_GROUP = "heal.plugins"


@dataclass(frozen=True, slots=True)
class PluginSpec:
    """What heal needs to know of an action type before it runs one."""

    name: str
    """The type's name: the value of ``type:`` in the policy."""
    config: type[ActionBase]
    """The type's config model; its ``type`` field is ``Literal[<type>]``."""
    runner: str
    """``module:attribute`` of a callable taking a ``heal.engine.interfaces.PluginContext``
    and returning the plugin (``heal.engine.interfaces.ActionPlugin``)."""
    summary: str = ""
    """One line for ``heal policy types``."""

    def load_runner(self) -> Callable[..., Any]:
        module, _, attributes = self.runner.partition(":")
        factory: Any = importlib.import_module(module)
        for attribute in attributes.split("."):
            factory = getattr(factory, attribute)
        if not callable(factory):
            raise TypeError(f"{self.runner} is not callable")
        runner: Callable[..., Any] = factory
        return runner


HTTP = PluginSpec("http", HttpAction, "heal.plugins.http:HttpPlugin.from_context", "HTTP nodes")
KUBERNETES = PluginSpec(
    "kubernetes",
    KubernetesAction,
    "heal.plugins.kubernetes:KubernetesPlugin.from_context",
    "restart, scale or roll back a workload",
)
STACKSTORM = PluginSpec(
    "stackstorm",
    StackStormAction,
    "heal.plugins.stackstorm:StackStormPlugin.from_context",
    "a StackStorm execution",
)
SSH = PluginSpec(
    "ssh", SshAction, "heal.plugins.commands:SshPlugin.from_context", "a command over SSH"
)
LOCAL = PluginSpec(
    "local", LocalAction, "heal.plugins.commands:LocalPlugin.from_context", "a local command"
)
NOTIFY = PluginSpec(
    "notify",
    NotifyAction,
    "heal.plugins.notify:NotifyPlugin.from_context",
    "a message through a notifications channel",
)
BUILT_IN = (HTTP, KUBERNETES, STACKSTORM, SSH, LOCAL, NOTIFY)


@dataclass(frozen=True, slots=True)
class BrokenPlugin:
    name: str
    reason: str


@functools.cache
def _discovered() -> tuple[dict[str, PluginSpec], tuple[BrokenPlugin, ...]]:
    specs = {spec.name: spec for spec in BUILT_IN}
    broken: list[BrokenPlugin] = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = entry.load()
            _check(entry.name, spec)
        except Exception as exc:  # a third party's bug must not stop heal reading a policy
            broken.append(BrokenPlugin(entry.name, f"{type(exc).__name__}: {exc}"))
            continue
        specs[spec.name] = spec
    return specs, tuple(broken)


def _check(name: str, spec: Any) -> None:
    if not isinstance(spec, PluginSpec):
        raise TypeError(f"entry point {name!r} is not a heal PluginSpec")
    if spec.name != name:
        raise ValueError(f"entry point {name!r} names type {spec.name!r}")
    if not (isinstance(spec.config, type) and issubclass(spec.config, ActionBase)):
        raise TypeError(f"type {name!r}: config is not a subclass of ActionBase")
    field = spec.config.model_fields.get("type")
    if field is None or get_origin(field.annotation) is not Literal:
        raise TypeError(f"type {name!r}: its config's type field is not Literal[{name!r}]")
    if get_args(field.annotation) != (name,):
        raise TypeError(f"type {name!r}: its config's type field is not Literal[{name!r}]")


def installed() -> dict[str, PluginSpec]:
    """Every action type heal can run, by name."""
    return dict(_discovered()[0])


def broken() -> tuple[BrokenPlugin, ...]:
    """Entry points that failed to load, with why."""
    return _discovered()[1]


def refresh() -> None:
    """Look for entry points again (after installing a plugin in the same process)."""
    _discovered.cache_clear()
    policy_model.cache_clear()
    action_adapter.cache_clear()


def _union() -> Any:
    configs = tuple(spec.config for spec in installed().values())
    if len(configs) == 1:
        return configs[0]
    return Annotated[Union[configs], Field(discriminator="type")]  # noqa: UP007


@functools.cache
def policy_model() -> type[Policy]:
    """The policy model whose actions are any installed type (what the loader validates)."""
    actions: Any = types.GenericAlias(dict, (str, _union()))
    description = Policy.model_fields["actions"].description
    return create_model(
        "Policy",
        __base__=Policy,
        __doc__=Policy.__doc__,
        actions=(actions, Field(default_factory=dict, description=description)),
    )


@functools.cache
def action_adapter() -> TypeAdapter[ActionBase]:
    """Validates one action's config (e.g. the snapshot stored with an action)."""
    adapter: TypeAdapter[ActionBase] = TypeAdapter(_union())
    return adapter


def parse_action(data: Any) -> ActionBase:
    return action_adapter().validate_python(data)
