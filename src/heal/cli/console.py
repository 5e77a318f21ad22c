"""Where output goes, and how expected failures end a command (a message, never a traceback)."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape


def out() -> Console:
    """stdout. Built per call so that COLUMNS and redirections are honoured."""
    return Console(highlight=False)


def err() -> Console:
    return Console(stderr=True, highlight=False)


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
