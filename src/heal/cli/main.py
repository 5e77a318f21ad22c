"""The ``heal`` command: one typer app, a module per group of subcommands."""

from __future__ import annotations

import typer

import heal
from heal.cli import actions, alerts, approvals, db, incidents, policy, token, users
from heal.cli.demo import demo
from heal.cli.serve import serve, worker

app = typer.Typer(
    name="heal",
    help="heal: alerts in, safe and audited remediation out.",
    no_args_is_help=True,
    # A traceback's locals could hold secrets: never print them.
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("serve")(serve)
app.command("worker")(worker)
app.command("demo")(demo)
app.add_typer(alerts.app, name="alerts")
app.add_typer(incidents.app, name="incidents")
app.add_typer(actions.app, name="actions")
app.add_typer(policy.app, name="policy")
app.add_typer(db.app, name="db")
app.add_typer(token.app, name="token")
app.add_typer(users.app, name="users")
app.add_typer(approvals.app, name="approvals")
app.add_typer(approvals.silences, name="silences")


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
