"""The ``ssh`` and ``local`` action types' plugins.

Each lives in its own module so that asyncssh is imported only where an ssh step runs;
the names are importable from here too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heal.plugins.commands.local import LocalPlugin
    from heal.plugins.commands.ssh import SshPlugin

__all__ = ["LocalPlugin", "SshPlugin"]


def __getattr__(name: str) -> Any:
    if name == "SshPlugin":
        from heal.plugins.commands.ssh import SshPlugin

        return SshPlugin
    if name == "LocalPlugin":
        from heal.plugins.commands.local import LocalPlugin

        return LocalPlugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
