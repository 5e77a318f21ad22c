"""The ``heal`` command: one typer app, a module per group of subcommands.

Each command's module is imported only when that command runs (or shows its help), so
that ``heal --version``, ``heal --help`` and light commands start at once instead of
loading the server, the database layer and the job queue first.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

import heal
from heal.cli.console import examples

if TYPE_CHECKING:
    # typer's own copy of click, named for the annotations of the methods overridden below.
    from typer._click import Command, Context, HelpFormatter


@dataclass(frozen=True, slots=True)
class Entry:
    """A command of ``heal``: where it lives, and its one-line help for ``heal --help``."""

    module: str
    attribute: str  # a typer.Typer (a group) or a function (a single command)
    help: str


# A group's help must be its own (tests/cli/test_cli_help.py checks it).
COMMANDS = {
    "serve": Entry("heal.cli.serve", "serve", "Run heal: the HTTP API and the worker."),
    "worker": Entry("heal.cli.serve", "worker", "Run wakes of the distributed runtime."),
    "demo": Entry("heal.cli.demo", "demo", "Run heal with a fake ITSM and a demo policy."),
    "alerts": Entry("heal.cli.alerts", "app", "Send test alerts to a running heal."),
    "incidents": Entry("heal.cli.incidents", "app", "Incidents, read from heal's database."),
    "actions": Entry("heal.cli.actions", "app", "Action instances: inspect or cancel."),
    "policy": Entry(
        "heal.cli.policy",
        "app",
        "Check a policy file, print its JSON Schema, or list the action types.",
    ),
    "db": Entry("heal.cli.db", "app", "Database schema and data."),
    "token": Entry("heal.cli.token", "app", "API tokens."),
    "users": Entry("heal.cli.users", "app", "Users, roles and tokens."),
    "approvals": Entry(
        "heal.cli.approvals", "app", "Pending approvals: list, show, approve, reject."
    ),
    "notifications": Entry(
        "heal.cli.notifications", "app", "Notifications: what heal told whom, and how it went."
    ),
    "breakers": Entry(
        "heal.cli.breakers", "app", "Circuit breakers: list the ones that opened, reset one."
    ),
    "kb": Entry(
        "heal.cli.kb",
        "app",
        "Knowledge base: search past remediations and runbooks, index runbooks.",
    ),
    "playbooks": Entry(
        "heal.cli.playbooks",
        "app",
        "Playbooks: list, show, approve, deprecate, edit, delete, export, import.",
    ),
    "replay": Entry(
        "heal.cli.replay",
        "replay",
        "Replay stored alerts through a policy: what would have happened, beside what did.",
    ),
    "decide": Entry(
        "heal.cli.decide", "app", "Decisions: evaluate a policy's deciding against cases."
    ),
    "silences": Entry(
        "heal.cli.approvals",
        "silences",
        "Silences: suppress actions and cards for matching alerts.",
    ),
}


def load(name: str) -> Command:
    """The real command behind ``heal NAME`` (imports its module)."""
    entry = COMMANDS[name]
    module = importlib.import_module(entry.module)
    target = getattr(module, entry.attribute)
    # Built under a parent group, as add_typer would: alone, a one-command Typer would
    # collapse into that command (`heal alerts send` would become `heal alerts`).
    parent = typer.Typer(rich_markup_mode=None, add_completion=False, callback=_parent)
    if isinstance(target, typer.Typer):
        parent.add_typer(target, name=name)
    else:  # a function: its examples are <ATTRIBUTE>_EXAMPLES in its module
        epilog = getattr(module, f"{entry.attribute.upper()}_EXAMPLES", None)
        parent.command(name, epilog=epilog)(target)
    built = typer.main.get_command(parent)
    assert isinstance(built, TyperGroup)
    return built.commands[name]


def _parent() -> None:
    """Never invoked: only the command built under it is kept."""


class LazyGroup(TyperGroup):
    """Lists the commands from ``COMMANDS`` and imports one only when it is used."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in COMMANDS:
            return None
        if cmd_name not in self.commands:
            self.commands[cmd_name] = load(cmd_name)
        return self.commands[cmd_name]

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in COMMANDS:
            close = difflib.get_close_matches(name, list(COMMANDS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        # `heal --help` lists every command from the table, loading none of them.
        with formatter.section("Commands"):
            formatter.write_dl([(name, entry.help) for name, entry in COMMANDS.items()])


app = typer.Typer(
    name="heal",
    cls=LazyGroup,
    help="heal: alerts in, safe and audited remediation out.",
    epilog=examples("heal demo", "heal incidents list --status open", "heal serve -c heal.yaml"),
    no_args_is_help=True,
    # Plain click help: flags show as flags (rich help prints <bool> after each).
    rich_markup_mode=None,
    # A traceback's locals could hold secrets: never print them.
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"heal {heal.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version"
    ),
) -> None:
    """heal: alerts in, safe and audited remediation out."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
