"""The plugins of one heal process, each built the first time a step of its type runs.

Building on first use keeps client libraries (lightkube, asyncssh) out of processes that
never run their type, such as the CLI, and lets an action stored under an older policy
still find its type's plugin.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from heal.engine.interfaces import ActionPlugin, PluginContext
from heal.observability.logging import get_logger
from heal.policy.plugins import installed

log = get_logger("heal.plugins")


class PluginSet(Mapping[str, ActionPlugin]):
    def __init__(self, context: PluginContext) -> None:
        self.context = context
        self._built: dict[str, ActionPlugin] = {}

    def __getitem__(self, kind: str) -> ActionPlugin:
        plugin = self._built.get(kind)
        if plugin is None:
            spec = installed().get(kind)
            if spec is None:
                raise KeyError(kind)
            plugin = spec.load_runner()(self.context)
            self._built[kind] = plugin
        return plugin

    def __iter__(self) -> Iterator[str]:
        return iter(installed())

    def __len__(self) -> int:
        return len(installed())

    def __setitem__(self, kind: str, plugin: ActionPlugin) -> None:
        """Use this plugin for ``kind`` (a plugin built with its own client, or a test's)."""
        self._built[kind] = plugin

    async def aclose(self) -> None:
        for kind, plugin in list(self._built.items()):
            try:
                await plugin.aclose()
            except Exception:
                log.exception("closing a plugin failed", type=kind)
        self._built.clear()
