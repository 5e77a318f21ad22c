"""Where output goes, and how expected failures end a command (a message, never a traceback)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from rich.progress import Progress


def group(help: str) -> typer.Typer:
    """A group of subcommands, with help as all of heal's: plain click (flags shown as flags,
    not rich's ``<bool>``), and shell completion offered by ``heal`` itself only."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, add_completion=False)


def examples(*commands: str) -> str:
    """A command's --help epilog: copy-paste examples, kept as written (click's \\b)."""
    return "\b\nExamples:\n" + "\n".join(f"  {command}" for command in commands)


def print_json(value: Any) -> None:
    """``value`` as JSON on stdout, for scripts (``--json``): no colours, no wrapping."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value)
    return str(value)


def out() -> Console:
    """stdout. Built per call so that COLUMNS and redirections are honoured."""
    return Console(highlight=False)


def err() -> Console:
    return Console(stderr=True, highlight=False)


class ProgressBar:
    """A bar on stderr for long work, on a terminal only, once there are at least
    ``from_count`` things to do (fewer are done before a bar would be worth drawing)."""

    def __init__(self, label: str, *, enabled: bool, from_count: int) -> None:
        self.label = label
        self.enabled = enabled and err().is_terminal
        self.from_count = from_count
        self.progress: Progress | None = None
        self.task: Any = None

    def update(self, done: int, total: int) -> None:
        if not self.enabled or total < self.from_count:
            return
        if self.progress is None:
            from rich.progress import Progress

            self.progress = Progress(console=err(), transient=True)
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=total)
        self.progress.update(self.task, completed=done)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


class CliError(Exception):
    """An expected failure: shown as a red message, then the command exits with ``code``."""

    def __init__(self, message: str, code: int = 1, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint


def fail(message: str, code: int = 1, hint: str | None = None) -> NoReturn:
    show_error(CliError(message, code, hint))
    raise typer.Exit(code)


def show_error(error: CliError) -> None:
    console = err()
    console.print(f"[red]{escape(error.message)}[/red]", soft_wrap=True)
    if error.hint:
        console.print(escape(error.hint), soft_wrap=True)


def warn(message: str) -> None:
    err().print(f"[yellow]{escape(message)}[/yellow]", soft_wrap=True)
